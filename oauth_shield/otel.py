"""Metrics and traces of oauth_shield through the OpenTelemetry API (the ``otel`` extra).

>>> from oauth_shield import otel                                   # doctest: +SKIP
>>> otel.instrument()              # every validator of the process, with the global providers
>>> otel.instrument(validator, meter_provider=provider)   # or one validator, your providers

Nothing here is imported, and nothing is measured, until :func:`instrument` is called: a
validator without telemetry pays one attribute check per validation. With it, a validation
costs a histogram record and a counter add with attribute sets built once; cache hits and
misses, key-set age and reachability are read only when the metrics are collected.

Names, units and attributes (docs/operations.md has the table and PromQL queries):

- ``oauth_shield.validation.duration`` (histogram, ``s``) and ``oauth_shield.validations``
  (an observable counter: counted in-process, reported when collected):
  ``oauth_shield.result`` (``success``/``failure``), ``error.type`` (the refusal's reason,
  docs/errors.md), ``oauth_shield.scheme`` (``bearer``/``api_key``/``dpop``),
  ``oauth_shield.token_kind`` (``jwt``/``opaque``), ``oauth_shield.issuer`` (configured).
- ``oauth_shield.jwks.fetches`` (``oauth_shield.jwks.trigger``, ``oauth_shield.result``,
  ``error.type``), ``oauth_shield.jwks.fetch.duration``, ``oauth_shield.jwks.fetches.suppressed``,
  ``oauth_shield.jwks.rotations``, ``oauth_shield.jwks.age`` (gauge, ``s``, with
  ``oauth_shield.jwks.state``), ``oauth_shield.jwks.keys`` (gauge).
- ``oauth_shield.introspection.calls`` and ``oauth_shield.introspection.duration``.
- ``oauth_shield.cache.lookups`` (``oauth_shield.cache.name``, ``oauth_shield.cache.result``).
- ``oauth_shield.shared.errors`` (``error.type``: the exception's class), ``oauth_shield.up``
  (gauge, 1 or 0, ``oauth_shield.component``: ``jwks``, ``introspection``, ``shared_cache``).
- ``oauth_shield.events`` (``oauth_shield.event``: every event of :mod:`oauth_shield.events`).

Spans: ``oauth_shield.validate`` around every validation that waits on the network (with
``trace_all``: every validation, as the sampler decides), and under it
``oauth_shield.discovery``, ``oauth_shield.jwks.fetch`` and ``oauth_shield.introspect``, each
holding an HTTP client span per request (``url.full`` without userinfo or query,
``http.response.status_code``, ``error.type``). No attribute ever holds a token, a piece of
one, a secret or a claim, except the subject as ``user.id`` when ``record_subject=True``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError(
        "oauth_shield.otel needs the OpenTelemetry API: pip install 'oauth-shield[otel]'"
    ) from None

from . import _telemetry
from ._errors import AuthError, Reason
from ._health import cache_counts, health_document
from ._telemetry import Telemetry
from ._token import AccessToken
from ._version import __version__
from .events import (
    Event,
    IntrospectionCalled,
    KeySetFetched,
    KeySetFetchSuppressed,
    KeySetRotated,
    SharedTierDown,
)

__all__ = ["DURATION_BUCKETS", "Instrumentation", "instrument"]

T = TypeVar("T")

#: Histogram buckets in seconds: a cached validation takes microseconds, a fetch up to
#: ``http_timeout``; OpenTelemetry's default buckets assume milliseconds.
DURATION_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

ISSUER = "oauth_shield.issuer"
RESULT = "oauth_shield.result"
ERROR_TYPE = "error.type"  # OpenTelemetry semantic conventions
SCHEME = "oauth_shield.scheme"
TOKEN_KIND = "oauth_shield.token_kind"
VALIDATE_SPAN = "oauth_shield.validate"

Attributes = dict[str, str | int | float | bool]
#: A validation's outcome: issuer, result, reason, scheme, token kind.
Outcome = tuple[str, str, str, str, str]


class Instrumentation:
    """The instruments of one :func:`instrument` call, and the validators it measures.

    :meth:`uninstrument` stops it: the validators go back to costing nothing.
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None,
        tracer_provider: trace.TracerProvider | None,
        *,
        trace_all: bool,
        record_subject: bool,
    ) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(
            "oauth_shield", __version__
        )
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            "oauth_shield", __version__
        )
        self.trace_all = trace_all
        self.record_subject = record_subject
        self.hubs: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self.active = True
        self._process_wide = False
        seconds = {"unit": "s", "explicit_bucket_boundaries_advisory": DURATION_BUCKETS}
        self.duration = meter.create_histogram(
            "oauth_shield.validation.duration",
            description="Time to validate a credential, refusals included",
            **seconds,  # type: ignore[arg-type]
        )
        # Counted here, reported when collected: an SDK counter add costs as much as the
        # histogram record (microseconds), a dict increment a few dozen nanoseconds.
        self.outcomes: dict[Outcome, list[Any]] = {}  # outcome -> [count, attributes]
        meter.create_observable_counter(
            "oauth_shield.validations",
            [self._validations],
            "{validation}",
            "Credentials validated, by outcome",
        )
        self.fetches = meter.create_counter(
            "oauth_shield.jwks.fetches", "{fetch}", "Key-set fetches, by trigger and result"
        )
        self.fetch_duration = meter.create_histogram(
            "oauth_shield.jwks.fetch.duration",
            description="Time of a key-set fetch (discovery included)",
            **seconds,  # type: ignore[arg-type]
        )
        self.suppressed = meter.create_counter(
            "oauth_shield.jwks.fetches.suppressed",
            "{fetch}",
            "Unknown kids refused without a fetch (cooldown or backoff)",
        )
        self.rotations = meter.create_counter(
            "oauth_shield.jwks.rotations", "{rotation}", "Key sets that changed on a fetch"
        )
        self.calls = meter.create_counter(
            "oauth_shield.introspection.calls", "{call}", "Calls to the introspection endpoint"
        )
        self.call_duration = meter.create_histogram(
            "oauth_shield.introspection.duration",
            description="Time of a call to the introspection endpoint",
            **seconds,  # type: ignore[arg-type]
        )
        self.shared_errors = meter.create_counter(
            "oauth_shield.shared.errors", "{error}", "Failed operations on the shared cache"
        )
        self.events = meter.create_counter(
            "oauth_shield.events", "{event}", "Events (oauth_shield.events), by kind"
        )
        meter.create_observable_gauge(
            "oauth_shield.jwks.age", [self._ages], "s", "Age of the installed key set"
        )
        meter.create_observable_gauge(
            "oauth_shield.jwks.keys", [self._keys], "{key}", "Usable keys installed"
        )
        meter.create_observable_gauge(
            "oauth_shield.up",
            [self._up],
            "1",
            "1 when the component answers (jwks, introspection, shared_cache), 0 when not",
        )
        meter.create_observable_counter(
            "oauth_shield.cache.lookups",
            [self._lookups],
            "{lookup}",
            "Cache lookups, by cache and hit or miss",
        )

    def sink(self, hub: Telemetry) -> _Sink:
        """Measure ``hub``'s validator with these instruments."""
        self.hubs.add(hub)
        return _Sink(self, hub)

    def uninstrument(self) -> None:
        """Stop measuring and tracing the validators of this instrumentation."""
        self.active = False
        if self._process_wide:
            _telemetry.instrument_all(None)
        for hub in list(self.hubs):
            if isinstance(hub.sink, _Sink) and hub.sink.instrumentation is self:
                hub.sink = None
        self.hubs = weakref.WeakSet()

    # --- what is read when the metrics are collected ---------------------------------

    def _documents(self) -> Iterator[tuple[str, Any]]:
        if not self.active:
            return
        for hub in list(self.hubs):
            owner = hub.owner()
            if owner is not None:
                yield hub.issuer, owner

    def _ages(self, options: CallbackOptions) -> Iterable[Observation]:
        for issuer, owner in self._documents():
            keys = health_document(owner)["keys"]
            if keys["age_seconds"] is not None:
                attributes = {ISSUER: issuer, "oauth_shield.jwks.state": keys["state"]}
                yield Observation(keys["age_seconds"], attributes)

    def _keys(self, options: CallbackOptions) -> Iterable[Observation]:
        for issuer, owner in self._documents():
            yield Observation(health_document(owner)["keys"]["count"], {ISSUER: issuer})

    def _up(self, options: CallbackOptions) -> Iterable[Observation]:
        for issuer, owner in self._documents():
            document = health_document(owner)
            found = {
                "jwks": document["keys"]["last_fetch"],
                "introspection": document["introspection"],
                "shared_cache": document["shared_cache"],
            }
            for component, state in found.items():
                if state in ("success", "reachable", "up"):
                    value = 1
                elif state in ("none", "unknown", "absent"):
                    continue  # not known yet, or not configured
                else:
                    value = 0
                yield Observation(value, {ISSUER: issuer, "oauth_shield.component": component})

    def _validations(self, options: CallbackOptions) -> Iterable[Observation]:
        for count, attributes in list(self.outcomes.values()):
            yield Observation(count, attributes)

    def _lookups(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[str, str, str], int] = {}
        for issuer, owner in self._documents():
            for name, (hits, misses) in cache_counts(owner).items():
                for result, count in (("hit", hits), ("miss", misses)):
                    key = (issuer, name, result)
                    totals[key] = totals.get(key, 0) + count
        for (issuer, name, result), count in totals.items():
            attributes = {
                ISSUER: issuer,
                "oauth_shield.cache.name": name,
                "oauth_shield.cache.result": result,
            }
            yield Observation(count, attributes)


