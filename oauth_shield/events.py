"""What happens inside a validator, as typed events: for audit trails, alerts and metrics.

A listener is any callable taking one :class:`Event`. Register it on one validator
(``validator.subscribe(listener)``) or for every validator of the process
(:func:`subscribe`); both return a function that removes it again::

    from oauth_shield import events

    def audit(event: events.Event) -> None:
        if isinstance(event, events.TokenRefused):
            audit_log.write(event.fingerprint, event.reason)

    unsubscribe = validator.subscribe(audit)

Events are frozen dataclasses, one class per kind (``event.kind`` names it in snake case, the
name the metrics and docs/operations.md use). They are secret-free by construction: a token
appears only as its 8-hex-digit fingerprint (the one in the log lines and in
``AccessToken.fingerprint``), never as bytes; URLs come without userinfo and query (a
signed URL's query is a secret); failure kinds and the configured issuer are configuration.
``kids`` come from the issuer's key set, cut to printable ASCII.

Delivery is synchronous, in the thread that saw it happen (a request's thread under the sync
facade, the event loop otherwise), in registration order: keep listeners short and
thread-safe, and hand slow work (a network call, a database write) to a queue. A listener
that raises never breaks a validation: the exception is logged once per listener on
``oauth_shield.events`` and the event goes on to the others.

oauth_shield's own WARNING and ERROR lines for these situations are written by a built-in
listener from the same events, and ``oauth_shield.otel`` counts them: logs, metrics and your
listeners cannot disagree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from . import _fork

__all__ = [
    "ConfigurationSuspected",
    "Event",
    "IntrospectionCalled",
    "IntrospectionGraceUsed",
    "IntrospectionThrottled",
    "IssuerBack",
    "IssuerUnavailable",
    "KeySetFetchSuppressed",
    "KeySetFetched",
    "KeySetRotated",
    "Listener",
    "SharedEntryRejected",
    "SharedTierBack",
    "SharedTierDown",
    "StaleKeysUsed",
    "TokenRefused",
    "subscribe",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The base of every event: the issuer it concerns, as configured."""

    kind: ClassVar[str] = "event"
    issuer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRefused(Event):
    """``validate()`` (or an adapter's API-key check) refused a credential.

    ``reason`` is the internal reason code (docs/errors.md), ``error`` the RFC 6750 code sent
    to the client (``None`` for a request without credentials) and ``status`` its HTTP
    status; ``scheme`` is ``bearer``, ``api_key`` or ``dpop``; ``token_kind`` is ``jwt`` (it
    has the shape of a JOSE object) or ``opaque``.
    """

    kind: ClassVar[str] = "token_refused"
    reason: str
    error: str | None
    status: int
    fingerprint: str
    scheme: str
    token_kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigurationSuspected(Event):
    """The first refusal of its reason looked like a wrong setting (audience, issuer,
    ``typ``, algorithm): ``message`` names the configured value, what the token carried
    (``iss``, ``aud``, ``typ`` or ``alg`` only, printable) and the likely fix."""

    kind: ClassVar[str] = "configuration_suspected"
    reason: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySetFetched(Event):
    """A key-set fetch ended. ``trigger``: ``start`` (warm-up, a first request, ``check()``),
    ``age`` (the TTL ran out), ``unknown_kid`` (a token named a kid the set lacks) or
    ``retry`` (after a failure). ``result``: ``success`` or the failure kind (docs/keysets.md,
    ``dns``, ``status_503``, ``no_usable_keys``...). ``keys``: usable keys installed (0 on
    failure). ``duration`` in seconds."""

    kind: ClassVar[str] = "key_set_fetched"
    trigger: str
    result: str
    url: str | None
    duration: float
    keys: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySetFetchSuppressed(Event):
    """A token named an unknown kid while the cooldown (``jwks_cooldown``) or the backoff
    after a failure forbade a fetch: it was refused without one."""

    kind: ClassVar[str] = "key_set_fetch_suppressed"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySetRotated(Event):
    """A fetched key set differs from the installed one: ``added`` and ``removed`` list the
    kids that came and went (keys without a kid are only counted in ``keys_added`` and
    ``keys_removed``). Tokens verified with a removed key are verified again."""

    kind: ClassVar[str] = "key_set_rotated"
    added: tuple[str, ...]
    removed: tuple[str, ...]
    keys_added: int
    keys_removed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StaleKeysUsed(Event):
    """A refresh failed and the last known good keys, ``age`` seconds old, stay in use
    (stale-if-error, docs/keysets.md). ``failure`` is the kind, ``detail`` the sentence."""

    kind: ClassVar[str] = "stale_keys_used"
    age: float
    failure: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerUnavailable(Event):
    """An endpoint of the issuer cannot serve: ``endpoint`` is ``jwks`` (no usable key set
    at all: tokens get 503) or ``introspection`` (an outage: misses get 503). Sent when the
    trouble starts, again for each failed key-set fetch; :class:`IssuerBack` ends it."""

    kind: ClassVar[str] = "issuer_unavailable"
    endpoint: str
    failure: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuerBack(Event):
    """An endpoint reported by :class:`IssuerUnavailable` or :class:`StaleKeysUsed` answers
    again."""

    kind: ClassVar[str] = "issuer_back"
    endpoint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IntrospectionCalled(Event):
    """One call to the introspection endpoint ended: ``result`` is ``success`` (an answer,
    active or not) or the failure kind; ``duration`` in seconds. ``fingerprint`` names the
    token."""

    kind: ClassVar[str] = "introspection_called"
    result: str
    duration: float
    fingerprint: str
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IntrospectionThrottled(Event):
    """The validator's introspection budget (``introspection_rate``) ran dry: misses are
    answered 503 without a call until it refills. Once per episode."""

    kind: ClassVar[str] = "introspection_throttled"


@dataclass(frozen=True, slots=True, kw_only=True)
class IntrospectionGraceUsed(Event):
    """The endpoint is unavailable and recently active tokens are accepted within
    ``introspection_grace``. Once per episode."""

    kind: ClassVar[str] = "introspection_grace_used"


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedTierDown(Event):
    """An operation on the shared cache (Redis) failed: the tier is out of use for
    ``retry_in`` seconds, and requests go on with the in-process tier. ``first`` is true for
    the error that started the outage (the one logged), false for a retry that failed."""

    kind: ClassVar[str] = "shared_tier_down"
    error_type: str
    retry_in: float
    first: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedTierBack(Event):
    """The shared cache answers again after :class:`SharedTierDown`."""

    kind: ClassVar[str] = "shared_tier_back"


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedEntryRejected(Event):
    """A shared cache entry failed authentication (``cache_secret``): someone who can write
    to Redis wrote it. It was ignored (a refetch at most)."""

    kind: ClassVar[str] = "shared_entry_rejected"


#: A listener: any callable that takes an event. Its return value is ignored.
Listener = Callable[[Event], object]

#: Listeners for every validator of the process; replaced whole (read without a lock).
_global: tuple[Listener, ...] = ()
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Send the events of every validator in this process to ``listener`` (those created
    later too); returns the function that unsubscribes it.

    For one validator only, use ``validator.subscribe(listener)``.
    """
    global _global
    if not callable(listener):
        raise TypeError("a listener must be callable")
    with _lock:
        _global = (*_global, listener)

    def unsubscribe() -> None:
        global _global
        with _lock:
            _global = tuple(each for each in _global if each is not listener)

    return unsubscribe


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it


def _listeners() -> tuple[Listener, ...]:
    """The process-wide listeners (read by the dispatcher, ``_telemetry``)."""
    return _global


_fork.on_fork(_after_fork)
