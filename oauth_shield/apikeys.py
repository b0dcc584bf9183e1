"""API keys kept apart from bearer tokens: stored only as hashes, compared in constant time.

A key looks like ``osk_3f9k2m7q1z_<43 random characters>``: a prefix a secret scanner can spot,
a public key id, and 256 bits of randomness. Only a line per key is stored, never the key:

    osk_3f9k2m7q1z sha256=<64 hex> scopes=read,write expires=2027-06-30T00:00:00Z

``python -m oauth_shield apikey new --scopes read write`` prints a new key once, with its line.
Load lines from an environment variable (one per line, or ``;``-separated), or from a file named
by ``<VARIABLE>_FILE`` (``#`` comments allowed); never from source code.

>>> keys = APIKeyStore.from_env()   # OAUTH_SHIELD_API_KEYS or _FILE       # doctest: +SKIP
>>> token = keys.validate(request.headers["X-API-Key"], scopes=["read"])
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from ._claims import grant, required_scopes
from ._clock import Clock, SystemClock
from ._errors import ConfigurationError, InvalidTokenError, Reason
from ._token import AccessToken, text_fingerprint

__all__ = ["APIKeyStore", "StoredKey", "new_key"]

PREFIX = "osk_"
_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(r"osk_([a-z0-9]{10})_([A-Za-z0-9]{43})")
_LINE = re.compile(r"(osk_[a-z0-9]{10})\s+sha256=([0-9a-f]{64})((?:\s+\w+=\S*)*)\s*")
# RFC 6749 §3.3 scope-token, less the comma that separates scopes in a stored line
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]+")
_NO_DIGEST = bytes(32)  # compared against when the id is unknown: the same work either way


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What is kept of a key: its id, the SHA-256 of the key, its scopes and expiry."""

    key_id: str
    digest: bytes
    scopes: frozenset[str] = frozenset()
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        scopes, expires = sorted(self.scopes), self.expires_at
        return f"StoredKey({self.key_id!r}, scopes={scopes!r}, expires_at={expires!r})"

    def line(self) -> str:
        """The line to store for this key."""
        parts = [self.key_id, f"sha256={self.digest.hex()}"]
        if self.scopes:
            parts.append("scopes=" + ",".join(sorted(self.scopes)))
        if self.expires_at is not None:
            parts.append("expires=" + self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return " ".join(parts)


def new_key(
    scopes: Iterable[str] = (), expires_at: datetime | None = None
) -> tuple[str, StoredKey]:
    """A new random key, and what to store for it. Show the key once; keep only the line.

    A naive ``expires_at`` is read as UTC.
    """
    scopes = list(scopes)
    if any(_SCOPE_TOKEN.fullmatch(scope) is None for scope in scopes):
        raise ConfigurationError("scopes are RFC 6749 scope tokens, without commas")
    if expires_at is not None:
        expires_at = as_utc(expires_at)
    key_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    body = "".join(secrets.choice(_ALPHABET) for _ in range(43))
    key = f"{PREFIX}{key_id}_{body}"
    stored = StoredKey(f"{PREFIX}{key_id}", _digest(key), required_scopes(scopes), expires_at)
    return key, stored


class APIKeyStore:
    """The accepted keys, by id; validates a presented key into an :class:`AccessToken`."""

    def __init__(self, keys: Iterable[StoredKey] = (), clock: Clock | None = None) -> None:
        self._keys = {key.key_id: key for key in keys}
        self._clock: Clock = clock or SystemClock()

    @classmethod
    def parse(cls, text: str) -> APIKeyStore:
        """Keys from stored lines (newline- or ``;``-separated; ``#`` starts a comment)."""
        keys = []
        for number, raw in enumerate(re.split(r"[\n;]", text), 1):
            line = raw.split("#", 1)[0].strip()
            if line:
                keys.append(_parse_line(line, number))
        return cls(keys)

    @classmethod
    def from_env(
        cls, name: str = "OAUTH_SHIELD_API_KEYS", environ: Mapping[str, str] | None = None
    ) -> APIKeyStore:
        """Keys from the variable ``name``, or from the file named by ``<name>_FILE``."""
        environ = os.environ if environ is None else environ
        if environ.get(name) and environ.get(name + "_FILE"):
            raise ConfigurationError(f"set {name} or {name}_FILE, not both")
        if path := environ.get(name + "_FILE"):
            return cls.from_file(path)
        return cls.parse(environ.get(name, ""))

    @classmethod
    def configured(cls, config: Mapping[str, str]) -> APIKeyStore | None:
        """The keys in ``config`` (app config or environment), or ``None`` if it names none."""
        if config.get("OAUTH_SHIELD_API_KEYS") or config.get("OAUTH_SHIELD_API_KEYS_FILE"):
            return cls.from_env(environ=config)
        return None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> APIKeyStore:
        try:
            return cls.parse(Path(path).read_text(encoding="utf-8"))
        except OSError:
            raise ConfigurationError(f"cannot read the API key file {os.fspath(path)!r}") from None

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"APIKeyStore({len(self._keys)} keys)"

    def validate(self, key: object, scopes: Iterable[str] | str | None = None) -> AccessToken:
        """The identity of a valid ``key`` that carries every one of ``scopes``, or raise
        :class:`InvalidTokenError` / :class:`InsufficientScopeError`."""
        required = required_scopes(scopes)
        match = _KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise InvalidTokenError(Reason.INVALID_API_KEY)
        stored = self._keys.get(PREFIX + match.group(1))
        presented = _digest(key)  # type: ignore[arg-type]  # a str, as the match shows
        if (
            not hmac.compare_digest(presented, stored.digest if stored else _NO_DIGEST)
            or stored is None
        ):
            raise InvalidTokenError(Reason.INVALID_API_KEY)
        if stored.expires_at is not None and self._clock.time() >= stored.expires_at.timestamp():
            raise InvalidTokenError(Reason.API_KEY_EXPIRED)
        return grant(_identity(stored, text_fingerprint(key)), required)  # type: ignore[arg-type]


def _identity(stored: StoredKey, fingerprint: str) -> AccessToken:
    """The same kind of identity a bearer token gives, so views need not care which it was."""
    claims = {"key_id": stored.key_id, "auth": "api_key", "scope": " ".join(sorted(stored.scopes))}
    return AccessToken(
        subject=stored.key_id,
        client_id=stored.key_id,
        scopes=stored.scopes,
        expires_at=stored.expires_at,
        claims=MappingProxyType(claims),
        fingerprint=fingerprint,
    )


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one (no offset given) is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _parse_line(line: str, number: int) -> StoredKey:
    match = _LINE.fullmatch(line)
    if match is None:
        raise ConfigurationError(
            f"API key line {number} is not '<osk_id> sha256=<hex> [scopes=..] [expires=..]'"
        )
    key_id, digest, rest = match.groups()
    fields = dict(item.split("=", 1) for item in rest.split())
    unknown = set(fields) - {"scopes", "expires"}
    if unknown:
        raise ConfigurationError(f"API key line {number}: unknown field(s) {sorted(unknown)}")
    scopes = required_scopes([s for s in fields.get("scopes", "").split(",") if s])
    expires = None
    if "expires" in fields:
        try:
            expires = as_utc(datetime.fromisoformat(fields["expires"]))
        except ValueError:
            raise ConfigurationError(
                f"API key line {number}: expires is not an ISO 8601 date"
            ) from None
    return StoredKey(key_id, bytes.fromhex(digest), scopes, expires)
