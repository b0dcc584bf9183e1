"""Token buckets for what reaches the authorization server: one for the validator, one per
requester, so that no single client can spend the budget of all the others.

Theory of operation
-------------------
- A bucket refills at ``rate`` per second up to ``burst``, and starts full (monotonic clock).
- Requesters are opaque strings (an adapter passes the client's address). They are kept only
  as a 16-byte BLAKE2b digest, in a bounded LRU map of buckets: a spray of requester ids costs
  bounded memory, and a requester that is forgotten starts again with a full bucket (the
  validator's own bucket still bounds what reaches the server). They are never logged.
- ``None`` is one anonymous requester: every caller that passes no requester shares its bucket.
- Used from the event loop only (the misses that need the network), so no lock.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

#: Requesters whose buckets are remembered; the least recently seen is forgotten first.
MAX_REQUESTERS = 10_000


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


def requester_key(requester: object) -> bytes | None:
    """The key a requester is known by: a digest, never the value; ``None`` stays anonymous."""
    if requester is None:
        return None
    text = requester if isinstance(requester, str) else repr(requester)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class RequesterLimits:
    """One :class:`RateLimit` per requester key, for at most ``size`` requesters (LRU)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        monotonic: Callable[[], float] = time.monotonic,
        size: int = MAX_REQUESTERS,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._monotonic = monotonic
        self._size = size
        self._buckets: OrderedDict[bytes | None, RateLimit] = OrderedDict()

    def allow(self, key: bytes | None) -> bool:
        """Take one from ``key``'s bucket, if it has one left."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            while len(buckets) >= self._size:
                buckets.popitem(last=False)
            bucket = buckets[key] = RateLimit(self._rate, self._burst, self._monotonic)
        else:
            buckets.move_to_end(key)
        return bucket.allow()

    def __len__(self) -> int:
        return len(self._buckets)
