"""One validator's events, metrics and spans: the hub the shell reports to.

Theory of operation
-------------------
- Every component of a validator (key set, introspector, shared tier, HTTP client) reports
  to the validator's :class:`Telemetry`. Things that happen (a refusal, a fetch, a rotation,
  an outage) become typed events (:mod:`oauth_shield.events`), delivered in order to the
  built-in logging listener (:func:`log_event`, which writes oauth_shield's WARNING and ERROR
  lines), the validator's listeners, the process's listeners, and the metrics sink.
- The sink (``oauth_shield.otel``) is ``None`` unless telemetry was switched on: then the hot
  path pays one attribute check, nothing is imported, and a span is a shared no-op object.
  Counters that change on every request (cache hits and misses) are plain integers on the
  caches, read by the sink only when metrics are collected.
- A listener that raises is logged once (per hub and listener) and never breaks a validation.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import _fork, events
from ._errors import AuthError, Reason
from .events import (
    ConfigurationSuspected,
    Event,
    IntrospectionCalled,
    IntrospectionGraceUsed,
    IntrospectionThrottled,
    IssuerBack,
    IssuerUnavailable,
    KeySetFetched,
    KeySetRotated,
    Listener,
    SharedEntryRejected,
    SharedTierBack,
    SharedTierDown,
    StaleKeysUsed,
    TokenRefused,
)

if TYPE_CHECKING:
    from ._token import AccessToken

T = TypeVar("T")

logger = logging.getLogger("oauth_shield.events")
_validator_log = logging.getLogger("oauth_shield.validator")
_config_log = logging.getLogger("oauth_shield.config")
_keys_log = logging.getLogger("oauth_shield.keys")
_introspection_log = logging.getLogger("oauth_shield.introspection")
_shared_log = logging.getLogger("oauth_shield.shared")

#: The ``scheme`` of a bearer token, an API key and a DPoP-bound token (events, metrics).
BEARER, API_KEY, DPOP = "bearer", "api_key", "dpop"


class SpanHandle(Protocol):
    """What a component may do with the span around its work."""

    def set(self, key: str, value: str | int | float | bool) -> None: ...

    def fail(self, kind: str) -> None: ...


class Sink(Protocol):
    """Metrics and traces for one validator (implemented by ``oauth_shield.otel``)."""

    def on_event(self, event: Event) -> None: ...

    def accepted(
        self, token: AccessToken, scheme: str, kind: str, started: float, waited: bool
    ) -> None: ...

    def refused(
        self, reason: Reason, scheme: str, kind: str, started: float, waited: bool
    ) -> None: ...

    def remote(self, work: Awaitable[T], kind: str, parent: object = None) -> Awaitable[T]: ...

    def parent(self) -> object: ...

    def span(
        self, name: str, attributes: dict[str, str | int | float | bool], client: bool
    ) -> Any: ...


class _NoSpan:
    """The span when nobody traces: one shared object, every method a no-op."""

    __slots__ = ()

    def set(self, key: str, value: str | int | float | bool) -> None:
        pass

    def fail(self, kind: str) -> None:
        pass


NO_SPAN = _NoSpan()

#: Every hub of the process, for telemetry switched on process-wide (``otel.instrument()``).
_hubs: weakref.WeakSet[Telemetry] = weakref.WeakSet()
#: Makes the sink of a new hub while telemetry is on process-wide.
_default_sink: Callable[[Telemetry], Sink] | None = None


class Telemetry:
    """The events, metrics and spans of one validator (see the module docstring)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.sink: Sink | None = None
        self.owner: Callable[[], Any] = _nobody  # the validator (a weak reference), for gauges
        self._listeners: tuple[Listener, ...] = ()
        self._broken: set[int] = set()  # listeners that raised, logged once each
        self._lock = threading.Lock()
        _fork.register(self)
        _hubs.add(self)
        if _default_sink is not None:
            self.sink = _default_sink(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it

    # --- events ----------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        if not callable(listener):
            raise TypeError("a listener must be callable")
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(each for each in self._listeners if each is not listener)

        return unsubscribe

    @property
    def listened(self) -> bool:
        """Whether anyone besides the logging listener wants events."""
        return bool(self._listeners or events._listeners() or self.sink is not None)

    def emit(self, event: Event) -> None:
        """Deliver ``event``: the log line, the listeners, then the metrics."""
        log_event(event)
        for listener in (*self._listeners, *events._listeners()):
            try:
                listener(event)
            except Exception:  # a listener must never break a validation
                self._report(listener)
        sink = self.sink
        if sink is not None:
            sink.on_event(event)

    def _report(self, listener: Listener) -> None:
        with self._lock:
            if id(listener) in self._broken:
                return
            self._broken.add(id(listener))
        logger.exception(
            "an event listener raised (%r); it keeps receiving events, further errors of it "
            "are not logged",
            listener,
        )

    # --- validations -----------------------------------------------------------------

    def refused(
        self, error: AuthError, token: object, scheme: str, started: float, waited: bool
    ) -> None:
        """A credential refused: metrics, then the event (when anyone wants it)."""
        sink = self.sink
        kind = token_kind(token)
        if sink is not None:
            sink.refused(error.reason, scheme, kind, started, waited)
        if not (self.listened or _validator_log.isEnabledFor(logging.INFO)):
            return
        self.emit(
            TokenRefused(
                issuer=self.issuer,
                reason=error.reason.value,
                error=error.error,
                status=error.status_code,
                fingerprint=token_name(token),
                scheme=scheme,
                token_kind=kind,
            )
        )

    @contextmanager
    def span(
        self,
        name: str,
        attributes: dict[str, str | int | float | bool] | None = None,
        client: bool = False,
    ) -> Iterator[SpanHandle]:
        """A child span around network work (a no-op without a tracing sink)."""
        sink = self.sink
        if sink is None:
            yield NO_SPAN
            return
        with sink.span(name, attributes or {}, client) as handle:
            yield handle


def _nobody() -> None:
    return None


#: The hub of components built without a validator (tests, tools): it only logs.
LOG_ONLY = Telemetry("")


def token_kind(token: object) -> str:
    """``jwt`` for a credential shaped like a compact JOSE object, else ``opaque`` (bounded:
    a metric attribute)."""
    return "jwt" if isinstance(token, str) and token.count(".", 0, 8192) >= 2 else "opaque"


def token_name(token: object) -> str:
    """The token's fingerprint, or ``-`` for a value that is not a string or is huge."""
    from ._token import text_fingerprint

    if isinstance(token, str) and len(token) <= 1 << 16:
        return text_fingerprint(token)
    return "-"


# --- the built-in logging listener -------------------------------------------------------


def _refused(event: TokenRefused) -> None:
    if event.scheme != API_KEY:  # API-key refusals are not logged (docs/logging.md)
        _validator_log.info("token %s refused: %s", event.fingerprint, event.reason)


def _suspected(event: ConfigurationSuspected) -> None:
    _config_log.warning("%s (logged once per validator)", event.message)


def _rotated(event: KeySetRotated) -> None:
    _keys_log.info(
        "key set rotated: kids added %s, removed %s (%d keys in, %d out)",
        list(event.added),
        list(event.removed),
        event.keys_added,
        event.keys_removed,
    )


def _stale(event: StaleKeysUsed) -> None:
    _keys_log.warning(
        "key set refresh failed: %s; using the last known good keys, %.0f s old",
        event.detail,
        event.age,
    )


def _unavailable(event: IssuerUnavailable) -> None:
    if event.endpoint == "jwks":
        _keys_log.error(
            "key set fetch failed: %s; tokens cannot be checked until it works (503)",
            event.detail,
        )
    else:
        _introspection_log.warning("introspection endpoint unavailable: %s", event.detail)


def _back(event: IssuerBack) -> None:
    if event.endpoint == "jwks":
        _keys_log.warning("key set fetched again: the issuer is back")
    else:
        _introspection_log.warning("introspection endpoint is back")


def _called(event: IntrospectionCalled) -> None:
    if event.result == "success" or event.detail is None:
        return
    if event.result.startswith("status_5") or event.result in ("status_408", "status_429"):
        _introspection_log.info(
            "introspection of token %s failed: %s", event.fingerprint, event.detail
        )
    elif event.result not in _UNREACHABLE:
        _introspection_log.error("introspection failed: %s", event.detail)


_UNREACHABLE = frozenset({"dns", "connect", "tls", "timeout", "network"})


def _throttled(event: IntrospectionThrottled) -> None:
    _introspection_log.warning("introspection rate limit reached; answering 503 without a call")


def _grace(event: IntrospectionGraceUsed) -> None:
    _introspection_log.warning(
        "introspection unavailable; accepting recently active tokens (grace)"
    )


def _shared_down(event: SharedTierDown) -> None:
    if event.first:
        _shared_log.warning(
            "shared cache unavailable (%s); using the in-process cache, retrying in %.0f s",
            event.error_type,
            event.retry_in,
        )


def _shared_back(event: SharedTierBack) -> None:
    _shared_log.warning("shared cache is back")


def _rejected(event: SharedEntryRejected) -> None:
    _shared_log.error("a shared cache entry failed authentication; entries like it are ignored")


def _key_set_fetched(event: KeySetFetched) -> None:
    pass  # the DEBUG line with the kids is written where they are known (_keyset)


_WRITERS: dict[type[Event], Callable[[Any], None]] = {
    TokenRefused: _refused,
    ConfigurationSuspected: _suspected,
    KeySetRotated: _rotated,
    StaleKeysUsed: _stale,
    IssuerUnavailable: _unavailable,
    IssuerBack: _back,
    IntrospectionCalled: _called,
    IntrospectionThrottled: _throttled,
    IntrospectionGraceUsed: _grace,
    SharedTierDown: _shared_down,
    SharedTierBack: _shared_back,
    SharedEntryRejected: _rejected,
    KeySetFetched: _key_set_fetched,
}


def log_event(event: Event) -> None:
    """oauth_shield's own log line for ``event``, if it has one (docs/logging.md)."""
    writer = _WRITERS.get(type(event))
    if writer is not None:
        writer(event)


# --- process-wide switch ---------------------------------------------------------------


def instrument_all(factory: Callable[[Telemetry], Sink] | None) -> None:
    """Give every hub, present and future, a sink from ``factory`` (``None``: none)."""
    global _default_sink
    _default_sink = factory
    for hub in list(_hubs):
        if hub is not LOG_ONLY:
            hub.sink = None if factory is None else factory(hub)
