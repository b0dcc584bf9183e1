"""Shared in-flight tasks (oauth_shield._singleflight): async by nature, so these tests use
asyncio, but no network and no sleeps; events decide when work finishes."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from oauth_shield._singleflight import SingleFlight


class Work:
    """Counts calls; each call waits for ``release`` and then returns or raises."""

    def __init__(self, result: str = "keys", error: Exception | None = None) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.result = result
        self.error = error

    async def __call__(self) -> str:
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.result


async def test_concurrent_callers_share_one_call() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work()
    waiters = [asyncio.ensure_future(flights.run("jwks", work)) for _ in range(50)]
    await asyncio.sleep(0)
    assert "jwks" in flights
    assert len(flights) == 1
    work.release.set()
    assert await asyncio.gather(*waiters) == ["keys"] * 50
    assert work.calls == 1


async def test_different_keys_fly_separately() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    first, second = Work("one"), Work("two")
    one = asyncio.ensure_future(flights.run("a", first))
    two = asyncio.ensure_future(flights.run("b", second))
    await asyncio.sleep(0)
    assert len(flights) == 2
    first.release.set()
    second.release.set()
    assert (await one, await two) == ("one", "two")


async def test_entry_is_cleared_when_done_and_the_next_call_flies_again() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work()
    work.release.set()
    assert await flights.run("jwks", work) == "keys"
    await asyncio.sleep(0)  # the done callback
    assert "jwks" not in flights
    assert await flights.run("jwks", work) == "keys"
    assert work.calls == 2


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work()
    quitter = asyncio.ensure_future(flights.run("jwks", work))
    stayer = asyncio.ensure_future(flights.run("jwks", work))
    await asyncio.sleep(0)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    work.release.set()
    assert await stayer == "keys"
    assert work.calls == 1


async def test_every_waiter_receives_the_error() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work(error=RuntimeError("down"))
    waiters = [asyncio.ensure_future(flights.run("jwks", work)) for _ in range(3)]
    await asyncio.sleep(0)
    work.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert [type(result) for result in results] == [RuntimeError] * 3
    assert work.calls == 1


async def test_an_abandoned_failure_is_not_reported_as_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = Work(error=RuntimeError("down"))
    work.release.set()
    task = flights.start("jwks", work)
    await asyncio.wait([task])  # waits without retrieving the exception
    await asyncio.sleep(0)  # the done callback
    del task
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_late_callback_never_removes_a_newer_flight() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    old, new = Work("old"), Work("new")
    old.release.set()
    stale = asyncio.ensure_future(old())
    await stale
    current = flights.start("jwks", new)
    flights._finished("jwks", stale)  # a finished task that is no longer the current entry
    assert "jwks" in flights
    assert flights.start("jwks", Work()) is current
    new.release.set()
    assert await current == "new"


async def test_aclose_cancels_every_flight() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    tasks = [flights.start(key, Work()) for key in ("a", "b")]
    await asyncio.sleep(0)
    await flights.aclose()
    assert all(task.cancelled() for task in tasks)
    await asyncio.sleep(0)
    assert len(flights) == 0
