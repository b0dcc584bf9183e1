"""Timing that survives a shared, noisy machine: interleaved rounds, ratios per round, medians.

Each round times every contender once, in a fresh random order, on the same inputs; a ratio
is taken within the round (so both sides saw the same machine weather), and the report is the
median over rounds. Absolute times are reported too, but only ratios are claims.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Batch = Callable[[], Any]  # runs the whole batch once; returns nothing or an awaitable


@dataclass
class Contender:
    name: str
    run: Batch  # one pass over the batch
    ops: int  # operations per pass
    prepare: Callable[[], Any] = lambda: None  # untimed, before each pass (clear caches)
    times: list[float] = field(default_factory=list)  # seconds per op, one per round


def measure(
    contenders: list[Contender],
    *,
    rounds: int = 15,
    loop: asyncio.AbstractEventLoop | None = None,
    seed: int = 1,
) -> None:
    """Fill ``contender.times`` with one per-op time per round."""
    rng = random.Random(seed)
    for contender in contenders:  # warm-up pass, untimed
        contender.prepare()
        _run(contender.run, loop)
    for _ in range(rounds):
        order = contenders[:]
        rng.shuffle(order)
        for contender in order:
            contender.prepare()
            gc.collect()
            started = time.perf_counter()
            _run(contender.run, loop)
            contender.times.append((time.perf_counter() - started) / contender.ops)


def _run(batch: Batch, loop: asyncio.AbstractEventLoop | None) -> None:
    result = batch()
    if isinstance(result, Awaitable):
        assert loop is not None
        loop.run_until_complete(result)  # type: ignore[arg-type,unused-ignore]


def median_ratio(a: Contender, b: Contender) -> float:
    """Median over rounds of a's time divided by b's time in the same round."""
    return statistics.median(x / y for x, y in zip(a.times, b.times, strict=True))


def median_us(contender: Contender) -> float:
    return statistics.median(contender.times) * 1e6


def run_async(factory: Callable[[], Awaitable[Any]]) -> Batch:
    """Wrap an async pass so ``measure`` drives it on its loop."""
    return factory
