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
tell which token a line was about.

Only secrets change: every formatter that reads more than the message (uvicorn's access
formatter unpacks ``record.args``, gunicorn's access log formats a dict of atoms, structlog's
stdlib bridge and JSON formatters read a dict ``msg`` and ``exc_info``) still gets what it
expects. Each argument is masked in place, keeping its type, and the rendered message is
checked too, so a token split across several arguments is still caught (docs/logging.md).
"""

from __future__ import annotations

import logging as _logging
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from ._redact import RedactedError, Redactor, is_exc_info
from ._redact import mask as mask  # the fingerprinted mask, for callers and tests
from ._secret import Secret

__all__ = ["RedactedError", "RedactingFilter", "StructlogRedactor", "install", "uninstall"]

#: The loggers to whose handlers install() attaches the filter, besides the root logger's.
SERVER_LOGGERS = (
    "uvicorn", "uvicorn.error", "uvicorn.access", "hypercorn", "hypercorn.error",
    "hypercorn.access", "werkzeug", "gunicorn", "gunicorn.error", "gunicorn.access",
    "quart", "quart.app", "quart.serving", "flask", "flask.app", "httpx", "httpcore",
)  # fmt: skip

_STANDARD = frozenset(_logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
_DONE = "_oauth_shield_redacted"
_PLAIN_SIZE = len(_logging.LogRecord("", 0, "", 0, "", (), None).__dict__) + 1  # with _DONE


class RedactingFilter(_logging.Filter, Redactor):
    """A :class:`logging.Filter` that masks secrets in every record it sees (and keeps them all).

    Only secrets change: ``record.args`` keeps its shape (the tuple uvicorn's access formatter
    unpacks, gunicorn's dict of atoms), a dict ``msg`` stays a dict (structlog's stdlib bridge,
    python-json-logger), ``extra`` fields keep their types, and an exception whose traceback
    showed a secret becomes a :class:`RedactedError` carrying the masked traceback.
    """

    def __init__(self, secrets: Iterable[str | Secret] = ()) -> None:
        _logging.Filter.__init__(self)
        Redactor.__init__(self, secrets)

    def filter(self, record: _logging.LogRecord) -> bool:
        self.redact_record(record)
        return True

    def redact_record(self, record: _logging.LogRecord, *, extras: bool = True) -> None:
        """Mask the message, its arguments and exception text (once), and ``extra`` fields."""
        if not getattr(record, _DONE, False):
            if type(record.msg) is dict and not record.args:  # structlog's bridge, JSON loggers
                record.msg = self.redact_event(record.msg)
            else:
                record.msg, record.args = self.redact_message(record.msg, record.args)
            self._redact_exception(record)
            record.__dict__[_DONE] = True
        if extras and len(record.__dict__) > _PLAIN_SIZE:  # only records with extra fields
            for name, value in list(record.__dict__.items()):
                if name not in _STANDARD and name != _DONE:
                    record.__dict__[name] = self.redact_value(name, value)

    def redact_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A structlog event dict (or a dict logged as the message) with secrets masked.

        ``exc_info`` stays an exception or a triple. ``exc_info=True`` is resolved now, while
        the exception is current, when its traceback shows a secret: rendered later by
        ``format_exc_info``, it would show the secret. A ``LogRecord`` (``_record`` in
        ``ProcessorFormatter``'s chains, its own copy) is masked in place.
        """
        return {name: self._entry(name, value) for name, value in event.items()}

    def _entry(self, name: str, value: Any) -> Any:
        if name == "exc_info":
            if value is True and (current := sys.exc_info())[1] is not None:
                masked = self.redact_exc_info(current)
                return value if masked is current else masked
            if isinstance(value, BaseException) or is_exc_info(value):
                return self.redact_exc_info(value)
        if isinstance(value, _logging.LogRecord):
            self.redact_record(value)
            return value
        return self.redact_value(name, value)

    def _redact_exception(self, record: _logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            masked = self.redact_exc_info(record.exc_info)
            if masked is not record.exc_info:  # the exception itself would carry the secret on
                record.exc_info, record.exc_text = masked, str(masked[1])
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


class StructlogRedactor:
    """A structlog processor that masks what :class:`RedactingFilter` masks, keeping every
    value's shape (:meth:`RedactingFilter.redact_event`): ``exc_info`` stays an exception or a
    triple for ``format_exc_info``, and ``_record`` stays a ``LogRecord``.

    >>> structlog.configure(processors=[..., StructlogRedactor(), JSONRenderer()])  # doctest: +SKIP
    """

    def __init__(self, redacting: RedactingFilter | None = None) -> None:
        self._filter = redacting or RedactingFilter()

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return self._filter.redact_event(event)


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
