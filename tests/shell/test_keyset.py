"""The remote key set: single-flight, cooldown, TTL, refresh-ahead, stale-if-error, max-stale.

Time is a FrozenClock that only moves when a test advances it; requests are held by a gate
when a test needs to see who waits for what.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from oauth_shield import AuthError, InvalidTokenError, Reason, TemporarilyUnavailableError
from oauth_shield._keys import import_key_set
from oauth_shield._keyset import MIN_TTL, Need
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.conftest import FrozenClock, ValidatorFactory, refused

from .conftest import GatedTransport, jwks_fetches, settle


@pytest.fixture(scope="module")
def stranger() -> SigningKey:
    return SigningKey("ES256", kid="stranger")


def random_kid_tokens(issuer: LocalIssuer, stranger: SigningKey, n: int) -> list[str]:
    return [
        stranger.sign({"alg": "ES256", "typ": "at+jwt", "kid": f"random-{i}"}, issuer.claims())
        for i in range(n)
    ]


# --- single-flight ----------------------------------------------------------------------


async def test_n_concurrent_validations_on_a_cold_cache_make_one_fetch(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = gated()
    tokens = [issuer.token(alg="ES256", sub=f"user-{i}") for i in range(300)]
    gate.open.clear()
    tasks = [asyncio.create_task(validator.validate(token)) for token in tokens]
    await settle()
    gate.open.set()
    results = await asyncio.gather(*tasks)
    assert [token.subject for token in results] == [f"user-{i}" for i in range(300)]
    assert issuer.requests["/.well-known/openid-configuration"] == 1
    assert jwks_fetches(issuer) == 1


async def test_n_concurrent_validations_with_an_unknown_kid_cause_exactly_one_fetch(
    gated: ValidatorFactory,
    gate: GatedTransport,
    issuer: LocalIssuer,
    clock: FrozenClock,
    stranger: SigningKey,
) -> None:
    validator = gated()
    await validator.validate(issuer.token())
    clock.advance(31)  # past the cooldown that began with the first fetch
    gate.open.clear()
    tasks = [
        asyncio.create_task(validator.validate(token))
        for token in random_kid_tokens(issuer, stranger, 300)
    ]
    await settle()
    gate.open.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, InvalidTokenError) and r.reason is Reason.UNKNOWN_KID for r in results)
    assert jwks_fetches(issuer) == 2


async def test_unknown_kids_cost_at_most_two_fetches_per_cooldown_window(
    validator: object, issuer: LocalIssuer, clock: FrozenClock, stranger: SigningKey
) -> None:
    """The first fetch and one refetch fill the window (two fetches per ``jwks_cooldown``);
    then random kids are refused without a request until the oldest of the two is 30 s old."""
    await validator.validate(issuer.token())  # type: ignore[attr-defined]
    fetches = []
    for _ in range(5):
        results = await asyncio.gather(
            *(validator.validate(t) for t in random_kid_tokens(issuer, stranger, 100)),  # type: ignore[attr-defined]
            return_exceptions=True,
        )
        assert all(isinstance(r, AuthError) and r.reason is Reason.UNKNOWN_KID for r in results)
        fetches.append(jwks_fetches(issuer))
        clock.advance(15)
    # Fetches start at t=0 (the first), 0 (a refetch: one was left), 30, 45 and 60: never
    # more than two within any 30 s. t=15: both of t=0 are in the window; t=30: they are
    # 30 s old, out of it; t=45: only t=30 is in it; t=60: only t=45.
    assert fetches == [2, 2, 3, 4, 5]


async def test_a_key_published_one_second_after_our_fetch_is_accepted_at_once(
    validator: object, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    """The issuer rotates a second after we fetched: its first token costs one refetch, not a
    wait for the cooldown (Nimbus: "one invocation left in case the keys are rotated")."""
    await validator.validate(issuer.token())  # type: ignore[attr-defined]
    clock.advance(1)
    issuer.rotate()
    fresh = issuer.token()
    assert (await validator.validate(fresh)).subject == "user-1"  # type: ignore[attr-defined]
    assert jwks_fetches(issuer) == 2
    # A second rotation at once finds the window full: it waits until the first fetch is
    # jwks_cooldown old, then costs one fetch.
    issuer.rotate()
    newer = issuer.token()
    await refused(validator, newer, Reason.UNKNOWN_KID)  # type: ignore[arg-type]
    assert jwks_fetches(issuer) == 2
    clock.advance(29)  # 30 s after the first fetch
    assert (await validator.validate(newer)).subject == "user-1"  # type: ignore[attr-defined]
    assert jwks_fetches(issuer) == 3


async def test_a_failed_fetch_counts_in_the_window(
    gated: ValidatorFactory,
    gate: GatedTransport,
    issuer: LocalIssuer,
    clock: FrozenClock,
    stranger: SigningKey,
) -> None:
    """Every fetch that reached for the issuer counts, failed ones too: the window bounds what
    the issuer sees, not what succeeded."""
    validator = gated()
    await validator.validate(issuer.token())
    gate.go_down()
    [token] = random_kid_tokens(issuer, stranger, 1)
    await refused(validator, token, Reason.UNKNOWN_KID)  # a refetch, failed
    gate.come_back()
    clock.advance(2)  # past the failure backoff, not past the window
    await refused(validator, token, Reason.UNKNOWN_KID)
    assert jwks_fetches(issuer) == 2
    clock.advance(28)
    await refused(validator, token, Reason.UNKNOWN_KID)
    assert jwks_fetches(issuer) == 3


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = gated()
    gate.open.clear()
    first = asyncio.create_task(validator.validate(issuer.token()))
    await settle()
    first.cancel()
    second = asyncio.create_task(validator.validate(issuer.token()))
    await settle()
    gate.open.set()
    assert (await second).subject == "user-1"
    assert first.cancelled()
    assert jwks_fetches(issuer) == 1


async def test_an_older_fetch_cannot_overwrite_a_newer_key_set(
    validator: object, issuer: LocalIssuer, signing_keys: dict[str, SigningKey]
) -> None:
    keys = validator._keys  # type: ignore[attr-defined]
    algorithms = validator.settings.algorithms  # type: ignore[attr-defined]
    newer = import_key_set({"keys": [signing_keys["RS256"].jwk]}, algorithms)
    older = import_key_set({"keys": [signing_keys["ES256"].jwk]}, algorithms)
    document = {"ttl": 300.0, "at": 0.0}
    keys._install(2, newer, document, 300.0)
    keys._install(1, older, document, 300.0)
    assert keys.keys is newer


# --- freshness -------------------------------------------------------------------------


async def test_refresh_ahead_serves_now_and_refreshes_in_the_background(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = gated()
    await validator.validate(issuer.token())
    clock.advance(300 - 59)  # inside the last minute of the TTL
    gate.open.clear()
    # Answered at once from the cached keys, although the issuer is held.
    assert (await asyncio.wait_for(validator.validate(issuer.token()), 1)).subject == "user-1"
    await validator.validate(issuer.token())  # a second request starts no second refresh
    gate.open.set()
    await settle()
    assert jwks_fetches(issuer) == 2
    clock.advance(100)  # the refreshed set is fresh again: no fetch
    await validator.validate(issuer.token())
    assert jwks_fetches(issuer) == 2


async def test_an_idle_service_waits_for_a_refresh_after_the_ttl(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = gated()
    await validator.validate(issuer.token())
    clock.advance(301)
    gate.open.clear()
    pending = asyncio.create_task(validator.validate(issuer.token()))
    await settle()
    assert not pending.done()  # no evidence of an outage: it waits for current keys
    gate.open.set()
    assert (await pending).subject == "user-1"
    assert jwks_fetches(issuer) == 2


@pytest.mark.parametrize(
    ("configured", "cache_control", "ttl"),
    [
        (300, "max-age=10", MIN_TTL),  # not a fetch per request
        (300, "public, max-age=120", 120.0),  # the issuer may shorten our TTL...
        (300, "max-age=99999999", 300.0),  # ...never lengthen it: jwks_ttl is the longest
        (3600, "max-age=900", 900.0),
        (30, "max-age=5", 30.0),  # a TTL below a minute is the operator's choice
        (300, None, 300.0),
        (300, "no-store", 300.0),
    ],
)
async def test_cache_control_max_age_shortens_the_ttl_within_bounds(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    clock: FrozenClock,
    configured: float,
    cache_control: str | None,
    ttl: float,
) -> None:
    if cache_control:
        issuer.jwks_headers["Cache-Control"] = cache_control
    validator = make_validator(jwks_ttl=configured)
    await validator.validate(issuer.token())
    state = validator._keys._state
    assert state.expires_at - clock.monotonic() == ttl


async def test_a_ttl_shorter_than_the_cooldown_is_still_honoured(
    make_validator: ValidatorFactory, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = make_validator(jwks_ttl=10)  # the unknown-kid cooldown stays 30 s
    await validator.validate(issuer.token())
    clock.advance(11)
    await validator.validate(issuer.token())
    assert jwks_fetches(issuer) == 2  # refreshed for age, inside the cooldown


# --- outages ---------------------------------------------------------------------------


async def test_stale_keys_serve_while_the_issuer_is_down(
    gated: ValidatorFactory,
    gate: GatedTransport,
    issuer: LocalIssuer,
    clock: FrozenClock,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    validator = gated()
    await validator.validate(issuer.token())
    gate.go_down()
    clock.advance(301)
    assert (await validator.validate(issuer.token())).subject == "user-1"  # stale-if-error
    assert jwks_fetches(issuer) == 2
    for _ in range(50):  # the issuer is known to be down: no request waits, none retries yet
        await validator.validate(issuer.token())
    assert jwks_fetches(issuer) == 2
    warnings = [r for r in all_logs.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "last known good" in warnings[0].getMessage()
    clock.advance(1)  # first backoff: one retry, in the background
    await validator.validate(issuer.token())
    await settle()
    assert jwks_fetches(issuer) == 3
    gate.come_back()
    clock.advance(2)
    await validator.validate(issuer.token())
    await settle()
    assert jwks_fetches(issuer) == 4
    assert validator._keys._state.failed is False  # type: ignore[attr-defined]


async def test_beyond_max_stale_the_answer_is_503(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = gated(jwks_max_stale=600)
    await validator.validate(issuer.token())
    gate.go_down()
    clock.advance(300 + 600)
    error = await refused(validator, issuer.token(), Reason.KEYS_UNAVAILABLE)
    assert isinstance(error, TemporarilyUnavailableError)
    assert error.status_code == 503 and int(error.headers()["Retry-After"]) >= 1


async def test_a_cold_start_while_down_backs_off(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = gated()
    gate.go_down()
    attempts = []
    for step in (0, 0.9, 0.1, 1.9, 0.1, 4, 8, 16, 29.9, 0.1):
        clock.advance(step)
        await refused(validator, issuer.token(), Reason.KEYS_UNAVAILABLE)
        attempts.append(issuer.requests["/.well-known/openid-configuration"])
    # Attempts at t = 0, 1, 3, 7, 15, 31, 61: waits double from 1 s and stop at the 30 s cooldown.
    assert attempts == [1, 1, 2, 2, 3, 4, 5, 6, 6, 7]


async def test_a_slow_issuer_costs_at_most_the_timeout(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = gated(http_timeout=0.2)
    gate.delay = 5
    started = asyncio.get_running_loop().time()
    await refused(validator, issuer.token(), Reason.KEYS_UNAVAILABLE)
    assert asyncio.get_running_loop().time() - started < 1.5


async def test_keys_removed_from_the_set_drop_the_tokens_they_verified(
    validator: object, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    token = issuer.token()
    await validator.validate(token)  # type: ignore[attr-defined]
    issuer.rotate(keep_old=False)
    clock.advance(301)
    await validator.validate(issuer.token())  # refetch: the old RSA key is gone
    await refused(validator, token, Reason.UNKNOWN_KID)  # type: ignore[arg-type]


async def test_a_key_set_without_usable_keys_keeps_the_last_good_one(
    validator: object, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    await validator.validate(issuer.token())  # type: ignore[attr-defined]
    issuer.published = [{"kty": "oct", "k": "c2VjcmV0", "kid": "oct"}]
    clock.advance(301)
    assert (await validator.validate(issuer.token())).subject == "user-1"  # type: ignore[attr-defined]
    assert validator._keys._state.failed  # type: ignore[attr-defined]


async def test_aclose_cancels_a_fetch_in_flight(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = gated()
    gate.open.clear()
    pending = asyncio.create_task(validator.validate(issuer.token()))
    await settle()
    await validator.aclose()
    with pytest.raises((asyncio.CancelledError, AuthError)):
        await pending


async def test_discovery_and_key_set_share_one_timeout(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = gated(http_timeout=0.3)
    gate.delay = 0.2  # each request alone fits in the timeout; both together do not
    started = asyncio.get_running_loop().time()
    await refused(validator, issuer.token(), Reason.KEYS_UNAVAILABLE)
    assert asyncio.get_running_loop().time() - started < 0.6
    assert issuer.requests["/.well-known/openid-configuration"] == 1


async def test_a_late_waiter_does_not_fetch_again(validator: object, issuer: LocalIssuer) -> None:
    """A caller that saw no keys, then reached resolve() after another caller's fetch finished
    (a thread that hopped to the loop late), uses the new keys instead of fetching again."""
    keys = validator._keys  # type: ignore[attr-defined]
    assert keys.lookup("rs256-key", "RS256") is Need.KEYS
    await validator.validate(issuer.token())  # type: ignore[attr-defined]
    assert callable(await keys.resolve("rs256-key", "RS256"))
    assert jwks_fetches(issuer) == 1
