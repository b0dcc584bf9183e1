"""Introspection of opaque tokens: caches, single-flight, and a limit on what reaches the server.

Theory of operation
-------------------
- Cache keys are SHA-256 digests of the token, never the token or a part of it; values are
  built from the filtered answer only.
- A positive verdict lives at most ``introspection_ttl`` (monotonic clock) and never beyond the
  token's own ``exp`` (wall clock), which every hit checks again.
- A negative verdict (inactive, or active but failing a rule) lives
  ``introspection_negative_ttl``, so a repeated bad token does not reach the server again.
- A failure of the server itself (unreachable, 5xx, an answer we cannot read) is not a verdict
  about the token: it is not cached, and it never lets the token through.
- Concurrent requests for one token share one call (single-flight by digest).
- A call that would reach the server first takes a token from a bucket (``introspection_rate``
  per second, ``introspection_burst`` at once): a scan of random tokens costs the server a
  bounded rate, and the excess is answered 503 without a call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from ._cache import BoundedCache
from ._clock import Clock
from ._config import Settings
from ._discovery import Discovery
from ._errors import ConfigurationError, InvalidTokenError, Reason, TemporarilyUnavailableError
from ._http import FetchError, HTTPClient, JSONResponse
from ._introspection import check_answer, request_form
from ._singleflight import SingleFlight
from ._token import AccessToken, fingerprint

logger = logging.getLogger("oauth_shield.introspection")


class RateLimit:
    """A token bucket: ``rate`` per second, at most ``burst`` at once."""

    def __init__(
        self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._monotonic = monotonic
        self._tokens = float(burst)
        self._at = monotonic()

    def allow(self) -> bool:
        now = self._monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Introspector:
    """Asks the authorization server about opaque tokens, and remembers its verdicts."""

    def __init__(
        self, settings: Settings, http: HTTPClient, discovery: Discovery, clock: Clock
    ) -> None:
        if settings.client_id is None or settings.client_secret is None:
            raise ConfigurationError("introspection needs client_id and client_secret")
        self._client_id = settings.client_id
        self._client_secret = settings.client_secret
        self._settings = settings
        self._http = http
        self._discovery = discovery
        self._clock = clock
        size = settings.introspection_cache_size
        self._positive: BoundedCache[tuple[AccessToken, float]] = BoundedCache(size)
        self._negative: BoundedCache[Reason] = BoundedCache(size)
        self._flight: SingleFlight[bytes, AccessToken] = SingleFlight()
        self._limit = RateLimit(
            settings.introspection_rate, settings.introspection_burst, clock.monotonic
        )
        self.calls = 0  # requests sent to the server, for metrics and tests

    def lookup(self, digest: bytes) -> AccessToken | None:
        """The cached verdict for a token: the token, ``None`` if unknown, or the refusal raised."""
        now = self._clock.monotonic()
        hit = self._positive.get(digest, now)
        if hit is not None:
            token, valid_until = hit
            if self._clock.time() < valid_until:
                return token
            raise InvalidTokenError(Reason.EXPIRED)
        refused = self._negative.get(digest, now)
        if refused is not None:
            raise InvalidTokenError(refused)
        return None

    async def introspect(self, token: str, digest: bytes) -> AccessToken:
        """Ask the server (once for any number of concurrent callers) and cache the verdict."""
        return await self._flight.run(digest, lambda: self._call(token, digest))

    async def _call(self, token: str, digest: bytes) -> AccessToken:
        if not self._limit.allow():
            logger.warning("introspection rate limit reached; answering 503 without a call")
            raise TemporarilyUnavailableError(Reason.RATE_LIMITED, retry_after=1)
        answer = await self._ask(token, fingerprint(digest))
        settings = self._settings
        try:
            access = check_answer(answer.data, settings, self._clock.time(), fingerprint(digest))
        except InvalidTokenError as refusal:
            self._negative.put(
                digest,
                refusal.reason,
                self._clock.monotonic() + settings.introspection_negative_ttl,
            )
            raise
        valid_until = (
            math.inf
            if access.expires_at is None
            else access.expires_at.timestamp() + settings.leeway
        )
        self._positive.put(
            digest, (access, valid_until), self._clock.monotonic() + settings.introspection_ttl
        )
        return access

    async def _ask(self, token: str, name: str) -> JSONResponse:
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
            failure = FetchError("timeout", unreachable=True)
        if failure is None:
            logger.debug(
                "introspected token %s in %.1f ms", name, (time.perf_counter() - started) * 1000
            )
            return answer
        if failure.transient:
            logger.warning("introspection endpoint unavailable (%s)", failure.kind)
            raise TemporarilyUnavailableError(Reason.INTROSPECTION_UNAVAILABLE)
        hint = (
            "; check client_id and client_secret"
            if failure.kind in ("status_400", "status_401")
            else ""
        )
        logger.error("introspection failed (%s)%s", failure.kind, hint)
        raise InvalidTokenError(Reason.INTROSPECTION_FAILED)

    def cached(self) -> list[tuple[bytes, object]]:
        """Everything stored in both caches (for inspection and tests)."""
        return [*self._positive.items(), *self._negative.items()]

    def forget_loop(self) -> None:
        self._flight = SingleFlight()

    async def aclose(self) -> None:
        await self._flight.aclose()
