"""JWT access tokens from a real OpenID Provider (oidc-provider 8.8.1), end to end.

Real HTTP, real discovery, tokens minted by an independent implementation: the client
credentials grant with resource indicators (RFC 8707) gives RFC 9068 ``at+jwt`` tokens.
Time is skipped with clocks (``ShiftedClock``, ``FrozenClock``), never slept through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from oauth_shield import (
    AccessToken,
    AuthError,
    InsufficientScopeError,
    InvalidTokenError,
    Reason,
    TemporarilyUnavailableError,
    TokenValidator,
)
from tests.conftest import FrozenClock, log_text, refused, secret_pieces
from tests.provider import API_AUDIENCE, OTHER_AUDIENCE, OIDCProvider

from .conftest import ShiftedClock, b64url, claims_of, header_of, with_header


def validator_for(op: OIDCProvider, **options: Any) -> TokenValidator:
    """A validator for ``op`` as an API would configure it: issuer and audience, nothing else."""
    return TokenValidator(issuer=op.issuer, audience=API_AUDIENCE, **options)


def since(started: float) -> float:
    return time.perf_counter() - started


# --- accepted tokens ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "alg"), [("client-rs256", "RS256"), ("client-es256", "ES256")]
)
async def test_provider_jwt_is_accepted(provider: OIDCProvider, client_id: str, alg: str) -> None:
    token = provider.token(client_id, scope="read write")
    header, claims = header_of(token), claims_of(token)
    assert header["alg"] == alg
    assert header["typ"] == "at+jwt"
    assert header["kid"].startswith(alg.lower())

    async with validator_for(provider) as validator:
        accepted = await validator.validate(token)

    assert isinstance(accepted, AccessToken)
    assert accepted.subject == client_id
    assert accepted.client_id == client_id
    assert accepted.scopes == frozenset({"read", "write"})
    assert isinstance(accepted.scopes, frozenset)
    assert accepted.expires_at == datetime.fromtimestamp(claims["exp"], UTC)
    assert accepted.expires_at.tzinfo is not None
    assert dict(accepted.claims) == claims
    assert accepted.claims["iss"] == provider.issuer
    assert accepted.claims["aud"] == API_AUDIENCE
    with pytest.raises(TypeError):
        accepted.claims["scope"] = "admin"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        accepted.scopes = frozenset({"admin"})  # type: ignore[misc]
    for piece in secret_pieces(token):
        assert piece not in repr(accepted)
    assert provider.stats() | {"token": 0} == {
        "discovery": 1,
        "jwks": 1,
        "token": 0,
        "introspection": 0,
        "revocation": 0,
        "other": 0,
    }


async def test_repeated_validation_makes_no_request(provider: OIDCProvider) -> None:
    rs256, es256 = provider.token("client-rs256"), provider.token("client-es256")
    async with validator_for(provider) as validator:
        for _ in range(3):
            assert (await validator.validate(rs256)).subject == "client-rs256"
            assert (await validator.validate(es256)).subject == "client-es256"
        # A token never seen, signed by a known key, needs no request either.
        assert (
            await validator.validate(provider.token("client-es256"))
        ).client_id == "client-es256"
    stats = provider.stats()
    assert (stats["discovery"], stats["jwks"]) == (1, 1)


async def test_required_scopes(provider: OIDCProvider) -> None:
    token = provider.token(scope="read")
    async with validator_for(provider) as validator:
        assert (await validator.validate(token, ["read"])).scopes == frozenset({"read"})
        assert (await validator.validate(token, "read")).scopes == frozenset({"read"})
        assert (await validator.validate(token)).scopes == frozenset({"read"})
        for _ in range(2):  # the second refusal comes from the verified-token cache
            error = await refused(validator, token, Reason.INSUFFICIENT_SCOPE, scopes=["admin"])
            assert isinstance(error, InsufficientScopeError)
            assert error.scopes == ("admin",)
            assert error.status_code == 403
            assert error.error == "insufficient_scope"
            assert 'scope="admin"' in error.www_authenticate("api")
        error = await refused(validator, token, Reason.INSUFFICIENT_SCOPE, scopes="read write")
        assert isinstance(error, InsufficientScopeError)
        assert "write" in error.scopes


async def test_scopes_the_provider_does_not_know_are_not_granted(provider: OIDCProvider) -> None:
    """The provider silently drops unknown scopes, and omits ``scope`` when none is left."""
    some = provider.token(scope="read superuser")
    none = provider.token(scope="superuser")
    assert "scope" not in claims_of(none)
    async with validator_for(provider) as validator:
        assert (await validator.validate(some)).scopes == frozenset({"read"})
        assert (await validator.validate(none)).scopes == frozenset()
        await refused(validator, some, Reason.INSUFFICIENT_SCOPE, scopes=["superuser"])
        await refused(validator, none, Reason.INSUFFICIENT_SCOPE, scopes=["read"])


# --- refused tokens ----------------------------------------------------------------------


async def test_token_for_another_audience(provider: OIDCProvider) -> None:
    other = provider.token(resource=OTHER_AUDIENCE)
    assert claims_of(other)["aud"] == OTHER_AUDIENCE
    async with validator_for(provider) as validator:
        error = await refused(validator, other, Reason.AUDIENCE_MISMATCH)
        assert isinstance(error, InvalidTokenError)
        assert error.status_code == 401
    # An API that answers to both audiences accepts it.
    async with TokenValidator(
        issuer=provider.issuer, audience=[API_AUDIENCE, OTHER_AUDIENCE]
    ) as both:
        assert (await both.validate(other)).subject == "client-rs256"
        assert (await both.validate(provider.token())).subject == "client-rs256"


async def test_opaque_token_is_not_a_jwt(provider: OIDCProvider) -> None:
    opaque = provider.token("client-opaque")
    assert "." not in opaque
    async with validator_for(provider) as validator:
        await refused(validator, opaque, Reason.UNSUPPORTED_TOKEN)


async def test_validator_for_another_issuer_string_accepts_nothing(
    provider: OIDCProvider, all_logs: pytest.LogCaptureFixture
) -> None:
    """A trailing slash is another issuer (exact match): discovery names the real one, so
    the metadata is refused (mix-up defence) and no key set is ever fetched."""
    tokens = [provider.token(), provider.token("client-es256")]
    async with TokenValidator(issuer=provider.issuer + "/", audience=API_AUDIENCE) as validator:
        for token in tokens:
            error = await refused(validator, token, Reason.KEYS_UNAVAILABLE, caplog=all_logs)
            assert isinstance(error, TemporarilyUnavailableError)
            assert error.status_code == 503
            assert error.headers()["Retry-After"].isdigit()
    stats = provider.stats()
    assert stats["discovery"] == 1  # the failure is remembered: backoff, no retry storm
    assert stats["jwks"] == 0
    said = log_text(all_logs)
    assert "names another issuer" in said
    assert "issuer_mismatch" in said
    for token in tokens:
        for piece in secret_pieces(token):
            assert piece not in said


async def test_explicit_jwks_uri_still_checks_the_issuer_claim(provider: OIDCProvider) -> None:
    async with TokenValidator(
        issuer=provider.issuer + "/", audience=API_AUDIENCE, jwks_uri=provider.issuer + "/jwks"
    ) as validator:
        await refused(validator, provider.token(), Reason.ISSUER_MISMATCH)
    assert provider.stats()["discovery"] == 0


def _flip(segment: str, index: int) -> str:
    char = segment[index]
    return segment[:index] + ("B" if char == "A" else "A") + segment[index + 1 :]


def _parts(token: str) -> list[str]:
    return token.split(".")


def _reclaim(token: str, **changes: Any) -> str:
    header, _, signature = _parts(token)
    claims = claims_of(token) | changes
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


Tamper = Callable[[str, str], str]
_EITHER = {Reason.BAD_SIGNATURE, Reason.MALFORMED_TOKEN}

TAMPERED: list[Any] = [
    pytest.param(
        lambda t, _: ".".join([(p := _parts(t))[0], _flip(p[1], len(p[1]) // 2), p[2]]),
        _EITHER,
        id="payload-character-flipped",
    ),
    pytest.param(
        lambda t, _: _reclaim(t, scope="read write admin"), {Reason.BAD_SIGNATURE}, id="scope-added"
    ),
    pytest.param(
        lambda t, _: _reclaim(t, sub="client-es256"), {Reason.BAD_SIGNATURE}, id="subject-changed"
    ),
    pytest.param(
        lambda t, _: _reclaim(t, exp=claims_of(t)["exp"] + 86400),
        {Reason.BAD_SIGNATURE},
        id="expiry-extended",
    ),
    pytest.param(
        lambda t, _: ".".join([(p := _parts(t))[0], p[1], _flip(p[2], len(p[2]) // 2)]),
        {Reason.BAD_SIGNATURE},
        id="signature-character-flipped",
    ),
    pytest.param(
        lambda t, _: ".".join([(p := _parts(t))[0], p[1], _flip(p[2], len(p[2]) - 1)]),
        _EITHER,
        id="signature-last-character-flipped",
    ),
    pytest.param(lambda t, _: t[:-8], _EITHER, id="signature-truncated"),
    pytest.param(
        lambda t, other: ".".join([*_parts(t)[:2], _parts(other)[2]]),
        {Reason.BAD_SIGNATURE},
        id="signature-of-another-token",
    ),
    pytest.param(lambda t, _: with_header(t, alg="ES256"), {Reason.KEY_MISMATCH}, id="alg-swapped"),
    pytest.param(
        lambda t, other: with_header(t, kid=header_of(other)["kid"]),
        {Reason.KEY_MISMATCH},
        id="kid-of-the-ec-key",
    ),
    pytest.param(
        lambda t, _: with_header(t, alg="none"), {Reason.UNSUPPORTED_ALGORITHM}, id="alg-none"
    ),
    pytest.param(
        lambda t, _: with_header(t, alg="HS256"), {Reason.UNSUPPORTED_ALGORITHM}, id="alg-hs256"
    ),
    pytest.param(lambda t, _: with_header(t, typ="JWT"), {Reason.BAD_SIGNATURE}, id="typ-changed"),
]


@pytest.mark.parametrize(("tamper", "reasons"), TAMPERED)
async def test_tampered_token_is_refused(
    provider: OIDCProvider,
    all_logs: pytest.LogCaptureFixture,
    tamper: Tamper,
    reasons: set[Reason],
) -> None:
    token, es256 = provider.token(scope="read write"), provider.token("client-es256")
    tampered = tamper(token, es256)
    assert tampered != token
    async with validator_for(provider) as validator:
        assert (await validator.validate(token)).subject == "client-rs256"
        error = await refused(validator, tampered, caplog=all_logs)
        assert error.reason in reasons
        assert error.status_code == 401
        # Nothing was poisoned: the genuine token is still accepted, no key set refetched.
        assert (await validator.validate(token)).subject == "client-rs256"
    assert provider.stats()["jwks"] == 1


# --- time --------------------------------------------------------------------------------


async def test_short_token_expires(provider: OIDCProvider) -> None:
    """``client-short`` tokens live 2 s. A frozen clock set to the token's own ``iat`` makes
    the test exact without sleeping; ``leeway`` stretches the lifetime and nothing else."""
    token = provider.token("client-short")
    claims = claims_of(token)
    assert claims["exp"] - claims["iat"] == 2
    clock = FrozenClock(wall=claims["iat"], mono=time.monotonic())
    async with (
        validator_for(provider, leeway=0, clock=clock) as strict,
        validator_for(provider, clock=clock) as lenient,
    ):
        assert (await strict.validate(token)).subject == "client-short"
        assert (await lenient.validate(token)).subject == "client-short"
        clock.wall = claims["exp"] - 0.001
        assert (await strict.validate(token)).subject == "client-short"  # cached, still alive
        clock.wall = claims["exp"]
        error = await refused(strict, token, Reason.EXPIRED)
        assert error.description == "The access token expired"
        assert 'error="invalid_token"' in error.www_authenticate("api")
        assert (await lenient.validate(token)).subject == "client-short"  # default leeway 30 s
        clock.wall = claims["exp"] + 30
        await refused(lenient, token, Reason.EXPIRED)


@pytest.mark.parametrize(
    ("offset", "reason"), [(3600, Reason.EXPIRED), (-3600, Reason.ISSUED_IN_FUTURE)]
)
async def test_skewed_clock(provider: OIDCProvider, offset: float, reason: Reason) -> None:
    """An hour-long token seen by a clock an hour ahead has expired; one an hour behind sees
    it issued in the future."""
    clock = ShiftedClock()
    clock.advance(offset)
    async with validator_for(provider, leeway=0, clock=clock) as validator:
        await refused(validator, provider.token(), reason)


# --- key rotation (each test rotates its own provider) ---------------------------------


async def test_rotation_new_kid_is_fetched_once(fresh_provider: OIDCProvider) -> None:
    op = fresh_provider
    async with validator_for(op, jwks_cooldown=0) as validator:
        old = op.token()
        unseen_old = op.token("client-es256")
        await validator.validate(old)
        op.reset_stats()

        kids = op.rotate_keys()
        new, new_es256 = op.token(), op.token("client-es256")
        assert len(kids) == 4
        assert header_of(new)["kid"] in kids[:2]
        assert header_of(new_es256)["kid"] in kids[:2]
        assert header_of(old)["kid"] in kids[2:]

        assert (await validator.validate(new)).subject == "client-rs256"
        assert op.stats()["jwks"] == 1
        assert op.stats()["discovery"] == 0  # metadata is still fresh
        # Everything else is served from the one new key set.
        assert (await validator.validate(new_es256)).subject == "client-es256"
        assert (await validator.validate(old)).subject == "client-rs256"
        assert (await validator.validate(unseen_old)).subject == "client-es256"
        assert op.stats()["jwks"] == 1


async def test_a_key_published_one_second_after_our_fetch_is_accepted_at_once(
    fresh_provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    """Under a warm cache, with the default cooldown (30 s), the provider rotates a second
    after our fetch: its first token is accepted within that one request (one refetch). A
    second rotation at once finds two fetches in the window and waits for it to pass."""
    op = fresh_provider
    shifted_clock.freeze()
    async with validator_for(op, clock=shifted_clock) as validator:
        await validator.validate(op.token())
        shifted_clock.advance(1)
        op.rotate_keys()
        op.reset_stats()
        assert (await validator.validate(op.token())).subject == "client-rs256"
        assert op.stats()["jwks"] == 1
        op.rotate_keys()
        newer = op.token()
        await refused(validator, newer, Reason.UNKNOWN_KID)
        assert op.stats()["jwks"] == 1
        shifted_clock.advance(29)  # the first fetch is 30 s old: one fetch is allowed again
        assert (await validator.validate(newer)).subject == "client-rs256"
        assert op.stats()["jwks"] == 2


async def test_dropped_key_clears_the_verified_cache_on_unknown_kid(
    fresh_provider: OIDCProvider,
) -> None:
    op = fresh_provider
    async with validator_for(op, jwks_cooldown=0) as validator:
        old = op.token()
        await validator.validate(old)
        op.rotate_keys(drop_old=True)
        op.reset_stats()
        # Until the validator sees the new key set, a verified token stays verified.
        assert (await validator.validate(old)).subject == "client-rs256"
        assert op.stats()["jwks"] == 0

        new = op.token()
        assert (await validator.validate(new)).subject == "client-rs256"  # refetch: old key gone
        assert op.stats()["jwks"] == 1
        await refused(validator, old, Reason.UNKNOWN_KID)
        # With no cooldown, every unknown kid costs a fetch.
        assert op.stats()["jwks"] == 2
        assert (await validator.validate(new)).subject == "client-rs256"


async def test_dropped_key_is_seen_when_the_key_set_expires(
    fresh_provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    op = fresh_provider
    shifted_clock.freeze()  # the TTL is measured to the second below
    async with validator_for(op, clock=shifted_clock, jwks_ttl=60) as validator:
        old = op.token()
        await validator.validate(old)
        op.rotate_keys(drop_old=True)
        op.reset_stats()
        shifted_clock.advance(59)
        # Within the TTL the verified-token cache answers, with no key lookup at all...
        assert (await validator.validate(old)).subject == "client-rs256"
        assert op.stats()["jwks"] == 0
        # ...but no longer than the TTL: the cached token is verified again, which finds the
        # key set expired, waits for a fetch and no longer finds the old key in it.
        shifted_clock.advance(2)
        await refused(validator, old, Reason.UNKNOWN_KID)
        assert op.stats()["jwks"] == 1
        assert (await validator.validate(op.token())).subject == "client-rs256"
        assert op.stats()["jwks"] == 1  # the new key came with that one fetch


async def test_refresh_ahead_drops_removed_keys_in_the_background(
    fresh_provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    """Between refresh_at (TTL minus a fifth) and expiry, a lookup is answered from the
    current keys and one refresh starts in the background."""
    op = fresh_provider
    async with validator_for(op, clock=shifted_clock, jwks_ttl=60) as validator:
        old = op.token()
        unseen_old = op.token()
        await validator.validate(old)
        op.rotate_keys(drop_old=True)
        op.reset_stats()
        shifted_clock.advance(50)  # refresh_at is 48 s after the fetch, expiry at 60 s
        assert (await validator.validate(unseen_old)).subject == "client-rs256"
        # Neither lookup waited: the refresh has not even started to run yet.
        assert (await validator.validate(old)).subject == "client-rs256"
        error = await _refused_soon(validator, old)
        assert error.reason is Reason.UNKNOWN_KID
        # The refresh, then one refetch for the old kid, which the window still allowed
        # (the first fetch was 50 s ago); no more.
        await refused(validator, old, Reason.UNKNOWN_KID)
        assert op.stats()["jwks"] == 2


async def _refused_soon(validator: TokenValidator, token: str, within: float = 5.0) -> AuthError:
    """Validate ``token`` every 10 ms until it is refused (a background change landed)."""
    deadline = time.perf_counter() + within
    while True:
        try:
            await validator.validate(token)
        except AuthError as error:
            return error
        assert time.perf_counter() < deadline, "still accepted"
        await asyncio.sleep(0.01)


# --- outages -----------------------------------------------------------------------------


async def test_cached_keys_outlive_the_provider(fresh_provider: OIDCProvider) -> None:
    op = fresh_provider
    async with validator_for(op, http_timeout=0.5, jwks_cooldown=0) as validator:
        await validator.validate(op.token())
        unseen = [op.token(), op.token("client-es256")]
        unknown_kid = with_header(op.token(), kid="rs256-never-published")
        op.stop()

        for token in unseen:
            assert (await validator.validate(token)).scopes == frozenset({"read"})
        for _ in range(2):  # first a failed refetch, then the backoff answers alone
            started = time.perf_counter()
            await refused(validator, unknown_kid, Reason.UNKNOWN_KID)
            assert since(started) < 1.0
        for token in unseen:  # still accepted after the failed refetch
            assert (await validator.validate(token)).subject in ("client-rs256", "client-es256")


async def test_new_validator_during_an_outage(fresh_provider: OIDCProvider) -> None:
    op = fresh_provider
    token = op.token()
    op.stop()
    started = time.perf_counter()
    async with validator_for(op, http_timeout=0.5) as validator:
        error = await refused(validator, token, Reason.KEYS_UNAVAILABLE)
        assert isinstance(error, TemporarilyUnavailableError)
        assert error.status_code == 503
        assert error.error == "temporarily_unavailable"
        assert error.retry_after >= 1
        assert error.headers()["Retry-After"] == str(error.retry_after)
    assert since(started) < 1.0


async def test_validator_recovers_after_a_restart(
    fresh_provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    """``restart()`` keeps the issuer but brings new keys and forgets every token: the
    validator picks the new keys up once its window has room, and old tokens die with their
    keys."""
    op = fresh_provider
    async with validator_for(op, clock=shifted_clock, http_timeout=0.5) as validator:
        old = op.token()
        await validator.validate(old)
        op.stop()
        await refused(validator, with_header(old, kid="rs256-x"), Reason.UNKNOWN_KID)
        op.restart()
        new = op.token()
        assert header_of(new)["kid"] != header_of(old)["kid"]
        # The first fetch and the failed refetch fill the window (two per jwks_cooldown).
        await refused(validator, new, Reason.UNKNOWN_KID)
        shifted_clock.advance(31)
        assert (await validator.validate(new)).subject == "client-rs256"
        stats = op.stats()
        assert (stats["discovery"], stats["jwks"]) == (0, 1)
        await refused(validator, old, Reason.UNKNOWN_KID)  # the window's second fetch
        await refused(validator, old, Reason.UNKNOWN_KID)  # and then none
        assert op.stats()["jwks"] == 2


# --- fault injection (the shared provider; the autouse fixture clears faults) ------------


@pytest.mark.parametrize("explicit_jwks_uri", [False, True], ids=["discovered", "jwks_uri"])
async def test_slow_issuer_gives_503_within_the_timeout(
    provider: OIDCProvider, explicit_jwks_uri: bool
) -> None:
    token = provider.token()
    provider.set_faults(delay_ms=3000)
    extra = {"jwks_uri": provider.issuer + "/jwks"} if explicit_jwks_uri else {}
    started = time.perf_counter()
    async with validator_for(provider, http_timeout=0.3, **extra) as validator:
        error = await refused(validator, token, Reason.KEYS_UNAVAILABLE)
        assert error.status_code == 503
    assert 0.25 < since(started) < 1.0
    stats = provider.stats()
    assert (stats["discovery"], stats["jwks"]) == ((0, 1) if explicit_jwks_uri else (1, 0))


async def test_slow_refetch_for_an_unknown_kid_is_bounded(provider: OIDCProvider) -> None:
    token = provider.token()
    async with validator_for(provider, http_timeout=0.3, jwks_cooldown=0) as validator:
        await validator.validate(token)
        provider.set_faults(delay_ms=3000)
        started = time.perf_counter()
        await refused(validator, with_header(token, kid="rs256-unknown"), Reason.UNKNOWN_KID)
        assert since(started) < 1.0
        unseen = provider.token()
        started = time.perf_counter()
        assert (await validator.validate(unseen)).subject == "client-rs256"
        assert since(started) < 0.25  # known keys never wait for the issuer


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"mode": "html"}, id="html-200"),
        pytest.param({"mode": "status", "status": 500}, id="status-500"),
        pytest.param({"mode": "status", "status": 503}, id="status-503"),
        pytest.param({"mode": "reset"}, id="connection-reset"),
    ],
)
async def test_broken_answers_accept_nothing_then_recover(
    provider: OIDCProvider, shifted_clock: ShiftedClock, faults: dict[str, Any]
) -> None:
    tokens = [provider.token(), provider.token("client-es256")]
    provider.set_faults(**faults)
    async with validator_for(provider, clock=shifted_clock, http_timeout=1.0) as validator:
        for token in tokens:
            error = await refused(validator, token, Reason.KEYS_UNAVAILABLE)
            assert error.status_code == 503
            assert isinstance(error, TemporarilyUnavailableError)
            assert error.retry_after == 1  # the first backoff
        assert provider.stats()["jwks"] == 0
        asked = provider.stats()["discovery"]
        assert asked == 1

        provider.clear_faults()
        # Inside the backoff nothing is asked, even though the issuer is back.
        await refused(validator, tokens[0], Reason.KEYS_UNAVAILABLE)
        assert provider.stats()["discovery"] == asked
        shifted_clock.advance(1.01)
        for token in tokens:
            assert (await validator.validate(token)).scopes == frozenset({"read"})
        stats = provider.stats()
        assert (stats["discovery"], stats["jwks"]) == (asked + 1, 1)


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"mode": "status", "status": 500}, id="status-500"),
        pytest.param({"delay_ms": 3000}, id="slow"),
    ],
)
async def test_stale_keys_serve_while_the_issuer_is_broken(
    provider: OIDCProvider, shifted_clock: ShiftedClock, faults: dict[str, Any]
) -> None:
    """Past the key set's TTL a request waits for a refresh, at most ``http_timeout``, and
    when it fails falls back to the last known good keys (stale-if-error)."""
    async with validator_for(
        provider, clock=shifted_clock, jwks_ttl=60, http_timeout=0.3
    ) as validator:
        await validator.validate(provider.token())
        unseen = [provider.token(), provider.token("client-es256")]
        provider.set_faults(**faults)
        shifted_clock.advance(61)
        provider.reset_stats()
        started = time.perf_counter()
        assert (await validator.validate(unseen[0])).subject == "client-rs256"
        assert since(started) < 1.0
        assert provider.stats()["jwks"] == 1  # one refresh tried (and failed)
        started = time.perf_counter()
        assert (await validator.validate(unseen[1])).subject == "client-es256"
        assert since(started) < 0.25  # within the backoff: used as they are, nothing asked
        assert provider.stats()["jwks"] == 1


async def test_metadata_is_reread_hourly_with_the_key_set(
    provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    async with validator_for(provider, clock=shifted_clock) as validator:
        await validator.validate(provider.token())
        provider.reset_stats()
        shifted_clock.advance_monotonic(301)  # past the default key set TTL (300 s)
        await validator.validate(provider.token())
        stats = provider.stats()
        assert (stats["discovery"], stats["jwks"]) == (0, 1)
        shifted_clock.advance_monotonic(3600)  # past the metadata TTL too
        await validator.validate(provider.token())
        stats = provider.stats()
        assert (stats["discovery"], stats["jwks"]) == (1, 2)


# --- secrets never leak ------------------------------------------------------------------


async def test_no_token_or_secret_reaches_logs_or_errors(
    provider: OIDCProvider, all_logs: pytest.LogCaptureFixture, shifted_clock: ShiftedClock
) -> None:
    valid = provider.token(scope="read write")
    es256 = provider.token("client-es256")
    short = provider.token("client-short")
    header, payload, signature = _parts(valid)
    invalid = [
        provider.token(resource=OTHER_AUDIENCE),
        provider.token("client-opaque"),
        f"{header}.{payload}.{_flip(signature, 10)}",
        _reclaim(valid, scope="admin"),
        with_header(valid, kid="rs256-unknown"),
        with_header(valid, alg="none"),
        valid + "x",
        "not a token " + signature,
    ]
    errors: list[AuthError] = []
    async with validator_for(provider, jwks_cooldown=0, http_timeout=0.3) as validator:
        await validator.validate(valid, ["read"])
        await validator.validate(es256)
        await validator.validate(short)
        errors.append(await refused(validator, valid, scopes=["admin"], caplog=all_logs))
        for token in invalid:
            errors.append(await refused(validator, token, caplog=all_logs))
        provider.set_faults(mode="reset")  # failed fetches log too
        errors.append(await refused(validator, invalid[4], Reason.UNKNOWN_KID, caplog=all_logs))
    async with validator_for(provider, http_timeout=0.3) as cold:
        errors.append(await refused(cold, valid, Reason.KEYS_UNAVAILABLE, caplog=all_logs))
    shifted_clock.advance(3600)
    provider.clear_faults()
    async with validator_for(provider, leeway=0, clock=shifted_clock) as late:
        errors.append(await refused(late, short, Reason.EXPIRED, caplog=all_logs))

    said = log_text(all_logs) + "\n".join(
        "".join(traceback.format_exception(error)) for error in errors
    )
    names = {record.name for record in all_logs.records}
    assert {"oauth_shield.validator", "oauth_shield.keys", "httpx", "httpcore.http11"} <= names
    assert "refused" in said  # the rejections were logged, so the check below means something
    for token in [valid, es256, short, *invalid]:
        for piece in secret_pieces(token):
            assert piece not in said
    for secret in provider.clients.values():
        assert secret not in said
