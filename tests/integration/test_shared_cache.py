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
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiocache import Cache

from oauth_shield import AuthError, Reason, TokenValidator
from oauth_shield._shared import SharedCache
from oauth_shield._token import token_digest
from oauth_shield.testing import LocalIssuer, SigningKey, loopback_socket
from tests.conftest import FrozenClock, refused
from tests.redis_server import RedisServer
from tests.shell.conftest import GatedTransport, settle

CLIENT = ("resource-server", "rs-secret")
CACHE_SECRET = "shared-cache-secret"


@pytest.fixture
async def make(issuer: LocalIssuer, clock: FrozenClock, redis: RedisServer) -> AsyncIterator[Any]:
    """Validators sharing the test's Redis, as separate processes would; closed afterwards."""
    issuer.clients[CLIENT[0]] = CLIENT[1]
    made: list[TokenValidator] = []

    def validator(transport: Any = None, **options: Any) -> TokenValidator:
        settings = {
            "issuer": issuer.issuer,
            "audience": issuer.audience,
            "clock": clock,
            "transport": transport or issuer.transport(),
            "redis_url": redis.url,
            "cache_secret": CACHE_SECRET,
            "client_id": CLIENT[0],
            "client_secret": CLIENT[1],
            **options,
        }
        made.append(created := TokenValidator(**settings))
        return created

    yield validator
    for created in made:
        await created.aclose()


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


async def test_a_lost_holder_costs_at_most_one_lease(
    make: Any, issuer: LocalIssuer, redis: RedisServer
) -> None:
    validator = make(http_timeout=0.5)  # lease: timeout + 1 s
    lock = validator._shared.key("jwks") + ":lock"  # type: ignore[union-attr]
    redis.command("SET", lock, "a-process-that-died", "PX", "60000")
    started = time.monotonic()
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert 1.4 < time.monotonic() - started < 3.0
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
    shared = SharedCache(Cache.from_url(redis.url), "https://issuer.test")
    key = shared.key("metadata")
    await shared.set(key, {"at": 1}, 60)
    looks = itertools.count()
    produced: list[int] = []

    async def produce() -> tuple[dict[str, Any], float]:
        produced.append(1)
        return {"at": 2}, 60

    # The first look misses, as when the last holder publishes and releases right after it.
    found = await shared.once(key, produce, lease=5, accept=lambda value: next(looks) > 0)
    assert (found, produced) == ({"at": 1}, [])
    await shared.aclose()


async def test_entries_written_without_the_secret_are_ignored(
    make: Any, issuer: LocalIssuer, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    validator = make()
    attacker = SigningKey("ES256", kid="attacker")
    forged = {"jwks": {"keys": [attacker.jwk]}, "at": 2e9, "ttl": 300}
    redis.command("SET", validator._shared.key("jwks"), json.dumps(json.dumps(forged)))  # type: ignore[union-attr]
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
    reply = redis.command("GET", shared.key("introspection", token_digest(good)))
    moved = reply.split(b"\r\n", 1)[1].removesuffix(b"\r\n").decode()  # a RESP bulk string
    redis.command("SET", shared.key("introspection", token_digest(other)), moved)
    await refused(make(), other, Reason.INACTIVE)  # a new process: asks the server
    assert issuer.requests["/introspect"] == 2


async def test_an_unauthenticated_shared_cache_is_a_startup_warning(
    issuer: LocalIssuer, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.config")
    await TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, redis_url=redis.url
    ).aclose()
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.config"]
    assert any("shared cache is not authenticated" in line for line in said)
