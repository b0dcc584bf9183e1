"""Proofs already used, so that none is accepted twice (RFC 9449 §11.1).

Theory of operation:

- A store answers one question, atomically: "is this the first use of ``key``?" and, if so,
  remembers ``key`` until ``expires_at`` (wall-clock seconds: the end of the proof's ``iat``
  window, after which ``check_proof`` refuses the proof anyway, so forgetting it is safe).
- Keys are digests (``Proof.replay_key``: SHA-256 over the proof key's thumbprint and the
  ``jti``), never a proof or a token, so a store's contents and its keys leak nothing.
- :class:`ReplayStore` is the async interface. A shared store (Redis: one ``SET key NX
  PXAT expires_at`` per proof) implements it so that a proof replayed to another worker is
  refused too; :class:`MemoryReplayStore` is the per-process one.
- :class:`SharedReplayStore` keeps the keys in the shared tier (``_shared``), one ``SET
  <namespace>:dpop:<scope>:<hex> 1 NX PXAT <ms>`` per proof, so that a proof replayed to
  another worker is refused. When Redis cannot answer, the outage policy decides:
  ``"fail_closed"`` (the default) answers 503, since a replay could not be told apart;
  ``"memory"`` falls back to this process's store, which still refuses replays to this
  process. Either way the outage is logged once, and its end.
- The memory store is bounded. Expired entries go first, in order of expiry; when it is full
  of live ones, the one expiring soonest is dropped to make room, and :attr:`evicted` counts
  it (the first one is logged at WARNING). A proof dropped that way could be replayed until its own
  expiry: size the store for the peak rate of proofs times the window
  (docs/dpop.md#the-replay-store).
"""

from __future__ import annotations

import heapq
import logging
import threading
from typing import Literal, Protocol

from ._clock import Clock, SystemClock
from ._config import check_count
from ._errors import ConfigurationError, Reason, TemporarilyUnavailableError
from ._shared import SharedCache

logger = logging.getLogger("oauth_shield.dpop")

#: What a shared replay store does while Redis cannot answer.
ReplayOutage = Literal["fail_closed", "memory"]

#: About 200 bytes an entry, so 20 MiB; with a 60 s window, room for ~1600 proofs a second.
DEFAULT_MAX_ENTRIES = 100_000


class ReplayStore(Protocol):
    """Where the proofs already used are remembered."""

    async def first_use(self, key: bytes, expires_at: float) -> bool:
        """True, and remember ``key`` until ``expires_at``, if ``key`` was not seen before
        (or has expired); False if it is a replay. Atomic with respect to other callers."""
        ...


class MemoryReplayStore:
    """A bounded in-process :class:`ReplayStore`; thread-safe, so the sync facade may share it.

    >>> store = MemoryReplayStore()
    >>> store.check(b"digest", expires_at=160.0, now=100.0)
    True
    >>> store.check(b"digest", expires_at=160.0, now=101.0)
    False
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, *, clock: Clock | None = None):
        self.max_entries = check_count("dpop_replay_cache_size", max_entries)
        self.evicted = 0  # live entries dropped because the store was full
        self._clock: Clock = clock or SystemClock()
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []  # (expires_at, key), one per entry
        self._lock = threading.Lock()

    async def first_use(self, key: bytes, expires_at: float) -> bool:
        return self.check(key, expires_at, self._clock.time())

    def now(self) -> float:
        """The wall-clock time of this store's clock."""
        return self._clock.time()

    def check(self, key: bytes, expires_at: float, now: float) -> bool:
        """:meth:`first_use` at the wall-clock time ``now``, without an event loop."""
        with self._lock:
            heap, expiry = self._heap, self._expiry
            while heap and heap[0][0] <= now:
                del expiry[heapq.heappop(heap)[1]]
            if key in expiry:
                return False
            if expires_at <= now:  # outside every window already: nothing to remember
                return True
            if len(expiry) >= self.max_entries:
                del expiry[heapq.heappop(heap)[1]]
                if not self.evicted:
                    logger.warning(
                        "the DPoP replay store is full (%d live proofs): the proof expiring "
                        "soonest was dropped and could be replayed until it expires; raise "
                        "dpop_replay_cache_size",
                        self.max_entries,
                    )
                self.evicted += 1
            expiry[key] = expires_at
            heapq.heappush(heap, (expires_at, key))
            return True

    def after_fork(self) -> None:
        """In a forked child: a thread of the parent may have held the lock."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)


def check_outage(outage: object) -> ReplayOutage:
    """The ``dpop_replay_outage`` setting, checked."""
    if outage not in ("fail_closed", "memory"):
        raise ConfigurationError(
            "dpop_replay_outage must be 'fail_closed' or 'memory'", field="dpop_replay_outage"
        )
    return outage


class SharedReplayStore:
    """A :class:`ReplayStore` in the shared tier: a replay to any worker is refused.

    ``scope`` names the API (its issuer is in the tier's namespace already), so two APIs
    sharing a Redis keep apart. A writer to Redis can delete an entry (a replay is then
    accepted once more within its window) or squat one (a genuine proof with that key is
    refused): the keys are digests of the proof key's thumbprint and a random ``jti``, so
    squatting takes a proof seen before. ``cache_secret`` cannot help here: Redis's own
    access control is the protection.
    """

    def __init__(
        self,
        shared: SharedCache,
        scope: str,
        fallback: MemoryReplayStore,
        outage: ReplayOutage = "fail_closed",
    ) -> None:
        self.outage = check_outage(outage)
        self.shared = shared
        self.fallback = fallback
        self._scope = scope
        self._down = False

    async def first_use(self, key: bytes, expires_at: float) -> bool:
        stored = await self.shared.add_until(
            self.shared.key("dpop", self._scope, key.hex()), expires_at
        )
        if stored is not None:
            if self._down:
                self._down = False
                logger.warning("the shared DPoP replay store is back")
            if stored and self.outage == "memory":  # the fallback then knows it in an outage
                self.fallback.check(key, expires_at, self.fallback.now())
            return stored
        if not self._down:  # once per outage: a flood of requests is one line
            self._down = True
            logger.warning(
                "the shared DPoP replay store is unavailable; %s",
                "answering 503 (dpop_replay_outage='fail_closed')"
                if self.outage == "fail_closed"
                else "checking replays in this process only (dpop_replay_outage='memory')",
            )
        if self.outage == "memory":
            return self.fallback.check(key, expires_at, self.fallback.now())
        raise TemporarilyUnavailableError(Reason.REPLAY_STORE_UNAVAILABLE)
