"""A bounded in-process map from token digest to a result, readable from any thread.

Theory of operation: keys are SHA-256 digests, never tokens. Each entry carries the wall-clock
deadline after which it must not be used; readers check it on every hit. Reads are a single
``dict.get`` and take no lock (atomic under the GIL), which keeps the warm path of the sync
facade in the caller's thread. Writes and evictions take a lock. When full, the oldest entry
goes first (insertion order): an eviction policy that costs nothing on a hit. In a forked
child the lock is made anew (``_fork``): a thread of the parent may have held it at the fork.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from . import _fork

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """``digest -> (value, deadline)`` with at most ``maxsize`` entries."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: dict[bytes, tuple[V, float]] = {}
        self._lock = threading.Lock()
        # Read by the metrics when they are collected (oauth_shield.otel): misses counted
        # here, hits by the validator while telemetry is on. Not locked, so concurrent
        # threads may lose an increment: a ratio, not a ledger.
        self.hits = self.misses = 0
        _fork.register(self)

    def _after_fork(self) -> None:
        # The entries are consistent (every change to the dict is atomic under the GIL); only
        # the lock may be held by a thread that does not exist in the child.
        self._lock = threading.Lock()

    def get(self, digest: bytes, now: float) -> V | None:
        """The value stored for ``digest`` if its deadline has not passed."""
        entry = self._entries.get(digest)
        if entry is not None and now < entry[1]:
            return entry[0]  # a hit costs nothing more: the validator counts those it needs
        self.misses += 1
        return None

    def put(self, digest: bytes, value: V, deadline: float) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            entries = self._entries
            entries.pop(digest, None)
            while len(entries) >= self.maxsize:
                del entries[next(iter(entries))]
            entries[digest] = (value, deadline)

    def discard(self, digest: bytes) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[bytes, V]]:
        """A copy of what is stored (for inspection and tests)."""
        with self._lock:
            return [(digest, value) for digest, (value, _) in self._entries.items()]