class _Handle:
    """A span, as the components see it (``_telemetry.SpanHandle``)."""

    __slots__ = ("span",)

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def set(self, key: str, value: str | int | float | bool) -> None:
        self.span.set_attribute(key, value)

    def fail(self, kind: str) -> None:
        self.span.set_attribute(ERROR_TYPE, kind)
        self.span.set_status(Status(StatusCode.ERROR))


class _Sink:
    """One validator's metrics and spans (``_telemetry.Sink``)."""

    def __init__(self, instrumentation: Instrumentation, hub: Telemetry) -> None:
        self.instrumentation = instrumentation
        self.issuer = hub.issuer
        self._tracer = instrumentation.tracer
        self._cells: dict[tuple[str, str, str, str], list[Any]] = {}

    def _outcome(self, result: str, reason: str, scheme: str, kind: str) -> list[Any]:
        """The counter cell of an outcome, ``[count, attributes]``: the attribute set is
        built once (OpenTelemetry hashes it per call), and shared by every validator of
        the issuer, so the count outlives the validator."""
        key = (result, reason, scheme, kind)
        cell = self._cells.get(key)
        if cell is None:
            attributes: Attributes = {
                RESULT: result,
                SCHEME: scheme,
                TOKEN_KIND: kind,
                ISSUER: self.issuer,
            }
            if reason:
                attributes[ERROR_TYPE] = reason
            outcomes = self.instrumentation.outcomes
            cell = outcomes.setdefault((self.issuer, *key), [0, attributes])
            self._cells[key] = cell
        return cell

    # --- validations -----------------------------------------------------------------

    def accepted(
        self, token: AccessToken, scheme: str, kind: str, started: float, waited: bool
    ) -> None:
        took = time.perf_counter() - started
        cell = self._outcome("success", "", scheme, kind)
        cell[0] += 1
        attributes = cell[1]
        instrumentation = self.instrumentation
        instrumentation.duration.record(took, attributes)
        if instrumentation.trace_all and not waited:
            self._past_span(attributes, took, token)

    def refused(self, reason: Reason, scheme: str, kind: str, started: float, waited: bool) -> None:
        took = time.perf_counter() - started if started else 0.0
        cell = self._outcome("failure", reason.value, scheme, kind)
        cell[0] += 1
        attributes = cell[1]
        instrumentation = self.instrumentation
        instrumentation.duration.record(took, attributes)
        if instrumentation.trace_all and not waited:
            self._past_span(attributes, took, None)

    def _past_span(self, attributes: Attributes, took: float, token: AccessToken | None) -> None:
        """A validation that did not wait, traced after the fact (``trace_all``)."""
        end = time.time_ns()
        span = self._tracer.start_span(
            VALIDATE_SPAN, attributes=attributes, start_time=end - int(took * 1e9)
        )
        if token is not None:
            self._subject(span, token)
        elif attributes.get(RESULT) == "failure":
            span.set_status(Status(StatusCode.ERROR))
        span.end(end)

    def _subject(self, span: trace.Span, token: AccessToken) -> None:
        if self.instrumentation.record_subject and token.subject is not None:
            span.set_attribute("user.id", token.subject)

    async def remote(self, work: Awaitable[T], kind: str, parent: object = None) -> T:
        """Await ``work`` (a validation's network half) inside its span."""
        attributes: Attributes = {ISSUER: self.issuer, TOKEN_KIND: kind}
        with self._tracer.start_as_current_span(
            VALIDATE_SPAN,
            context=parent,  # type: ignore[arg-type]  # an otel Context, or None
            attributes=attributes,
            record_exception=False,  # a message is no secret, but a span needs none
            set_status_on_exception=False,
        ) as span:
            try:
                result = await work
            except AuthError as error:
                span.set_attribute(RESULT, "failure")
                span.set_attribute(ERROR_TYPE, error.reason.value)
                span.set_status(Status(StatusCode.ERROR))
                raise
            span.set_attribute(RESULT, "success")
            if isinstance(result, AccessToken):
                self._subject(span, result)
            return result

    def parent(self) -> object:
        return otel_context.get_current()

    @contextmanager
    def span(self, name: str, attributes: Attributes, client: bool) -> Iterator[_Handle]:
        with self._tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT if client else SpanKind.INTERNAL,
            attributes={ISSUER: self.issuer, **attributes},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield _Handle(span)

    # --- events ----------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        instrumentation = self.instrumentation
        issuer: Attributes = {ISSUER: self.issuer}
        instrumentation.events.add(1, {**issuer, "oauth_shield.event": event.kind})
        handler = _COUNTERS.get(type(event))
        if handler is not None:
            handler(instrumentation, issuer, event)


