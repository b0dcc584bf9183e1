"""Time as a seam: wall time for claims, monotonic time for TTLs and cooldowns."""

from __future__ import annotations

import time as _time
from typing import Protocol


class Clock(Protocol):
    """What the validator asks of a clock; tests pass a frozen or advancing one."""

    def time(self) -> float:
        """Seconds since the epoch, for ``exp``, ``nbf`` and ``iat``."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for TTLs, cooldowns and backoffs."""
        ...


class SystemClock:
    """The real clocks."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)
