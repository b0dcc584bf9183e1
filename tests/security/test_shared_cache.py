"""A shared cache someone else can write to (SECURITY-CASES.md, class 13).

A hostile writer is a plain Redis client in the test: it reads what the validators stored,
captures, rewrites, replays, moves between keys, truncates, writes non-ASCII, undecodable,
oversized and wrongly typed values, and squats lease keys, on a real redis-server. With the
cache secret, a writer without it can at most cost a fetch: every validator still answers as
the issuer would, Redis stays in use, and nothing but an ``AuthError`` leaves ``validate()``.
Without the secret, the test pins what the docs say such a writer can do.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import pickle
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py
from aiocache import Cache
from aiocache.serializers import PickleSerializer

from oauth_shield import ConfigurationError, Reason, TokenValidator
from oauth_shield._config import DEFAULT_INTROSPECTION_FIELDS
from oauth_shield._token import token_digest
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.conftest import SHARED_CACHE_SECRET, FrozenClock, ValidatorFactory, refused
from tests.redis_server import RedisServer
from tests.shell.conftest import GatedTransport

HOSTILE_VALUES = [
    json.dumps("é:{}").encode(),  # what aiocache's JSON serializer decodes to a non-ASCII MAC
    "é:{}".encode(),
    "😀" * 40 + ":{}",
    b"\xff\xfe\x00:{}",  # not UTF-8
    b"",
    b":",
    b"0" * 64 + b":" + b"{" * 100_000,  # deep nesting behind a MAC-shaped prefix
]


@pytest.fixture
def writer(redis: RedisServer) -> Iterator[redis_py.Redis]:
    """Whoever else can write to the Redis: no secret, a plain client."""
    client = redis_py.Redis.from_url(redis.url)
    yield client
    client.close()


@pytest.fixture
def make(shared_validators: ValidatorFactory) -> ValidatorFactory:
    return shared_validators


def namespace(issuer: LocalIssuer) -> str:
    return "oauth_shield:" + hashlib.sha256(issuer.issuer.encode()).hexdigest()[:16]


def one_key(writer: redis_py.Redis, pattern: str) -> str:
    """The one stored key matching ``pattern`` (leases excluded)."""
    keys = [key.decode() for key in writer.keys(pattern) if not key.endswith(b":lock")]
    assert len(keys) == 1, keys
    return keys[0]


def verdict_key(writer: redis_py.Redis, token: str) -> str:
    return one_key(writer, f"oauth_shield:*introspection*{token_digest(token).hex()}")


def outages(caplog: pytest.LogCaptureFixture) -> list[str]:
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"]
    return [line for line in said if "unavailable" in line]


# --- unreadable values: a miss, never an error, never an outage ----------------------------


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
async def test_an_unreadable_key_set_entry_is_a_miss(
    make: Any,
    issuer: LocalIssuer,
    writer: redis_py.Redis,
    caplog: pytest.LogCaptureFixture,
    value: bytes | str,
) -> None:
    """One non-ASCII character used to make the MAC comparison raise TypeError: every new
    process then answered 503 to every JWT without asking the issuer."""
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    await make().validate(issuer.token())
    writer.set(one_key(writer, "oauth_shield:*:jwks"), value)
    assert (await make().validate(issuer.token(alg="ES256"))).subject == "user-1"
    assert issuer.requests["/jwks"] == 2  # the new process asked the issuer itself
    assert outages(caplog) == []


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
async def test_an_unreadable_verdict_is_a_miss(
    make: Any,
    issuer: LocalIssuer,
    writer: redis_py.Redis,
    caplog: pytest.LogCaptureFixture,
    value: bytes | str,
) -> None:
    """The same value under an introspection key used to raise a raw TypeError out of
    validate()."""
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    token = issuer.opaque_token(sub="alice")
    await make().validate(token)
    writer.set(verdict_key(writer, token), value)
    assert (await make().validate(token)).subject == "alice"
    assert issuer.requests["/introspect"] == 2
    assert outages(caplog) == []


async def test_a_value_of_another_type_is_a_miss_not_an_outage(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    token = issuer.opaque_token(sub="alice")
    await make().validate(token)
    await make().validate(issuer.token())
    for key in (verdict_key(writer, token), one_key(writer, "oauth_shield:*:jwks")):
        writer.delete(key)
        writer.hset(key, "field", "value")  # WRONGTYPE for every string command
    validator = make()
    assert (await validator.validate(token)).subject == "alice"
    assert (await validator.validate(issuer.token(alg="ES256"))).subject == "user-1"
    assert (issuer.requests["/introspect"], issuer.requests["/jwks"]) == (2, 2)
    assert outages(caplog) == []  # a value someone wrote says nothing about Redis's health


async def test_an_oversized_value_is_not_even_read_whole(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis
) -> None:
    await make().validate(issuer.token())
    writer.set(one_key(writer, "oauth_shield:*:jwks"), b"0" * 64 + b":" + b" " * (32 << 20))
    validator = make()
    tracemalloc.start()
    try:
        assert (await validator.validate(issuer.token(alg="ES256"))).subject == "user-1"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # 32 MiB were stored; a bounded prefix was read
    assert issuer.requests["/jwks"] == 2


# --- replays: authenticated values carry their own expiry ----------------------------------


async def test_a_verdict_replayed_after_a_revocation_is_refused(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis, clock: FrozenClock
) -> None:
    """A positive verdict captured before the revocation and written back without a TTL used
    to keep the revoked token valid across the fleet, without an introspection call."""
    token = issuer.opaque_token(sub="alice", exp=int(clock.time()) + 3600)
    await make().validate(token)
    key = verdict_key(writer, token)
    captured = writer.get(key)
    issuer.revoke(token)
    clock.advance(61)  # past introspection_ttl: the verdict is no longer current
    writer.set(key, captured)  # no TTL
    await refused(make(), token, Reason.INACTIVE)
    assert issuer.requests["/introspect"] == 2


async def test_a_failure_marker_replayed_does_not_stop_key_set_fetches(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis, clock: FrozenClock
) -> None:
    """A one-second failure marker written back without a TTL used to stop every process
    from fetching the key set again."""
    issuer.fault = lambda request: None if request.url.path != "/jwks" else _unavailable()
    await refused(make(), issuer.token(), Reason.KEYS_UNAVAILABLE)
    key = one_key(writer, "oauth_shield:*:jwks")
    captured = writer.get(key)  # within its second
    issuer.fault = None
    clock.advance(2)
    writer.set(key, captured)  # no TTL
    assert (await make().validate(issuer.token())).subject == "user-1"
    assert issuer.requests["/jwks"] == 2


def _unavailable() -> Any:
    import httpx

    return httpx.Response(503)


# --- leases: a squatter costs no more than one fetch budget --------------------------------


async def test_a_squatted_lease_costs_nothing_with_the_secret(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis, clock: FrozenClock
) -> None:
    """Lease keys held by a writer used to stall a cold start for the whole lease (11 s with
    the defaults) before the process fetched itself."""
    lock = f"{namespace(issuer)}:jwks:lock"
    gate = GatedTransport(issuer)
    gate.open.clear()
    holder = make(transport=gate)
    pending = asyncio.create_task(holder.validate(issuer.token()))
    genuine = None
    for _ in range(500):  # a real holder's lease, captured while it is held
        if (genuine := writer.get(lock)) is not None:
            break
        await asyncio.sleep(0.002)
    assert genuine is not None
    gate.open.set()
    await pending
    writer.delete(one_key(writer, "oauth_shield:*:jwks"))
    clock.advance(10)
    for squatted in (b"a-process-that-never-was", genuine):
        writer.set(lock, squatted)  # held forever: no TTL
        started = time.monotonic()
        assert (await make(http_timeout=2).validate(issuer.token())).subject == "user-1"
        assert time.monotonic() - started < 0.5  # no wait: forged, or no longer current
        writer.delete(one_key(writer, "oauth_shield:*:jwks"))
    assert issuer.requests["/jwks"] == 3


async def test_without_the_secret_a_squatted_lease_costs_one_fetch_budget_at_most(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis, clock: FrozenClock
) -> None:
    lock = f"{namespace(issuer)}:jwks:lock"
    lease = {"v": 1, "key": lock, "exp": clock.time() + 30, "value": {}}  # as genuine as any
    writer.set(lock, ":" + json.dumps(lease))
    validator = make(http_timeout=0.5, cache_secret=None, insecure_shared_cache=True)
    started = time.monotonic()
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert 0.4 < time.monotonic() - started < 1.2  # a fetch budget, then its own fetch


# --- what the verdict depends on, and the reader's own bounds ----------------------------


async def test_a_key_set_from_the_shared_tier_lives_no_longer_than_the_readers_jwks_ttl(
    make: Any, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    """A key set read from Redis used to keep the writer's TTL, not the reader's."""
    await make(jwks_ttl=3600).validate(issuer.token())
    reader = make(jwks_ttl=300)
    await reader.validate(issuer.token())
    fetched = issuer.requests["/jwks"]
    clock.advance(301)  # the reader's TTL, not the writer's
    await reader.validate(issuer.token(alg="ES256"))
    assert issuer.requests["/jwks"] == fetched + 1


async def test_two_apis_sharing_an_issuer_and_a_redis_judge_a_token_each_for_itself(
    make: Any, issuer: LocalIssuer
) -> None:
    """API A's audience_mismatch used to block the token at API B, without a call."""
    api_a = make(audience="https://a.example")
    api_b = make(audience="https://b.example", introspection_fields=["email"])
    for_b = issuer.opaque_token(aud="https://b.example", email="bob@example.com")
    await refused(api_a, for_b, Reason.AUDIENCE_MISMATCH)
    assert (await api_b.validate(for_b)).claims["email"] == "bob@example.com"
    for_both = issuer.opaque_token(aud=["https://a.example", "https://b.example"], email="x@y")
    assert "email" not in (await api_a.validate(for_both)).claims  # A's allowlist has no email
    assert (await api_b.validate(for_both)).claims["email"] == "x@y"  # B's own verdict
    assert issuer.requests["/introspect"] == 4


