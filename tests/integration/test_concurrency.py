"""Single-flight and the unknown-kid window against a real provider, counted by its stats.

The provider counts every request it receives (``provider.stats()``), so these tests pin
what the issuer actually sees, not what the library believes it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import pytest

from oauth_shield import AuthError, InvalidTokenError, Reason, TokenValidator
from tests.provider import API_AUDIENCE, OIDCProvider

from .conftest import ShiftedClock, mint, with_header


def validator_for(op: OIDCProvider, **options: Any) -> TokenValidator:
    return TokenValidator(issuer=op.issuer, audience=API_AUDIENCE, **options)


def jwks_and_discovery(op: OIDCProvider) -> tuple[int, int]:
    stats = op.stats()
    return stats["jwks"], stats["discovery"]


@pytest.mark.parametrize("warmed", [True, False], ids=["async-with", "first-use"])
async def test_300_concurrent_validations_on_a_cold_validator_fetch_once(
    provider: OIDCProvider, warmed: bool
) -> None:
    tokens = mint(provider, 150, "client-rs256") + mint(provider, 150, "client-es256")
    async with contextlib.AsyncExitStack() as stack:
        validator = validator_for(provider)
        if warmed:  # entering starts the key set fetch in the background
            await stack.enter_async_context(validator)
        else:  # nothing happens before the first validation
            stack.push_async_callback(validator.aclose)
        results = await asyncio.gather(*(validator.validate(token) for token in tokens))
    expected = ["client-rs256"] * 150 + ["client-es256"] * 150
    assert [result.client_id for result in results] == expected
    assert len({result.claims["jti"] for result in results}) == 300
    assert jwks_and_discovery(provider) == (1, 1)


def flood(op: OIDCProvider, count: int, seed: int) -> list[str]:
    """``count`` real tokens with random, never published kids (payload and signature kept)."""
    rng = random.Random(seed)
    real = [op.token("client-rs256"), op.token("client-es256")]
    return [with_header(real[i % 2], kid=f"{rng.getrandbits(64):016x}") for i in range(count)]


async def _all_refused_unknown_kid(validator: TokenValidator, tokens: list[str]) -> None:
    outcomes = await asyncio.gather(
        *(validator.validate(token) for token in tokens), return_exceptions=True
    )
    reasons = {
        outcome.reason if isinstance(outcome, AuthError) else type(outcome).__name__
        for outcome in outcomes
    }
    assert reasons == {Reason.UNKNOWN_KID}
    assert all(isinstance(outcome, InvalidTokenError) for outcome in outcomes)


@pytest.mark.parametrize(
    ("since_fetch", "refetches"),
    [(1.0, 1), (31.0, 2)],
    ids=["second-after-fetch", "cooldown-over"],
)
async def test_unknown_kid_floods_cost_at_most_two_fetches_per_window(
    provider: OIDCProvider, shifted_clock: ShiftedClock, since_fetch: float, refetches: int
) -> None:
    """N concurrent validations with unknown kids cost one refetch per flood until two
    fetches fall within the window (``jwks_cooldown``, 30 s), then none: a second after the
    warm-up fetch, the first flood fills the window; once that fetch is out of it, two
    floods do. Real tokens in the middle of a flood are unaffected."""
    first, second = flood(provider, 200, seed=1), flood(provider, 200, seed=2)
    genuine = mint(provider, 20)
    shifted_clock.freeze()
    async with validator_for(provider, clock=shifted_clock) as validator:
        await validator.validate(provider.token())
        provider.reset_stats()
        shifted_clock.advance(since_fetch)

        await _all_refused_unknown_kid(validator, first)
        assert jwks_and_discovery(provider) == (1, 0)

        await _all_refused_unknown_kid(validator, second)
        assert jwks_and_discovery(provider) == (refetches, 0)

        mixed = [*second[:100], *genuine, *second[100:]]
        outcomes = await asyncio.gather(
            *(validator.validate(token) for token in mixed), return_exceptions=True
        )
        accepted = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        assert [token.subject for token in accepted] == ["client-rs256"] * len(genuine)
        assert jwks_and_discovery(provider) == (refetches, 0)

        assert (await validator.validate(provider.token("client-es256"))).scopes == {"read"}


async def test_cancelled_waiters_do_not_cancel_the_shared_fetch(provider: OIDCProvider) -> None:
    tokens = mint(provider, 20)
    provider.set_faults(delay_ms=200)  # discovery and key set each take 200 ms
    async with validator_for(provider) as validator:
        tasks = [asyncio.ensure_future(validator.validate(token)) for token in tokens]
        await asyncio.sleep(0.05)
        for task in tasks[::2]:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes[::2])
    assert [outcome.subject for outcome in outcomes[1::2]] == ["client-rs256"] * 10  # type: ignore[union-attr]
    assert jwks_and_discovery(provider) == (1, 1)


async def test_concurrent_validations_against_a_broken_issuer_ask_once(
    provider: OIDCProvider,
) -> None:
    tokens = mint(provider, 100)
    provider.set_faults(mode="status", status=500)
    async with validator_for(provider) as validator:
        outcomes = await asyncio.gather(
            *(validator.validate(token) for token in tokens), return_exceptions=True
        )
    assert {getattr(outcome, "reason", None) for outcome in outcomes} == {Reason.KEYS_UNAVAILABLE}
    assert {getattr(outcome, "status_code", None) for outcome in outcomes} == {503}
    assert jwks_and_discovery(provider) == (0, 1)


async def test_aclose_during_a_fetch_leaves_nothing_running(provider: OIDCProvider) -> None:
    provider.set_faults(delay_ms=1000)
    before = asyncio.all_tasks()
    async with validator_for(provider):
        deadline = time.perf_counter() + 0.5  # the provider answers after 1 s
        while provider.stats()["discovery"] == 0:  # wait until the request is in flight
            if time.perf_counter() > deadline:
                pytest.fail("the discovery request was not sent in time")
            await asyncio.sleep(0.01)
    leftover = asyncio.all_tasks() - before
    try:
        assert leftover == set()
    finally:  # do not let the leak reach later tests
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
