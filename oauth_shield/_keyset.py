"""The issuer's remote key set: when to fetch it, and what to trust meanwhile.

Theory of operation
-------------------
The installed key set and its timers form one immutable ``_State``, replaced whole, so
:meth:`RemoteKeySet.lookup` may run in any thread without a lock. Fetching runs on the event
loop only.

Ages of the installed key set (monotonic clock):

- fresh (``now < expires_at``): used. From ``refresh_at`` on (a fifth of the TTL before expiry,
  at most a minute), one background refresh starts, so a busy service never waits for a fetch.
- stale (until ``stale_until = expires_at + max_stale``):
  if the last fetch succeeded (the service was merely idle), a request waits for a refresh and
  falls back to the stale keys if it fails; if the last fetch failed (the issuer is in
  trouble), the keys are used as they are (stale-if-error) and a background retry starts
  whenever the backoff allows. A refresh that is due but has no live loop to run on (a
  forked child, a loop that ended) sends the request to the loop instead: stale keys are
  never served as if nobody could refresh them.
- gone (nothing installed, or past ``stale_until``): a request waits for a fetch; 503 if none
  succeeds.

Fetch gates:

- single-flight: one fetch at a time, every waiter shielded (see ``_singleflight``);
- an unknown ``kid`` triggers a refetch unless two fetches (of any kind, failed ones too)
  started within the last ``jwks_cooldown`` seconds: a key the issuer published right after
  our last fetch is fetched at once, however recent that fetch, while a flood of random kids
  costs at most two fetches per cooldown window (Nimbus keeps "one invocation left in case
  the keys are rotated" the same way);
- after a failure, no new fetch of any kind before a backoff that doubles from 1 s up to the
  cooldown (``retry_at``); refreshes for age are gated by that alone, not by the window;
- a fetch installs its result only if no newer one has been installed (sequence numbers);
- a key set with no usable key is a failed fetch: the last known good keys stay.

TTL: ``jwks_ttl``, or the issuer's ``Cache-Control: max-age`` when that is shorter (never
below a minute, unless ``jwks_ttl`` itself is): the setting is the longest a key is trusted.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from ._config import Settings
from ._diagnosis import printable
from ._discovery import Discovery
from ._errors import InvalidTokenError, Reason, TemporarilyUnavailableError
from ._http import FetchError, HTTPClient
from ._jose import Verifier
from ._keys import MAX_KEYS, KeySet, import_key_set
from ._shared import SharedCache, number
from ._singleflight import SingleFlight
from ._telemetry import LOG_ONLY, Telemetry
from ._text import without_credentials
from .events import (
    IssuerBack,
    IssuerUnavailable,
    KeySetFetched,
    KeySetFetchSuppressed,
    KeySetRotated,
    StaleKeysUsed,
)

logger = logging.getLogger("oauth_shield.keys")

#: The shortest TTL an issuer's ``Cache-Control: max-age`` may set: not a fetch per request.
MIN_TTL = 60.0
#: Start refreshing this share of the TTL before expiry...
REFRESH_AHEAD_SHARE = 0.2
#: ...but no earlier than a minute before it.
MAX_REFRESH_AHEAD = 60.0
#: First wait after a failed fetch; it doubles up to the cooldown.
FIRST_BACKOFF = 1.0
#: Fetches per ``jwks_cooldown`` window after which an unknown kid waits: two, so that a
#: rotation right after any fetch still costs one refetch, never a wait (Nimbus's rule).
FETCHES_PER_WINDOW = 2


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: The span attribute naming what started a key-set fetch.
TRIGGER = "oauth_shield.jwks.trigger"

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age=(\d{1,10})(?:$|[,\s])", re.IGNORECASE)


class Need(enum.Enum):
    """What :meth:`RemoteKeySet.lookup` needs before it can answer (like h11's NEED_DATA)."""

    KEYS = "keys"  # no usable key set: wait for a fetch
    KID = "kid"  # the kid is not in the set: a refetch may bring it


@dataclass(frozen=True, slots=True)
class _State:
    keys: KeySet | None = None
    fetched_at: float = -math.inf
    document_at: float = -math.inf  # wall time the issuer served the installed key set
    expires_at: float = -math.inf
    refresh_at: float = -math.inf
    stale_until: float = -math.inf
    failed: bool = False
    retry_at: float = -math.inf  # no fetch at all before this, after a failure
    seq: int = 0


class RemoteKeySet:
    """The issuer's JWKS, cached and refreshed per the rules above."""

    def __init__(
        self,
        settings: Settings,
        http: HTTPClient,
        discovery: Discovery | None,
        *,
        jwks_uri: str | None = None,
        issuer: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        shared: SharedCache | None = None,
        on_keys_removed: Callable[[], None] = lambda: None,
        telemetry: Telemetry = LOG_ONLY,
    ) -> None:
        self._settings = settings
        # Where the keys come from: jwks_uri, else the metadata of the issuer.
        source = jwks_uri or discovery
        if source is None:
            raise ValueError("a key set needs a jwks_uri or a discovery")
        self._source: str | Discovery = source
        self.issuer = issuer or settings.issuer  # the issuer messages name
        self._wall = wall
        self._shared = shared
        self._http = http
        self._monotonic = monotonic
        self._on_keys_removed = on_keys_removed
        self._telemetry = telemetry
        self._state = _State()
        self._flight: SingleFlight[str, None] = SingleFlight()
        self._backoff = FIRST_BACKOFF
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refresh_requested = False
        # When the last FETCHES_PER_WINDOW fetches started (monotonic), oldest first.
        self._started: tuple[float, ...] = ()
        self.last_failure: FetchError | None = None  # why the last fetch failed, if it did
        self.fetches = 0  # completed fetch attempts, for metrics and tests

    @property
    def keys(self) -> KeySet | None:
        return self._state.keys

    # --- any thread ------------------------------------------------------------------

    def lookup(self, kid: str | None, alg: str) -> Verifier | Need:
        """The verifier for a token from the installed keys, or what must happen first."""
        state = self._state
        keys = state.keys
        now = self._monotonic()
        if keys is None or now >= state.stale_until:
            return Need.KEYS
        if now >= state.refresh_at:
            if now >= state.expires_at and not state.failed:
                return Need.KEYS
            if not self._refresh_in_background(state, now):
                return Need.KEYS  # no loop here to refresh on: the caller goes to one
        found = keys.index.get((kid, alg)) or keys.select(kid, alg)
        if found is Reason.UNKNOWN_KID:
            return Need.KID
        if isinstance(found, Reason):
            raise InvalidTokenError(found)
        return found

    def _refresh_in_background(self, state: _State, now: float) -> bool:
        """Start a refresh on the bound loop, unless one is due later or already asked for.
        False when no live loop is bound (a forked child, a loop that ended): a stale key set
        must then not be used as if nobody could refresh it."""
        if self._refresh_requested or now < state.retry_at:
            return True
        trigger = "retry" if state.failed else "age"
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        self._refresh_requested = True
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no running loop in this thread
            running = None
        if running is loop:
            self._start_fetch(trigger)
            return True
        try:
            loop.call_soon_threadsafe(self._start_fetch, trigger)
        except RuntimeError:  # the loop closed meanwhile
            self._refresh_requested = False
            return False
        return True

    # --- event loop ------------------------------------------------------------------

    def start(self) -> None:
        """Bind to the running loop and warm the cache in the background."""
        self._loop = asyncio.get_running_loop()
        if self._state.keys is None:
            self._start_fetch("start")

    async def refresh(self) -> FetchError | None:
        """Fetch now, whatever the timers say (joining a fetch in flight); the failure, if any."""
        self._loop = asyncio.get_running_loop()
        await asyncio.shield(self._start_fetch("check"))
        if self._state.keys is not None and not self._state.failed:
            return None
        return self.last_failure or FetchError("no_usable_keys")

    async def resolve(self, kid: str | None, alg: str) -> Verifier:
        """Answer what :meth:`lookup` could not: fetch if the gates allow, then select."""
        self._loop = asyncio.get_running_loop()
        # Look again first: a fetch may have finished since the caller looked (a thread that
        # hopped here late, or a waiter of the flight that just ended).
        found = self.lookup(kid, alg)
        if not isinstance(found, Need):
            return found
        state = self._state
        gate = max(state.retry_at, self._window_opens()) if found is Need.KID else state.retry_at
        if "jwks" in self._flight or self._monotonic() >= gate:
            await asyncio.shield(self._start_fetch(_trigger(found, state)))
        elif found is Need.KID:
            self._telemetry.emit(KeySetFetchSuppressed(issuer=self.issuer))
            raise InvalidTokenError(Reason.UNKNOWN_KID)
        state = self._state
        if state.keys is None or self._monotonic() >= state.stale_until:
            retry = state.retry_at - self._monotonic()
            raise TemporarilyUnavailableError(
                Reason.KEYS_UNAVAILABLE, retry_after=math.ceil(max(retry, 1))
            )
        selected = state.keys.select(kid, alg)
        if isinstance(selected, Reason):
            raise InvalidTokenError(selected)
        return selected

    def _window_opens(self) -> float:
        """When an unknown kid may next cause a fetch: once the oldest of the last
        ``FETCHES_PER_WINDOW`` fetches is ``jwks_cooldown`` old (at once if fewer happened)."""
        started = self._started
        if len(started) < FETCHES_PER_WINDOW:
            return -math.inf
        return started[0] + self._settings.jwks_cooldown

    def _start_fetch(self, trigger: str = "start") -> asyncio.Task[None]:
        return self._flight.start("jwks", lambda: self._fetch_traced(trigger))

    async def _fetch_traced(self, trigger: str) -> None:
        with self._telemetry.span("oauth_shield.jwks.fetch", {TRIGGER: trigger}) as span:
            seq = self._seq + 1
            await self._fetch(trigger)
            if self._state.seq != seq and self.last_failure is not None:
                span.fail(self.last_failure.kind)

    async def _fetch(self, trigger: str = "start") -> None:
        self._seq += 1
        seq = self._seq
        started = self._monotonic()
        self._started = (*self._started, started)[-FETCHES_PER_WINDOW:]
        clock = time.perf_counter()
        try:
            document, life = await self._document()
            if (failure := FetchError.from_marker(document)) is not None:
                raise failure
            jwks = document.get("jwks")
            keys = (
                import_key_set(jwks, self._settings.algorithms) if isinstance(jwks, dict) else None
            )
            if keys is None or not keys.index:
                raise self._unusable(document, keys)
        except FetchError as error:
            self._fetched(trigger, error.kind, error.url, clock, 0)
            self._failed(seq, error)
            return
        except Exception:  # a bug must not leave the key set without a verdict
            logger.exception("key set fetch failed unexpectedly")
            self._fetched(trigger, "internal_error", None, clock, 0)
            self._failed(seq, FetchError("internal_error"))
            return
        finally:
            self.fetches += 1
            self._refresh_requested = False
        url = document.get("url")
        self._fetched(trigger, "success", url if isinstance(url, str) else None, clock, len(keys))
        self._install(seq, keys, document, life)
        logger.debug(
            "key set: %d usable keys %s in %.1f ms",
            len(keys),
            sorted(keys.kids),
            (self._monotonic() - started) * 1000,
        )
        for kid, why in keys.skipped:
            logger.debug("skipped a key (kid %r): %s", kid, why)

    async def _document(self) -> tuple[dict[str, Any], float]:
        """A key set newer than ours and how long it may be used: from another process
        through the shared cache if one has it, else fetched (once for all processes) from
        the issuer."""
        if self._shared is None:
            return await self._from_issuer()
        have, settings = self._state.document_at, self._settings
        # Bound to the key set's URL when one is configured: another API may name another.
        source = self._source
        parts = (_digest(source),) if isinstance(source, str) else ()
        return await self._shared.once(
            self._shared.key("jwks", *parts, issuer=self.issuer),
            self._from_issuer,
            budget=settings.http_timeout,
            bound=lambda document: FIRST_BACKOFF if "failed" in document else settings.jwks_ttl,
            accept=lambda document: "failed" in document or number(document.get("at")) > have,
        )

    async def _from_issuer(self) -> tuple[dict[str, Any], float]:
        """The issuer's key set as a shareable document, and how long to share it. A failure
        is shared briefly too, so that processes waiting for this fetch back off with it."""
        source = self._source
        url: str | None = source if isinstance(source, str) else None
        try:
            async with asyncio.timeout(self._settings.http_timeout):  # one budget for it all
                url = source if isinstance(source, str) else await source.endpoint("jwks_uri")
                response = await self._http.get_json(url)
        except FetchError as error:
            return error.marker(), FIRST_BACKOFF
        except TimeoutError:
            failure = FetchError(
                "timeout",
                url=url or f"the metadata of {self.issuer}",
                unreachable=True,
                detail=f"{self._settings.http_timeout:g} s",
            )
            return failure.marker(), FIRST_BACKOFF
        ttl = self._ttl(response.headers)
        return {"jwks": response.data, "at": self._wall(), "ttl": ttl, "url": url}, ttl

    def _install(self, seq: int, keys: KeySet, document: dict[str, Any], life: float) -> None:
        old = self._state
        if seq < old.seq:
            return  # an older fetch must never overwrite a newer key set
        now = self._monotonic()
        settings = self._settings
        # Our jwks_ttl bounds the life of every key set, whoever fetched it: a document from
        # another process lives what is left of its own TTL, never more than ours.
        ttl = min(number(document.get("ttl")) or settings.jwks_ttl, settings.jwks_ttl)
        fetched = number(document.get("at"))
        expires_at = now + min(max(life, 0.0), ttl)
        self._state = _State(
            keys=keys,
            fetched_at=now,
            document_at=fetched,
            expires_at=expires_at,
            refresh_at=expires_at - min(ttl * REFRESH_AHEAD_SHARE, MAX_REFRESH_AHEAD),
            stale_until=expires_at + settings.jwks_max_stale,
            seq=seq,
        )
        self._backoff = FIRST_BACKOFF
        self.last_failure = None
        if old.keys is not None and not keys.thumbprints >= old.keys.thumbprints:
            self._on_keys_removed()
        if old.keys is not None and keys.thumbprints != old.keys.thumbprints:
            self._telemetry.emit(_rotation(self.issuer, old.keys, keys))
        if old.failed:
            self._telemetry.emit(IssuerBack(issuer=self.issuer, endpoint="jwks"))

    def _fetched(self, trigger: str, result: str, url: str | None, clock: float, keys: int) -> None:
        self._telemetry.emit(
            KeySetFetched(
                issuer=self.issuer,
                trigger=trigger,
                result=result,
                url=None if url is None else without_credentials(url),  # a signed URL's query
                duration=time.perf_counter() - clock,
                keys=keys,
            )
        )

    def _unusable(self, document: dict[str, Any], keys: KeySet | None) -> FetchError:
        """A key set without a key we may use, with why (each skipped key is at DEBUG)."""
        url = document.get("url")
        if keys is None:
            detail = f"not a JWKS: no 'keys' list, or more than {MAX_KEYS} keys"
        else:
            detail = (
                f"{len(keys.skipped)} keys skipped, none fits algorithms "
                f"{sorted(self._settings.algorithms)}"
            )
        return FetchError(
            "no_usable_keys", url=url if isinstance(url, str) else None, detail=detail
        )

    def _failed(self, seq: int, error: FetchError) -> None:
        self.last_failure = error
        now = self._monotonic()
        state = self._state
        self._state = replace(state, failed=True, retry_at=now + self._backoff)
        self._backoff = min(self._backoff * 2, max(self._settings.jwks_cooldown, FIRST_BACKOFF))
        issuer = self.issuer  # this key set's, of however many issuers
        if state.keys is not None and now < state.stale_until:
            age = now - state.fetched_at
            self._telemetry.emit(
                StaleKeysUsed(issuer=issuer, age=age, failure=error.kind, detail=error.explain())
            )
        else:
            self._telemetry.emit(
                IssuerUnavailable(
                    issuer=issuer, endpoint="jwks", failure=error.kind, detail=error.explain()
                )
            )

    def _ttl(self, headers: httpx.Headers) -> float:
        configured = self._settings.jwks_ttl
        match = _MAX_AGE.search(headers.get("Cache-Control", ""))
        if match is None:
            return configured
        return min(max(float(match.group(1)), min(MIN_TTL, configured)), configured)

    def forget_loop(self, keep: Callable[[object], None]) -> None:
        """Drop the flight and the loop (into ``keep``): they belong to a loop that is gone,
        or to the parent process. The installed key set stays."""
        keep(self._flight)
        self._flight = SingleFlight()
        self._loop = None
        self._refresh_requested = False

    async def aclose(self) -> None:
        await self._flight.aclose()


def _trigger(found: Need, state: _State) -> str:
    """Why a request fetches: an unknown kid, a retry after a failure, the first keys, age."""
    if found is Need.KID:
        return "unknown_kid"
    if state.failed:
        return "retry"
    return "start" if state.keys is None else "age"


def _rotation(issuer: str, old: KeySet, new: KeySet) -> KeySetRotated:
    """What changed between two key sets; kids (from the network) made printable."""
    return KeySetRotated(
        issuer=issuer,
        added=tuple(printable(kid) for kid in sorted(new.kids - old.kids)),
        removed=tuple(printable(kid) for kid in sorted(old.kids - new.kids)),
        keys_added=len(new.thumbprints - old.thumbprints),
        keys_removed=len(old.thumbprints - new.thumbprints),
    )
