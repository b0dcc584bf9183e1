"""Keep bearer tokens, API keys and secrets out of logs, whoever writes them.

>>> from oauth_shield import logging as shield_logging                 # doctest: +SKIP
>>> shield_logging.install(secrets=[client_secret])

What is masked, wherever it appears in a record's message, its arguments, its ``extra`` fields
(dicts and bytes included) or its exception text:

- ``Bearer <token>`` credentials, and anything shaped like a JWT (JWS or JWE);
- the values of ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie`` and
  ``X-API-Key`` headers, in text (``Authorization: ...``), dict or tuple reprs, WSGI environs;
- ``access_token=``, ``refresh_token=``, ``id_token=``, ``token=``, ``client_secret=``,
  ``subject_token=``, ``api_key=`` and ``password=`` in URLs, query strings and form bodies;
- oauth_shield API keys (their ``osk_`` prefix), and any secret you register.

A mask keeps a short fingerprint, ``[redacted:1a2b3c4d]``: the first eight hex digits of the
value's SHA-256, the same fingerprint the validator logs for a token, so operators can still
tell which token a line was about. Formatting happens before masking, so a token split across
several arguments is still caught.
"""

from __future__ import annotations

import logging as _logging
import re
import traceback
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from ._secret import Secret
from ._token import text_fingerprint

__all__ = ["RedactingFilter", "StructlogRedactor", "install", "uninstall"]

#: The loggers install() attaches to (their handlers and themselves), besides the root logger.
SERVER_LOGGERS = (
    "uvicorn", "uvicorn.error", "uvicorn.access", "hypercorn", "hypercorn.error",
    "hypercorn.access", "werkzeug", "gunicorn", "gunicorn.error", "gunicorn.access",
    "quart", "quart.app", "quart.serving", "flask", "flask.app", "httpx", "httpcore",
)  # fmt: skip

