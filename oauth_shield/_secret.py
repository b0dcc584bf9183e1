"""A value that must never be shown: client secrets, API keys."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import NoReturn

from ._errors import ConfigurationError


class Secret:
    """Holds a secret string; ``repr``, ``str`` and pickling never reveal it.

    >>> Secret("s3cr3t")
    Secret('**********')
    >>> Secret("s3cr3t").reveal()
    's3cr3t'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ConfigurationError("a secret must be a non-empty string")
        self._value = value

    @classmethod
    def from_env(cls, name: str) -> Secret:
        """Read the secret from the environment variable ``name``."""
        value = os.environ.get(name)
        if not value:
            raise ConfigurationError(f"environment variable {name} is not set")
        return cls(value)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Secret:
        """Read the secret from a file (a mounted secret); one trailing newline is dropped."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            raise ConfigurationError(f"cannot read the secret file {os.fspath(path)!r}") from None
        return cls(text.removesuffix("\n").removesuffix("\r"))

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def as_secret(
    value: str | Secret | None, file: str | os.PathLike[str] | None, field: str
) -> Secret | None:
    """Take a secret given directly or as a file, never both. A refusal names the setting
    (never the value)."""
    if value is not None and file is not None:
        raise ConfigurationError(
            f"{field} and {field}_file are both set; give one of them, not both",
            field=field,
            mentions=(f"{field}_file",),
        )
    try:
        if file is not None:
            return Secret.from_file(file)
        if value is None or isinstance(value, Secret):
            return value
        return Secret(value)
    except ConfigurationError as error:
        name = field if file is None else f"{field}_file"
        raise ConfigurationError(f"{name}: {error}", field=name) from None
