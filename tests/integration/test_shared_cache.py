"""The shared tier on a real redis-server: several validators (as several processes would)
share key sets, metadata and introspection verdicts, fetch once between them, and keep
working when Redis does not."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from typing import Any

import pytest

from oauth_shield import AuthError, Reason, TokenValidator
from oauth_shield._shared import SharedCache, redis_cache
from oauth_shield._token import token_digest
from oauth_shield.testing import LocalIssuer, SigningKey, loopback_socket
from tests.conftest import NOW, SHARED_CACHE_SECRET, FrozenClock, ValidatorFactory, refused
from tests.redis_server import RedisServer
from tests.shell.conftest import GatedTransport, settle


@pytest.fixture
def make(shared_validators: ValidatorFactory) -> ValidatorFactory:
    return shared_validators


def stored(redis: RedisServer) -> dict[str, bytes]:
    """Every key in Redis with its raw value."""
    reply = redis.command("KEYS", "*").split(b"\r\n")
    keys = [line.decode() for line in reply[2::2] if line]
    return {key: redis.command("GET", key) for key in keys}


async def test_a_key_set_fetched_by_one_process_serves_the_others(
    make: Any, issuer: LocalIssuer
) -> None:
    await make().validate(issuer.token())
    for _ in range(3):
        await make().validate(issuer.token(alg="ES256"))
    assert (issuer.requests["/jwks"], issuer.requests["/.well-known/openid-configuration"]) == (
        1,
        1,
    )


async def test_n_processes_missing_at_once_make_one_fetch(make: Any, issuer: LocalIssuer) -> None:
    gate = GatedTransport(issuer)
    gate.open.clear()
    validators = [make(transport=gate) for _ in range(8)]
    pending = [
        asyncio.create_task(v.validate(issuer.token(sub=f"u{i}"))) for i, v in enumerate(validators)
    ]
    await settle()
    gate.open.set()
    assert [(await task).subject for task in pending] == [f"u{i}" for i in range(8)]
    assert (issuer.requests["/jwks"], issuer.requests["/.well-known/openid-configuration"]) == (
        1,
        1,
    )


async def test_a_refresh_is_shared_too(make: Any, issuer: LocalIssuer, clock: FrozenClock) -> None:
    first, second = make(), make()
    await first.validate(issuer.token())
    await second.validate(issuer.token())
    clock.advance(301)
    await asyncio.gather(first.validate(issuer.token()), second.validate(issuer.token()))
    assert issuer.requests["/jwks"] == 2  # one refresh for both


async def test_an_opaque_token_is_introspected_once_for_all_processes(
    make: Any, issuer: LocalIssuer
) -> None:
    good = issuer.opaque_token(scope="read")
    validators = [make() for _ in range(6)]
    results = await asyncio.gather(*(v.validate(good, ["read"]) for v in validators))
    assert {r.scopes for r in results} == {frozenset({"read"})}
    for validator in validators:  # a refusal is shared as well
        await refused(validator, "never-issued-token", Reason.INACTIVE)
    assert issuer.requests["/introspect"] == 2


async def test_redis_holds_no_token_and_no_filtered_field(
    make: Any, issuer: LocalIssuer, redis: RedisServer
) -> None:
    canaries = {
        "email": "canary-email@example.com",
        "api_key": "canary-api-key-77",
        "internal": "canary-id-42",
    }
    tokens = [issuer.opaque_token(**canaries), issuer.token(), "never-issued-token"]
    validator = make()
    for token in tokens:
        with contextlib.suppress(AuthError):  # a refusal is stored too
            await validator.validate(token)
    content = stored(redis)
    assert any(":jwks" in key for key in content) and any(
        ":introspection:" in key for key in content
    )
    assert all(key.startswith("oauth_shield:") for key in content)
    assert not any(key.endswith(":lock") for key in content)  # leases are released
    dump = repr(content)
    for secret in [*tokens, *(piece for t in tokens for piece in t.split(".")), *canaries.values()]:
        assert secret not in dump


async def test_a_lost_holder_costs_at_most_one_fetch_budget(
    make: Any, issuer: LocalIssuer, redis: RedisServer
) -> None:
    validator = make(http_timeout=0.5)
    shared = validator._shared
    assert shared is not None
    lock = shared.key("jwks") + ":lock"
    lease = shared._seal(lock, {"holder": "a-process-that-died"}, 1.5)  # genuine, current
    assert lease is not None
    redis.command("SET", lock, lease, "PX", "60000")
    started = time.monotonic()
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert 0.4 < time.monotonic() - started < 1.5  # the fetch budget, then its own fetch
    assert issuer.requests["/jwks"] == 1  # it fetched itself, once


async def test_redis_down_never_fails_a_request(
    issuer: LocalIssuer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    with loopback_socket() as dead:
        validator = TokenValidator(
            issuer=issuer.issuer,
            audience=issuer.audience,
            clock=clock,
            transport=issuer.transport(),
            redis_url=f"redis://127.0.0.1:{dead.getsockname()[1]}",
            cache_secret=SHARED_CACHE_SECRET,
        )
        for i in range(30):
            assert (await validator.validate(issuer.token(sub=f"u{i}"))).subject == f"u{i}"
        await validator.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"]
    assert len(warnings) == 1 and "using the in-process cache" in warnings[0]


async def test_a_hung_redis_costs_one_timeout_per_outage(
    make: Any,
    issuer: LocalIssuer,
    redis: RedisServer,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    validator = make()
    await validator.validate(issuer.token())  # connected, keys cached
    redis.pause()
    try:
        started = time.monotonic()
        for i in range(20):  # distinct opaque tokens: each needs the shared tier
            token = await validator.validate(issuer.opaque_token(sub=f"u{i}"))
            assert token.subject == f"u{i}"
        took = time.monotonic() - started
    finally:
        redis.resume()
    assert 1.0 <= took < 2.5  # one operation's timeout, then the tier is skipped
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"]
    assert said == [
        "shared cache unavailable (TimeoutError); using the in-process cache, retrying in 5 s"
    ]
    clock.advance(5)  # back in use; the answers to the abandoned commands must not be misread
    after = issuer.opaque_token(sub="after")
    assert (await validator.validate(after)).subject == "after"
    assert (await make().validate(after)).subject == "after"
    assert issuer.requests["/introspect"] == 21  # the second process read the first's verdict
    assert [*said, "shared cache is back"] == [
        r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"
    ]


async def test_redis_killed_and_restarted(
    make: Any,
    issuer: LocalIssuer,
    redis: RedisServer,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    await make().validate(issuer.token())
    redis.stop()
    during = make()
    for i in range(10):
        await during.validate(issuer.token(sub=f"u{i}"))  # through the issuer, Redis or not
    redis.start()  # empty: the test server keeps nothing on disk
    clock.advance(5)  # the outage backoff
    await during.validate(issuer.opaque_token())
    await make().validate(issuer.token())  # fetches and publishes again...
    await make().validate(issuer.token())  # ...and the next process is served from Redis
    assert issuer.requests["/jwks"] == 3  # first; while Redis was down; after the restart
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"]
    assert said[0].startswith("shared cache unavailable") and said[-1] == "shared cache is back"
    assert len(said) == 2


async def test_a_value_published_just_before_the_lease_is_taken_is_used(redis: RedisServer) -> None:
    shared = SharedCache(redis_cache(redis.url), "https://issuer.test", url=redis.url)
    key = shared.key("metadata")
    await shared.set(key, {"at": 1}, 60)
    looks = itertools.count()
    produced: list[int] = []

    async def produce() -> tuple[dict[str, Any], float]:
        produced.append(1)
        return {"at": 2}, 60

    # The first look misses, as when the last holder publishes and releases right after it.
    found, _ = await shared.once(
        key, produce, budget=5, bound=lambda value: 60, accept=lambda value: next(looks) > 0
    )
    assert (found, produced) == ({"at": 1}, [])
    await shared.aclose()


async def test_a_waiter_whose_holder_just_released_uses_the_published_value(
    redis: RedisServer,
) -> None:
    """The lease was taken when we tried, and is gone (released) when we look at it: its
    holder published first. Fetching ourselves then would be one fetch too many."""
    shared = SharedCache(redis_cache(redis.url), "https://issuer.test", url=redis.url)
    key = shared.key("metadata")
    await shared.set(key, {"at": 1}, 60)
    looks = itertools.count()
    produced: list[int] = []

    def accept(value: dict[str, Any]) -> bool:
        if next(looks) == 0:  # our first look misses; the lease is someone else's...
            redis.command("SET", key + ":lock", "no-longer-a-current-lease")
            return False
        return True

    async def produce() -> tuple[dict[str, Any], float]:
        produced.append(1)
        return {"at": 2}, 60

    found, _ = await shared.once(key, produce, budget=5, bound=lambda value: 60, accept=accept)
    assert (found, produced) == ({"at": 1}, [])
    await shared.aclose()


async def test_entries_written_without_the_secret_are_ignored(
    make: Any, issuer: LocalIssuer, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    validator = make()
    attacker = SigningKey("ES256", kid="attacker")
    key = validator._shared.key("jwks")  # type: ignore[union-attr]
    forged = {"jwks": {"keys": [attacker.jwk]}, "at": NOW, "ttl": 300}
    envelope = {"v": 1, "key": key, "exp": NOW + 300, "value": forged}
    redis.command("SET", key, "0" * 64 + ":" + json.dumps(envelope))  # a MAC made up
    await refused(validator, issuer.token(key=attacker), Reason.UNKNOWN_KID)
    assert (await validator.validate(issuer.token())).subject == "user-1"  # from the issuer
    assert issuer.requests["/jwks"] == 1
    errors = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"]
    assert errors == ["a shared cache entry failed authentication; entries like it are ignored"]


async def test_a_verdict_moved_to_another_token_does_not_verify(
    make: Any, issuer: LocalIssuer, redis: RedisServer
) -> None:
    validator = make()
    good, other = issuer.opaque_token(), "a-token-never-issued"
    await validator.validate(good)
    shared = validator._shared
    assert shared is not None
    scope = validator._introspector._verdict_scope  # type: ignore[union-attr]
    reply = redis.command("GET", shared.key("introspection", scope, token_digest(good).hex()))
    moved = reply.split(b"\r\n", 1)[1].removesuffix(b"\r\n").decode()  # a RESP bulk string
    redis.command("SET", shared.key("introspection", scope, token_digest(other).hex()), moved)
    await refused(make(), other, Reason.INACTIVE)  # a new process: asks the server
    assert issuer.requests["/introspect"] == 2


async def test_an_unauthenticated_shared_cache_is_a_startup_warning(
    issuer: LocalIssuer, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.config")
    await TokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        redis_url=redis.url,
        insecure_shared_cache=True,
    ).aclose()
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.config"]
    assert any("shared cache is not authenticated" in line for line in said)


async def test_a_redis_url_with_an_acl_user_and_the_documented_permissions(
    make: Any, issuer: LocalIssuer, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The URL is read by redis-py whole: an ACL user (aiocache's own parser dropped the user
    name), limited to the commands docs/deployment.md lists."""
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    acl = "on >user-password ~oauth_shield:* +get +getrange +set +psetex +eval +del"
    assert redis.command("ACL", "SETUSER", "oauth-shield", *acl.split()) == b"+OK\r\n"
    try:
        url = f"redis://oauth-shield:user-password@127.0.0.1:{redis.port}/0"
        opaque = issuer.opaque_token()
        for _ in range(2):  # the second process reads what the first published
            validator = make(redis_url=url)
            await validator.validate(issuer.token())
            await validator.validate(opaque)
        assert b" user=oauth-shield " in redis.command("CLIENT", "LIST")  # not the default user
    finally:
        redis.command("ACL", "DELUSER", "oauth-shield")
    assert (issuer.requests["/jwks"], issuer.requests["/introspect"]) == (1, 1)
    assert [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"] == []


def test_a_rediss_url_connects_with_tls(issuer: LocalIssuer) -> None:
    validator = TokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        redis_url="rediss://user:password@redis.internal:6380/3",
        cache_secret=SHARED_CACHE_SECRET,
    )
    pool = validator._shared.cache.client.connection_pool  # type: ignore[union-attr]
    assert pool.connection_class.__name__ == "SSLConnection"
    assert {k: pool.connection_kwargs[k] for k in ("username", "db", "port")} == {
        "username": "user",
        "db": 3,
        "port": 6380,
    }
