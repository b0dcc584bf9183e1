"""Metrics, events and the health document against real servers: oidc-provider for a cold herd,
a rotation and an outage with stale keys; a real redis-server for the loss of the shared tier.

The provider counts what it serves (``provider.stats()``), so the metrics are checked against
what the issuer actually saw.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from oauth_shield import TokenValidator, events
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock, ValidatorFactory
from tests.provider import API_AUDIENCE, OIDCProvider
from tests.redis_server import RedisServer
from tests.telemetry import attrs, recorded

from .conftest import ShiftedClock, header_of, mint


def validator_for(op: OIDCProvider, **options: Any) -> TokenValidator:
    return TokenValidator(issuer=op.issuer, audience=API_AUDIENCE, **options)


def fetches(points: dict[Any, int]) -> dict[tuple[str, str], int]:
    return {
        (dict(a)["oauth_shield.jwks.trigger"], dict(a).get("error.type", "success")): n
        for a, n in points.items()
    }


async def test_a_cold_herd_is_one_fetch_in_the_metrics_and_at_the_provider(
    provider: OIDCProvider,
) -> None:
    tokens = mint(provider, 60)
    validator = validator_for(provider)
    with recorded(validator) as seen:
        results = await asyncio.gather(*(validator.validate(token) for token in tokens))
        metrics = seen.metrics()
    await validator.aclose()
    assert len(results) == 60
    assert provider.stats()["jwks"] == 1
    assert fetches(metrics["oauth_shield.jwks.fetches"][1]) == {("start", "success"): 1}
    ok = attrs(
        oauth_shield__result="success",
        oauth_shield__scheme="bearer",
        oauth_shield__token_kind="jwt",
        oauth_shield__issuer=provider.issuer,
    )
    assert metrics["oauth_shield.validations"][1] == {ok: 60}


async def test_a_rotation_at_the_provider(fresh_provider: OIDCProvider) -> None:
    op = fresh_provider
    async with validator_for(op, jwks_cooldown=0) as validator:
        await validator.validate(op.token())
        with recorded(validator) as seen:
            told: list[events.Event] = []
            validator.subscribe(told.append)
            kids = op.rotate_keys()
            new = op.token()
            await validator.validate(new)
            metrics = seen.metrics()
    rotated = [event for event in told if isinstance(event, events.KeySetRotated)]
    assert len(rotated) == 1
    assert header_of(new)["kid"] in rotated[0].added
    assert set(rotated[0].added) == set(kids[:2]) and rotated[0].removed == ()
    assert metrics["oauth_shield.jwks.rotations"][1] == {attrs(oauth_shield__issuer=op.issuer): 1}
    assert fetches(metrics["oauth_shield.jwks.fetches"][1]) == {("unknown_kid", "success"): 1}


async def test_an_outage_with_stale_keys_at_the_provider(
    fresh_provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    op = fresh_provider
    options = {"clock": shifted_clock, "http_timeout": 0.5, "jwks_ttl": 60}
    async with validator_for(op, **options) as validator:
        await validator.validate(op.token())
        unseen = op.token()
        op.stop()
        with recorded(validator) as seen:
            told: list[events.Event] = []
            validator.subscribe(told.append)
            shifted_clock.advance_monotonic(61)
            assert (await validator.validate(unseen)).subject == "client-rs256"
            metrics = seen.metrics()
            health = await validator.health()
    stale = [event for event in told if isinstance(event, events.StaleKeysUsed)]
    assert [event.failure for event in stale] == ["connect"]
    assert fetches(metrics["oauth_shield.jwks.fetches"][1]) == {("age", "connect"): 1}
    up = attrs(oauth_shield__issuer=op.issuer, oauth_shield__component="jwks")
    assert metrics["oauth_shield.up"][1] == {up: 0}
    assert health["status"] == "degraded"
    assert (health["keys"]["state"], health["keys"]["last_fetch"]) == ("stale", "connect")


async def test_losing_the_shared_tier(
    shared_validators: ValidatorFactory,
    issuer: LocalIssuer,
    redis: RedisServer,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.shared")
    validator = shared_validators()
    with recorded(validator) as seen:
        told: list[str] = []
        validator.subscribe(lambda event: told.append(event.kind))
        await validator.validate(issuer.token())
        assert (await validator.health())["shared_cache"] == "up"
        redis.stop()
        await validator.validate(issuer.opaque_token())  # needs the tier: it is down
        down = await validator.health()
        redis.start()
        clock.advance(5)  # the outage backoff
        await validator.validate(issuer.opaque_token())
        metrics = seen.metrics()
        up = await validator.health()
    assert [kind for kind in told if kind.startswith("shared")] == [
        "shared_tier_down",
        "shared_tier_back",
    ]
    errors = metrics["oauth_shield.shared.errors"][1]
    assert sum(errors.values()) == 1
    assert dict(next(iter(errors)))["error.type"] in ("ConnectionError", "ConnectionRefusedError")
    assert (down["shared_cache"], down["status"]) == ("down", "degraded")
    assert (up["shared_cache"], up["status"]) == ("up", "ok")
    lookups = {
        (dict(a)["oauth_shield.cache.name"], dict(a)["oauth_shield.cache.result"]): n
        for a, n in metrics["oauth_shield.cache.lookups"][1].items()
    }
    assert lookups[("shared.introspection", "miss")] >= 1
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"]
    assert said[0].startswith("shared cache unavailable") and said[-1] == "shared cache is back"