def _fetched(instrumentation: Instrumentation, issuer: Attributes, event: Any) -> None:
    assert isinstance(event, KeySetFetched)
    attributes = {**issuer, "oauth_shield.jwks.trigger": event.trigger, **_result(event.result)}
    instrumentation.fetches.add(1, attributes)
    instrumentation.fetch_duration.record(event.duration, attributes)


def _called(instrumentation: Instrumentation, issuer: Attributes, event: Any) -> None:
    assert isinstance(event, IntrospectionCalled)
    attributes = {**issuer, **_result(event.result)}
    instrumentation.calls.add(1, attributes)
    instrumentation.call_duration.record(event.duration, attributes)


def _suppressed(instrumentation: Instrumentation, issuer: Attributes, event: Any) -> None:
    instrumentation.suppressed.add(1, issuer)


def _rotated(instrumentation: Instrumentation, issuer: Attributes, event: Any) -> None:
    instrumentation.rotations.add(1, issuer)


def _shared_down(instrumentation: Instrumentation, issuer: Attributes, event: Any) -> None:
    assert isinstance(event, SharedTierDown)
    instrumentation.shared_errors.add(1, {**issuer, ERROR_TYPE: event.error_type})


def _result(result: str) -> Attributes:
    if result == "success":
        return {RESULT: "success"}
    return {RESULT: "failure", ERROR_TYPE: result}