async def test_two_apis_with_different_claim_rules_judge_a_token_each_for_itself(
    make: Any, issuer: LocalIssuer
) -> None:
    """The same class for the rules of issue 13: API A's claim_mismatch, or a client A does
    not allow, must not refuse the token at API B, whose rules differ."""
    api_a = make(required_claims={"token_use": "access"})
    # The same fields kept (A keeps what its rules read): only the rules differ.
    api_b = make(introspection_fields=[*DEFAULT_INTROSPECTION_FIELDS, "token_use"])
    token = issuer.opaque_token(client_id="client-b", token_use="id")
    await refused(api_a, token, Reason.CLAIM_MISMATCH)
    assert (await api_b.validate(token)).client_id == "client-b"
    assert issuer.requests["/introspect"] == 2  # one verdict each, none shared between them


async def test_values_moved_between_keys_or_truncated_are_misses(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis
) -> None:
    token = issuer.opaque_token(sub="alice")
    first = make()
    await first.validate(issuer.token())
    await first.validate(token)
    jwks_key = one_key(writer, "oauth_shield:*:jwks")
    metadata_key = one_key(writer, "oauth_shield:*:metadata")
    jwks = writer.get(jwks_key)
    assert jwks is not None
    writer.set(metadata_key, jwks)  # a key set where metadata belongs
    writer.set(verdict_key(writer, token), jwks)  # and where a verdict belongs
    writer.set(jwks_key, jwks[:-10])  # truncated
    second = make()
    assert (await second.validate(issuer.token(alg="ES256"))).subject == "user-1"
    assert (await second.validate(token)).subject == "alice"
    counts = [issuer.requests[path] for path in ("/.well-known/openid-configuration", "/jwks")]
    assert (counts, issuer.requests["/introspect"]) == ([2, 2], 2)


