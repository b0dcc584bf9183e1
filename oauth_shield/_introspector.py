"""Introspection of opaque tokens: caches, single-flight, and a limit on what reaches the server.

Theory of operation
-------------------
- Cache keys are SHA-256 digests of the token, never the token or a part of it; values are
  built from the filtered answer only.
- A verdict is reached on the server's whole answer (every rule, ``cnf`` included); only then
  is the answer cut to the field allowlist, and only that is kept, shared or returned.
- A positive verdict lives at most ``introspection_ttl`` (monotonic clock) and never beyond the
  token's own ``exp`` (wall clock), which every hit checks again.
- A negative verdict (inactive, or active but failing a rule) lives
  ``introspection_negative_ttl``, so a repeated bad token does not reach the server again.
- A failure of the server itself (unreachable, 5xx, an answer we cannot read) is not a verdict
  about the token: it never lets the token through, and is remembered for a second only (so
  that processes waiting on the same call fail with it rather than all retrying).
- An outage is told apart from one token's trouble. Only a failure of the network (timeout,
  connection refused or reset, DNS) or ``OUTAGE_AFTER`` failing answers (5xx, 408, 429) in a
  row, for distinct tokens from distinct requesters, opens the outage shortcut: for a second,
  misses are answered 503 without a call (no request waits for a timeout the previous one just
  met), and the outage is logged once, with its end. Any other failing answer is remembered
  for its token's digest only, so one crafted token the server chokes on, however often it is
  sent, never stops introspection for other users.
- Concurrent requests for one token share one call: within the process (single-flight by
  digest), and across processes through the shared cache when there is one.
- A call that would reach the server first takes a token from its requester's bucket (a share
  of the rate and burst, see ``_ratelimit``), then from the validator's (``introspection_rate``
  per second, ``introspection_burst`` at once): a scan of random tokens costs the server a
  bounded rate, one requester can never spend the budget of the others, and the excess is
  answered 503 without a call.
- Outage policy: fail closed (503), unless ``introspection_grace`` is set: then a token whose
  positive verdict expired at most that long ago, and whose ``exp`` has not passed, is still
  accepted while the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ._cache import BoundedCache
from ._claims import ScopeMemo
from ._clock import Clock
from ._config import Settings
from ._discovery import Discovery
from ._errors import (
    ConfigurationError,
    InvalidTokenError,
    Reason,
    TemporarilyUnavailableError,
)
from ._http import FetchError, HTTPClient, JSONResponse
from ._introspection import check_answer, filter_fields, request_form
from ._ratelimit import RateLimit, RequesterLimits, requester_key
from ._shared import SharedCache
from ._singleflight import SingleFlight
from ._telemetry import LOG_ONLY, Telemetry
from ._token import AccessToken, fingerprint
from .events import (
    IntrospectionCalled,
    IntrospectionGraceUsed,
    IntrospectionThrottled,
    IssuerBack,
    IssuerUnavailable,
)

logger = logging.getLogger("oauth_shield.introspection")

#: How long a server failure is remembered: for its token here, and in the shared cache for
#: other processes; also how long the outage shortcut stays open.
FAILURE_TTL = 1.0
#: Failing answers in a row, for distinct tokens from distinct requesters, that make an outage:
#: a client needs that many addresses to open the shortcut with tokens the server chokes on.
OUTAGE_AFTER = 5


class Introspector:
    """Asks the authorization server about opaque tokens, and remembers its verdicts."""

    def __init__(
        self,
        settings: Settings,
        http: HTTPClient,
        discovery: Discovery,
        clock: Clock,
        shared: SharedCache | None = None,
        *,
        scopes: ScopeMemo | None = None,
        telemetry: Telemetry = LOG_ONLY,
    ) -> None:
        if settings.client_id is None or settings.client_secret is None:
            raise ConfigurationError("introspection needs client_id and client_secret")
        self._client_id = settings.client_id
        self._client_secret = settings.client_secret
        self._settings = settings
        self._http = http
        self._discovery = discovery
        self._clock = clock
        self._shared = shared
        self._scopes = scopes  # the validator's memo of parsed scope strings
        self._telemetry = telemetry
        self._verdict_scope = verdict_scope(settings)  # in shared keys: what a verdict means
        size = settings.introspection_cache_size
        # digest -> (token, valid until (wall, from exp), fresh until (monotonic, from the TTL))
        self._positive: BoundedCache[tuple[AccessToken, float, float]] = BoundedCache(size)
        self._negative: BoundedCache[Reason] = BoundedCache(size)
        self._failed: BoundedCache[FetchError] = BoundedCache(size)  # per token, FAILURE_TTL
        self._flight: SingleFlight[bytes, AccessToken] = SingleFlight()
        self._limit = RateLimit(
            settings.introspection_rate, settings.introspection_burst, clock.monotonic
        )
        self._requesters = RequesterLimits(*settings.requester_rate, clock.monotonic)
        # The current run of failing answers: their tokens, and who presented them (the token's
        # digest stands for an anonymous requester). Cleared by any answer, and at OUTAGE_AFTER.
        self._run_tokens: set[bytes] = set()
        self._run_from: set[bytes] = set()
        self._in_grace = False
        self._limited = False  # the validator's bucket is empty (logged once per episode)
        self._outage: FetchError | None = None  # the server's failure, while it lasts
        self._retry_at = -math.inf  # no call before this, during an outage
        self.calls = 0  # requests sent to the server, for metrics and tests
        self.hits = self.misses = 0  # verdicts found in the caches, and calls needed

    def lookup(self, digest: bytes) -> AccessToken | None:
        """The cached verdict for a token: the token, ``None`` if unknown, or the refusal raised."""
        now = self._clock.monotonic()
        hit = self._positive.get(digest, now)
        if hit is not None and now < hit[2]:
            self.hits += 1
            token, valid_until, _ = hit
            if self._clock.time() < valid_until:
                return token
            raise InvalidTokenError(Reason.EXPIRED)
        refused = self._negative.get(digest, now)
        if refused is not None:
            self.hits += 1
            raise InvalidTokenError(refused)
        failed = self._failed.get(digest, now)
        if failed is not None:
            self.hits += 1
            return self._answer_failure(failed, digest)
        return None

    async def introspect(
        self, token: str, digest: bytes, requester: str | None = None
    ) -> AccessToken:
        """Ask the server (once for any number of concurrent callers) and cache the verdict.

        The call is charged to ``requester`` (an opaque id of who presented the token; ``None``
        is the anonymous requester) before the validator's own budget.
        """
        self.misses += 1
        return await self._flight.run(digest, lambda: self._call(token, digest, requester))

    async def _call(self, token: str, digest: bytes, requester: str | None) -> AccessToken:
        who = requester_key(requester)
        if not self._requesters.allow(who):  # over its own share: the others' stays untouched
            logger.debug("a requester's introspection budget is spent; answering 503")
            raise TemporarilyUnavailableError(Reason.RATE_LIMITED, retry_after=1)
        shared = self._shared
        if shared is None:
            verdict, life = await self._produce(token, digest)
        else:
            verdict, life = await shared.once(
                shared.key("introspection", self._verdict_scope, digest.hex()),
                lambda: self._produce(token, digest),
                budget=self._settings.http_timeout,
                bound=self._longest,
            )
        return self._conclude(verdict, digest, life, who)

    def _longest(self, verdict: dict[str, Any]) -> float:
        """The longest this process keeps a verdict of this kind: no one else's setting."""
        if "answer" in verdict:
            return self._settings.introspection_ttl
        if "refused" in verdict:
            return self._settings.introspection_negative_ttl
        return FAILURE_TTL

    async def _produce(self, token: str, digest: bytes) -> tuple[dict[str, Any], float]:
        """One call to the server, and its verdict as a shareable value with its lifetime."""
        settings = self._settings
        if self._outage is not None and self._clock.monotonic() < self._retry_at:
            return {**self._outage.marker(), "shortcut": True}, FAILURE_TTL
        if not self._limit.allow():
            if not self._limited:  # once per episode: a scan must not flood the logs too
                self._limited = True
                self._telemetry.emit(IntrospectionThrottled(issuer=settings.issuer))
            return {"failed": "rate_limited", "unreachable": True}, FAILURE_TTL
        self._limited = False
        try:
            with self._telemetry.span("oauth_shield.introspect"):
                answer = await self._ask(token, fingerprint(digest))
        except FetchError as failure:
            return failure.marker(), FAILURE_TTL
        now = self._clock.time()
        try:
            check_answer(answer.data, settings, now, "", self._scopes)
        except InvalidTokenError as refusal:
            return {"refused": refusal.reason.value}, settings.introspection_negative_ttl
        # Shared for the whole TTL even when the token expires sooner: every reader checks the
        # answer's exp again (check_answer, and each hit in lookup()).
        return {"answer": filter_fields(answer.data, settings.introspection_fields)}, (
            settings.introspection_ttl
        )

    def _conclude(
        self, verdict: dict[str, Any], digest: bytes, life: float, who: bytes | None
    ) -> AccessToken:
        """Turn a verdict (ours, or another process's, usable ``life`` more seconds) into the
        token, caching it."""
        settings, clock = self._settings, self._clock
        failure = FetchError.from_marker(verdict)
        if failure is not None:
            if verdict.get("shortcut") is not True:
                self._note_failure(failure, digest, who)
            return self._answer_failure(failure, digest)
        self._in_grace = False
        self._run_tokens.clear()  # the server answered: whatever failed before was not an outage
        self._run_from.clear()
        answer = verdict.get("answer")
        try:
            if not isinstance(answer, dict):
                raise InvalidTokenError(_reason(verdict.get("refused")))
            access = check_answer(answer, settings, clock.time(), fingerprint(digest), self._scopes)
        except InvalidTokenError as refusal:
            negative_ttl = settings.introspection_negative_ttl
            self._negative.put(digest, refusal.reason, clock.monotonic() + min(life, negative_ttl))
            raise
        fresh_until = clock.monotonic() + min(max(life, 0.0), settings.introspection_ttl)
        valid_until = (
            math.inf
            if access.expires_at is None
            else access.expires_at.timestamp() + settings.leeway
        )
        self._positive.put(
            digest, (access, valid_until, fresh_until), fresh_until + settings.introspection_grace
        )
        return access

    def _note_failure(self, failure: FetchError, digest: bytes, who: bytes | None) -> None:
        """Remember a failing answer for its token, and open the outage shortcut when enough
        of them, for distinct tokens from distinct requesters, come in a row."""
        if failure.unreachable or failure.kind == "rate_limited":
            return  # not an answer about this token (the network opens the shortcut itself)
        self._failed.put(digest, failure, self._clock.monotonic() + FAILURE_TTL)
        contributor = digest if who is None else who
        if not failure.transient or digest in self._run_tokens or contributor in self._run_from:
            return
        self._run_tokens.add(digest)
        self._run_from.add(contributor)
        if len(self._run_from) >= OUTAGE_AFTER:
            self._run_tokens.clear()
            self._run_from.clear()
            self._open_outage(failure)

    def _open_outage(self, failure: FetchError) -> None:
        """Answer misses without a call for FAILURE_TTL; log the outage once, not per miss."""
        self._retry_at = self._clock.monotonic() + FAILURE_TTL
        if self._outage is None:
            self._telemetry.emit(
                IssuerUnavailable(
                    issuer=self._settings.issuer,
                    endpoint="introspection",
                    failure=failure.kind,
                    detail=failure.explain(),
                )
            )
        self._outage = failure

    def _answer_failure(self, failure: FetchError, digest: bytes) -> AccessToken:
        """What a client gets when the server could not judge its token: the refusal, or a
        recently active verdict within the grace."""
        if failure.kind == "rate_limited":
            raise TemporarilyUnavailableError(Reason.RATE_LIMITED, retry_after=1)
        if not failure.transient:
            raise InvalidTokenError(Reason.INTROSPECTION_FAILED)
        recent = self._positive.get(digest, self._clock.monotonic())  # kept through the grace
        if recent is not None:
            if self._clock.time() >= recent[1]:
                raise InvalidTokenError(Reason.EXPIRED)
            if not self._in_grace:
                self._in_grace = True
                self._telemetry.emit(IntrospectionGraceUsed(issuer=self._settings.issuer))
            return recent[0]
        raise TemporarilyUnavailableError(Reason.INTROSPECTION_UNAVAILABLE)

    async def _ask(self, token: str, name: str) -> JSONResponse:
        """POST the token to the introspection endpoint; raise :class:`FetchError` on failure."""
        settings = self._settings
        form, headers = request_form(
            token, self._client_id, self._client_secret.reveal(), settings.introspection_auth
        )
        failure: FetchError | None = None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(settings.http_timeout):  # discovery included: one budget
                url = settings.introspection_endpoint or await self._discovery.endpoint(
                    "introspection_endpoint"
                )
                self.calls += 1
                answer = await self._http.send("POST", url, form=form, headers=headers)
        except FetchError as error:
            failure = error
        except TimeoutError:
            failure = FetchError("timeout", url=settings.introspection_endpoint, unreachable=True)
        took = time.perf_counter() - started
        if failure is None:
            logger.debug("introspected token %s in %.1f ms", name, took * 1000)
            self._called("success", took, name, None)
            if self._outage is not None:
                self._outage = None
                self._telemetry.emit(IssuerBack(issuer=settings.issuer, endpoint="introspection"))
            return answer
        # Logged by the event's listener: a failing answer about one token at INFO (an outage
        # only if many tokens get the same), a refusal of the call at ERROR.
        self._called(failure.kind, took, name, failure.explain())
        if failure.unreachable:  # the network (a timeout included): an outage for every token
            self._open_outage(failure)
        raise failure

    def _called(self, result: str, took: float, name: str, detail: str | None) -> None:
        self._telemetry.emit(
            IntrospectionCalled(
                issuer=self._settings.issuer,
                result=result,
                duration=took,
                fingerprint=name,
                detail=detail,
            )
        )

    def cached(self) -> list[tuple[bytes, object]]:
        """Everything stored in both caches (for inspection and tests)."""
        return [*self._positive.items(), *self._negative.items()]

    def forget_loop(self, keep: Callable[[object], None]) -> None:
        keep(self._flight)
        self._flight = SingleFlight()

    async def aclose(self) -> None:
        await self._flight.aclose()


