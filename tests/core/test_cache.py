"""The bounded verified-token cache (oauth_shield._cache) and the token's one-way names
(oauth_shield._token)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from oauth_shield._cache import BoundedCache
from oauth_shield._token import AccessToken, fingerprint, text_fingerprint, token_digest

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def test_hit_before_the_deadline_miss_from_it() -> None:
    cache: BoundedCache[str] = BoundedCache(10)
    cache.put(A, "token-a", deadline=100.0)
    assert cache.get(A, 99.999) == "token-a"
    assert cache.get(A, 100.0) is None
    assert cache.get(A, 1e9) is None
    assert cache.get(B, 0.0) is None


def test_oldest_insertion_goes_first() -> None:
    cache: BoundedCache[str] = BoundedCache(2)
    cache.put(A, "a", 100.0)
    cache.put(B, "b", 100.0)
    cache.get(A, 0.0)  # a hit does not refresh (no LRU bookkeeping on the warm path)
    cache.put(C, "c", 100.0)
    assert [digest for digest, _ in cache.items()] == [B, C]
    assert len(cache) == 2


def test_put_again_replaces_and_renews() -> None:
    cache: BoundedCache[str] = BoundedCache(2)
    cache.put(A, "a1", 100.0)
    cache.put(B, "b", 100.0)
    cache.put(A, "a2", 200.0)
    cache.put(C, "c", 100.0)  # B is now the oldest
    assert cache.items() == [(A, "a2"), (C, "c")]
    assert cache.get(A, 150.0) == "a2"


@pytest.mark.parametrize("maxsize", [0, -1])
def test_disabled_cache_stores_nothing(maxsize: int) -> None:
    cache: BoundedCache[str] = BoundedCache(maxsize)
    cache.put(A, "a", 100.0)
    assert cache.get(A, 0.0) is None
    assert len(cache) == 0


def test_discard_and_clear() -> None:
    cache: BoundedCache[str] = BoundedCache(10)
    for digest in (A, B, C):
        cache.put(digest, "x", 100.0)
    cache.discard(A)
    cache.discard(A)  # absent: no error
    assert cache.get(A, 0.0) is None
    assert len(cache) == 2
    cache.clear()
    assert (len(cache), cache.items()) == (0, [])


def test_items_is_a_copy() -> None:
    cache: BoundedCache[str] = BoundedCache(10)
    cache.put(A, "a", 100.0)
    cache.items().clear()
    assert cache.get(A, 0.0) == "a"


def test_concurrent_writers_respect_the_bound() -> None:
    cache: BoundedCache[int] = BoundedCache(50)

    def write(offset: int) -> None:
        for i in range(2000):
            cache.put((offset + i).to_bytes(32, "big"), i, 100.0)

    threads = [threading.Thread(target=write, args=(n * 10_000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50


# --- one-way names for tokens -----------------------------------------------------------


def test_digest_and_fingerprint() -> None:
    digest = token_digest("eyJ.abc.def")
    assert digest == hashlib.sha256(b"eyJ.abc.def").digest()
    assert fingerprint(digest) == digest[:4].hex()
    assert len(fingerprint(digest)) == 8
    assert text_fingerprint("eyJ.abc.def") == fingerprint(digest)


@pytest.mark.parametrize("text", ["\ud800", "caf\u00e9", "", "\x00\r\n"], ids=repr)
def test_text_fingerprint_never_raises(text: str) -> None:
    result = text_fingerprint(text)
    assert len(result) == 8
    assert int(result, 16) >= 0


def make_token(**changes: object) -> AccessToken:
    fields: dict[str, object] = {
        "subject": "user-1",
        "client_id": "client-1",
        "scopes": frozenset({"write", "read"}),
        "expires_at": datetime(2027, 1, 15, 8, 0, tzinfo=UTC),
        "claims": MappingProxyType({"sub": "user-1", "secret": "canary-claim"}),
        "fingerprint": "0a1b2c3d",
        **changes,
    }
    return AccessToken(**fields)  # type: ignore[arg-type]


def test_access_token_repr() -> None:
    assert repr(make_token()) == (
        "AccessToken(subject='user-1', client_id='client-1', scopes=['read', 'write'], "
        "expires_at='2027-01-15T08:00:00+00:00', fingerprint='0a1b2c3d')"
    )
    assert "expires_at=None" in repr(make_token(expires_at=None))


def test_access_token_is_frozen() -> None:
    token = make_token()
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.subject = "admin"  # type: ignore[misc]


def test_access_token_has_scopes() -> None:
    token = make_token()
    assert token.has_scopes([])
    assert token.has_scopes(["read"])
    assert token.has_scopes({"read", "write"})
    assert not token.has_scopes(["read", "admin"])
    assert not token.has_scopes(["READ"])