_HEADERS = r"authorization|proxy-authorization|cookie|set-cookie|x-api-key|x_api_key"
_PARAMS = (
    r"access_token|refresh_token|id_token|token|client_secret|subject_token|actor_token"
    r"|api_key|apikey|password"
)
_PATTERN = re.compile(
    # "Authorization: v", "'Authorization': 'v'", "('authorization', 'v')", "HTTP_AUTHORIZATION: v"
    rf"(?P<header>(?:\bhttp_)?\b(?:{_HEADERS})\b['\"]?(?:\s*[:=]\s*|,\s*)(?:b?['\"])?)(?P<hvalue>[^'\"\r\n]+)"
    rf"|(?P<bearer>\bbearer\s+)(?P<token>[A-Za-z0-9\-._~+/]+=*)"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4})"  # JWS (3 parts), JWE (5)
    rf"|(?P<param>(?<![A-Za-z0-9_])(?:{_PARAMS})=)(?P<pvalue>[^&\s'\"#,;)]+)"
    r"|(?P<apikey>\bosk_[A-Za-z0-9]+_[A-Za-z0-9]+)",
    re.IGNORECASE,
)
_SENSITIVE_NAME = re.compile(
    rf"(?:{_HEADERS}|{_PARAMS}|secret|credential|cookie)", re.IGNORECASE
)  # extra fields and dict keys with these names are masked whole
_STANDARD = frozenset(_logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
_DONE = "_oauth_shield_redacted"
_PLAIN_SIZE = len(_logging.LogRecord("", 0, "", 0, "", (), None).__dict__) + 1  # with _DONE
# Text without any of these cannot match _PATTERN: a few substring searches spare the regex.
_TRIGGERS = ("authoriz", "cookie", "api_key", "api-key", "apikey", "bearer", "eyj", "token=",
             "secret=", "password=", "osk_")  # fmt: skip


_MASK = "[redacted:"


def mask(value: str) -> str:
    """``[redacted:<fingerprint>]`` for ``value``."""
    return f"{_MASK}{text_fingerprint(value)}]"


class RedactingFilter(_logging.Filter):
    """A :class:`logging.Filter` that masks secrets in every record it sees (and keeps them all)."""

    def __init__(self, secrets: Iterable[str | Secret] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._secret_pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add_secret(secret)

    def add_secret(self, secret: str | Secret) -> None:
        """Mask this exact value too (client secrets, API keys, anything of yours)."""
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            self._secrets.add(value)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._secret_pattern = re.compile("|".join(map(re.escape, ordered)))

    def redact(self, text: str) -> str:
        """``text`` with every secret masked."""
        if self._secret_pattern is not None:
            text = self._secret_pattern.sub(lambda m: mask(m.group()), text)
        lowered = text.lower()
        if not any(trigger in lowered for trigger in _TRIGGERS):
            return text
        return _PATTERN.sub(_masked, text)

    def filter(self, record: _logging.LogRecord) -> bool:
        self.redact_record(record)
        return True

    def redact_record(self, record: _logging.LogRecord, *, extras: bool = True) -> None:
        """Mask the message, its arguments and exception text (once), and ``extra`` fields."""
        if not getattr(record, _DONE, False):
            self._redact_message(record)
            self._redact_exception(record)
            record.__dict__[_DONE] = True
        if extras and len(record.__dict__) > _PLAIN_SIZE:  # only records with extra fields
            for name, value in list(record.__dict__.items()):
                if name not in _STANDARD and name != _DONE:
                    record.__dict__[name] = self.redact_value(name, value)

    def _redact_message(self, record: _logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: mask what there is
            message = f"{record.msg} {record.args}"
        masked = self.redact(message)
        if masked != message or not isinstance(record.msg, str):
            record.msg, record.args = masked, None

    def _redact_exception(self, record: _logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info))
            masked = self.redact(text)
            if masked != text:  # the structured exception would carry the secret on: drop it
                record.exc_text, record.exc_info = masked.rstrip("\n"), None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)

    def redact_value(self, name: object, value: Any) -> Any:
        """A value with secrets masked; a value stored under a sensitive name is masked whole."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(name, str) and _SENSITIVE_NAME.search(name):
            return mask(value if isinstance(value, str) else repr(value))
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, bytes | bytearray):
            return self.redact(bytes(value).decode("latin-1"))
        if isinstance(value, Mapping):
            return {key: self.redact_value(key, item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            if len(items) == 2 and isinstance(items[0], str | bytes):  # a (header, value) pair
                key = items[0].decode("latin-1") if isinstance(items[0], bytes) else items[0]
                return (items[0], self.redact_value(key, items[1]))
            return [self.redact_value(None, item) for item in items]
        return self.redact(str(value))  # any other object: only its text may be logged


_CREDENTIALS = re.compile(r"([A-Za-z][\w-]*\s+)(\S+)")  # "<scheme> <credentials>"


def _masked(match: re.Match[str]) -> str:
    if match.group("header") is not None:
        value = match.group("hvalue")
        scheme = _CREDENTIALS.fullmatch(value.strip())
        if (scheme.group(2) if scheme else value).startswith(_MASK):  # a registered secret
            return match.group()
        # Keep the scheme: the fingerprint is then the credential's own, as the validator logs it.
        masked = scheme.group(1) + mask(scheme.group(2)) if scheme else mask(value)
        return match.group("header") + masked
    if match.group("bearer") is not None:
        return match.group("bearer") + mask(match.group("token"))
    if match.group("param") is not None:
        value = match.group("pvalue")
        return match.group() if value.startswith(_MASK) else match.group("param") + mask(value)
    return mask(match.group())


class StructlogRedactor:
    """A structlog processor that masks what :class:`RedactingFilter` masks.

    >>> structlog.configure(processors=[..., StructlogRedactor(), JSONRenderer()])  # doctest: +SKIP
    """

    def __init__(self, redacting: RedactingFilter | None = None) -> None:
        self._filter = redacting or RedactingFilter()

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {name: self._filter.redact_value(name, value) for name, value in event.items()}


_installed: tuple[RedactingFilter, Any] | None = None


def install(
    secrets: Iterable[str | Secret] = (), loggers: Iterable[str] = SERVER_LOGGERS
) -> RedactingFilter:
    """Mask secrets in every log record of the process, in one call.

    Attaches a :class:`RedactingFilter` to the handlers of the root logger and of ``loggers``
    (uvicorn, hypercorn, werkzeug, gunicorn, quart, flask, httpx, ...), and masks every record's
    message and exception at creation too, so that handlers a server configures later (uvicorn
    and gunicorn replace theirs at startup) still only see masked text; ``extra`` fields are
    masked by the handler filters. Calling it again adds the new secrets to the same filter.
    """
    global _installed
    if _installed is not None:
        redacting = _installed[0]
        for secret in secrets:
            redacting.add_secret(secret)
    else:
        redacting = RedactingFilter(secrets)
        previous = _logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> _logging.LogRecord:
            record = previous(*args, **kwargs)
            redacting.redact_record(record, extras=False)  # extras are added after creation
            return record

        _logging.setLogRecordFactory(factory)
        _installed = (redacting, previous)
    for logger in (_logging.getLogger(), *map(_logging.getLogger, loggers)):
        for handler in logger.handlers:
            if redacting not in handler.filters:
                handler.addFilter(redacting)
    return redacting


def uninstall() -> None:
    """Undo :func:`install` (for tests)."""
    global _installed
    if _installed is None:
        return
    redacting, previous = _installed
    _logging.setLogRecordFactory(previous)
    for logger in (
        _logging.getLogger(),
        *(_logging.getLogger(name) for name in _logging.root.manager.loggerDict),
    ):
        for target in (logger, *getattr(logger, "handlers", ())):
            target.removeFilter(redacting)
    _installed = None