_COUNTERS: dict[type[Event], Callable[[Instrumentation, Attributes, Any], None]] = {
    KeySetFetched: _fetched,
    IntrospectionCalled: _called,
    KeySetFetchSuppressed: _suppressed,
    KeySetRotated: _rotated,
    SharedTierDown: _shared_down,
}


def instrument(
    validator: Any = None,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    trace_all: bool = False,
    record_subject: bool = False,
) -> Instrumentation:
    """Measure and trace validators through OpenTelemetry; returns the
    :class:`Instrumentation` (its ``uninstrument()`` stops it).

    :param validator: a :class:`~oauth_shield.TokenValidator` or
        :class:`~oauth_shield.SyncTokenValidator`; ``None`` (the default) instruments every
        validator of the process, those created later too (the ones adapters create from
        configuration included).
    :param meter_provider: where the metrics go (default: the global one, as set by
        ``opentelemetry.metrics.set_meter_provider`` or auto-instrumentation).
    :param tracer_provider: where the spans go (default: the global one).
    :param trace_all: also trace validations that wait for nothing (cache hits, local
        verification), after the fact; the tracer provider's sampler still decides.
    :param record_subject: put the token's subject on spans as ``user.id`` (for audit
        trails). Off by default: a claim value is personal data.
    """
    for name, flag in (("trace_all", trace_all), ("record_subject", record_subject)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False")
    instrumentation = Instrumentation(
        meter_provider, tracer_provider, trace_all=trace_all, record_subject=record_subject
    )
    if validator is None:
        instrumentation._process_wide = True
        _telemetry.instrument_all(instrumentation.sink)
        return instrumentation
    inner = getattr(validator, "_validator", validator)  # SyncTokenValidator wraps one
    hub = getattr(inner, "_telemetry", None)
    if not isinstance(hub, Telemetry):
        raise TypeError("instrument() takes a TokenValidator or a SyncTokenValidator")
    hub.sink = instrumentation.sink(hub)
    return instrumentation
