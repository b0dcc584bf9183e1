"""The in-memory DPoP replay store (oauth_shield._replay)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from oauth_shield._errors import ConfigurationError
from oauth_shield._replay import DEFAULT_MAX_ENTRIES, MemoryReplayStore, ReplayStore
from tests.conftest import NOW, FrozenClock
from tests.dpop import check, proof


def test_a_key_is_used_once_within_its_window() -> None:
    store = MemoryReplayStore()
    assert store.check(b"k1", NOW + 60, NOW)
    assert not store.check(b"k1", NOW + 60, NOW + 1)
    assert not store.check(b"k1", NOW + 60, NOW + 59.9)
    assert store.check(b"k2", NOW + 60, NOW + 1)
    assert len(store) == 2


def test_an_expired_key_is_forgotten() -> None:
    store = MemoryReplayStore()
    store.check(b"k1", NOW + 60, NOW)
    store.check(b"k2", NOW + 120, NOW)
    assert store.check(b"k1", NOW + 200, NOW + 60)  # expired: new again
    assert len(store) == 2  # k1 again and k2
    store.check(b"k3", NOW + 500, NOW + 120)
    assert len(store) == 2  # k1 (until 200) and k3; k2 expired


def test_a_key_already_out_of_every_window_is_not_remembered() -> None:
    store = MemoryReplayStore()
    assert store.check(b"old", NOW - 1, NOW)
    assert len(store) == 0


def test_a_full_store_drops_the_entry_expiring_soonest() -> None:
    store = MemoryReplayStore(3)
    for key, expires in ((b"a", 30.0), (b"b", 10.0), (b"c", 20.0)):
        assert store.check(key, NOW + expires, NOW)
    assert store.check(b"d", NOW + 40, NOW)
    assert (len(store), store.evicted) == (3, 1)
    assert store.check(b"b", NOW + 40, NOW)  # b expired soonest: it was the one dropped
    assert store.evicted == 2
    for key in (b"a", b"d", b"b"):
        assert not store.check(key, NOW + 40, NOW)


def test_the_store_stays_bounded_under_a_flood(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryReplayStore(100)
    for index in range(10_000):
        store.check(index.to_bytes(4, "big"), NOW + 60 + index % 7, NOW)
    assert len(store) == 100
    assert len(store._heap) == 100  # one heap entry per key, always
    assert store.evicted == 10_000 - 100
    full = [r for r in caplog.records if "replay store is full" in r.getMessage()]
    assert len(full) == 1 and full[0].levelname == "WARNING"  # the first eviction, once
    assert "dpop_replay_cache_size" in full[0].getMessage()


def test_defaults_and_configuration() -> None:
    assert MemoryReplayStore().max_entries == DEFAULT_MAX_ENTRIES
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ConfigurationError, match="dpop_replay_cache_size"):
            MemoryReplayStore(bad)  # type: ignore[arg-type]


async def test_first_use_reads_the_wall_clock() -> None:
    clock = FrozenClock()
    store: ReplayStore = MemoryReplayStore(clock=clock)
    assert await store.first_use(b"k", NOW + 60)
    clock.advance(59)
    assert not await store.first_use(b"k", NOW + 60)
    clock.advance(1)
    assert await store.first_use(b"k", NOW + 120)


async def test_concurrent_first_uses_of_one_proof_admit_exactly_one() -> None:
    store = MemoryReplayStore(clock=FrozenClock())
    results = await asyncio.gather(*(store.first_use(b"same", NOW + 60) for _ in range(50)))
    assert results.count(True) == 1


def test_threads_racing_on_one_proof_admit_exactly_one() -> None:
    store = MemoryReplayStore()
    barrier = threading.Barrier(8)

    def attempt(_: int) -> bool:
        barrier.wait(timeout=10)
        return store.check(b"same", NOW + 60, NOW)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(attempt, range(8))).count(True) == 1


def test_a_replayed_proof_has_the_same_key_and_a_fresh_one_does_not() -> None:
    store = MemoryReplayStore()
    made = proof()
    first = check(made)
    assert store.check(first.replay_key, first.expires_at, NOW)
    again = check(made)
    assert not store.check(again.replay_key, again.expires_at, NOW + 1)
    fresh = check(proof())
    assert store.check(fresh.replay_key, fresh.expires_at, NOW + 1)