def verdict_scope(settings: Settings) -> str:
    """A name for every setting a verdict depends on, for its shared key: which server was
    asked and as whom, and the rules and field allowlist it was judged and cut with. Two APIs
    that differ in any of them never read each other's verdicts."""
    relevant = [
        list(settings.issuers),
        sorted(settings.audience),
        settings.client_id,
        settings.introspection_endpoint,
        settings.profile,
        settings.leeway,
        sorted(settings.introspection_fields),
        settings.dpop != "disabled",  # a bound token: refused as key_bound, or kept with its cnf
        # The rules beyond RFC 9068 (issue 13): API A requiring a claim must not refuse a
        # token for API B, which does not.
        [list(path) for path in settings.scope_claims],
        [[list(path), _canonical(accepted)] for path, accepted in settings.required_claims],
        sorted(settings.allowed_clients or ()),
        settings.allowed_clients is None,
        settings.client_claim,
        settings.require_scope_claim,
        sorted(settings.tenants or ()),
        settings.any_tenant,
    ]
    text = json.dumps(relevant, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(value: object) -> object:
    """A JSON-able form of a configured value that is the same in every process (no set
    order, which string hashing changes from one process to the next)."""
    if isinstance(value, set | frozenset):
        return sorted(json.dumps(_canonical(item)) for item in value)
    if isinstance(value, tuple | list):
        return [_canonical(item) for item in value]
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


def _reason(value: object) -> Reason:
    """A refusal read from a shared verdict; anything unexpected counts as inactive."""
    try:
        return Reason(str(value))
    except ValueError:
        return Reason.INACTIVE