async def test_a_cache_with_a_pickle_serializer_never_unpickles_what_a_writer_stored(
    make: Any, issuer: LocalIssuer, redis: RedisServer, writer: redis_py.Redis
) -> None:
    """aiocache's serializer used to decode stored values before the MAC was checked: with a
    pickle serializer, whoever could write to Redis ran code in every process."""
    host, port = "127.0.0.1", redis.port
    cache = Cache(Cache.REDIS, endpoint=host, port=port, serializer=PickleSerializer())
    writer.set(f"{namespace(issuer)}:jwks", pickle.dumps(Exploit()))
    writer.set(f"{namespace(issuer)}:metadata", pickle.dumps(Exploit()))
    validator = make(redis_url=None, cache=cache)
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert RAN == []
    await cache.client.aclose()


RAN: list[str] = []


def _ran(what: str) -> None:
    RAN.append(what)


class Exploit:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _ran, ("code chosen by whoever can write to Redis",)


# --- without the secret --------------------------------------------------------------------


async def test_without_the_secret_a_writer_can_make_any_token_valid(
    make: Any, issuer: LocalIssuer, writer: redis_py.Redis, clock: FrozenClock
) -> None:
    """What docs/deployment.md says a writer can do without the secret, pinned."""
    attacker = SigningKey("ES256", kid="attacker")
    key = f"{namespace(issuer)}:jwks"
    document = {"jwks": {"keys": [attacker.jwk]}, "at": clock.time(), "ttl": 300}
    envelope = {"v": 1, "key": key, "exp": clock.time() + 300, "value": document}
    writer.set(key, ":" + json.dumps(envelope))
    validator = make(cache_secret=None, insecure_shared_cache=True)
    forged = issuer.token(key=attacker, sub="anyone-the-writer-likes")
    assert (await validator.validate(forged)).subject == "anyone-the-writer-likes"
    assert issuer.requests["/jwks"] == 0


def test_a_shared_cache_without_the_secret_is_an_explicit_choice(
    issuer: LocalIssuer, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.config")
    options = {"issuer": issuer.issuer, "audience": issuer.audience, "redis_url": redis.url}
    with pytest.raises(ConfigurationError, match="needs cache_secret"):
        TokenValidator(**options)
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        TokenValidator(**options, cache_secret="too-short")
    with pytest.raises(ConfigurationError, match="not both"):
        TokenValidator(**options, cache_secret=SHARED_CACHE_SECRET, insecure_shared_cache=True)
    TokenValidator(**options, insecure_shared_cache=True)
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.config"]
    assert len(said) == 1 and "can make any token valid, as any user" in said[0]
