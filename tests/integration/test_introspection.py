"""Opaque tokens introspected at the real oidc-provider (RFC 7662), with the API's own
client credentials: validation, revocation seen once the cache entry expires, single-flight."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import pytest

from oauth_shield import Reason, SyncTokenValidator, TemporarilyUnavailableError, TokenValidator
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock, log_text, refused, secret_pieces
from tests.provider import API_AUDIENCE, OIDCProvider

from .conftest import ShiftedClock


def introspecting(op: OIDCProvider, **options: Any) -> TokenValidator:
    return TokenValidator(
        issuer=op.issuer,
        audience=API_AUDIENCE,
        client_id="resource-server",
        client_secret=op.clients["resource-server"],
        **options,
    )


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post"])
async def test_an_opaque_token_is_validated_by_real_introspection(
    provider: OIDCProvider, auth: str
) -> None:
    token = provider.token("client-opaque", scope="read write")
    async with introspecting(provider, introspection_auth=auth) as validator:
        access = await validator.validate(token, ["write"])
    assert (access.subject, access.client_id) == (None, "client-opaque")  # no sub for this grant
    assert access.scopes == {"read", "write"}
    assert access.claims["aud"] == API_AUDIENCE
    assert provider.stats()["introspection"] == 1


async def test_jwts_still_validate_locally(provider: OIDCProvider) -> None:
    async with introspecting(provider) as validator:
        assert (await validator.validate(provider.token("client-rs256"))).subject == "client-rs256"
    assert provider.stats()["introspection"] == 0


async def test_a_revoked_token_is_refused_once_its_cache_entry_expires(
    fresh_provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    op = fresh_provider
    token = op.token("client-opaque")
    async with introspecting(op, clock=shifted_clock, introspection_ttl=30) as validator:
        await validator.validate(token)
        op.revoke(token, "client-opaque")
        shifted_clock.advance(29)
        assert await validator.validate(token)  # still cached: revocation shows within the TTL
        assert op.stats()["introspection"] == 1
        shifted_clock.advance(2)
        await refused(validator, token, Reason.INACTIVE)
        await refused(validator, token, Reason.INACTIVE)  # the refusal is cached too
    assert op.stats()["introspection"] == 2


async def test_hundreds_of_concurrent_requests_with_one_token_make_one_call(
    provider: OIDCProvider,
) -> None:
    token = provider.token("client-opaque")
    async with introspecting(provider) as validator:
        results = await asyncio.gather(*(validator.validate(token) for _ in range(300)))
    assert {access.fingerprint for access in results} == {results[0].fingerprint}
    assert provider.stats()["introspection"] == 1


async def test_wrong_credentials_never_let_a_token_through(
    provider: OIDCProvider, all_logs: pytest.LogCaptureFixture
) -> None:
    token = provider.token("client-opaque")
    validator = TokenValidator(
        issuer=provider.issuer,
        audience=API_AUDIENCE,
        client_id="resource-server",
        client_secret="wrong",
    )
    async with validator:
        await refused(validator, token, Reason.INTROSPECTION_FAILED, caplog=all_logs)
    text = log_text(all_logs)
    assert "check client_id and client_secret" in text
    assert provider.clients["resource-server"] not in text
    assert all(piece not in text for piece in secret_pieces(token))


async def test_an_outage_answers_503_and_nothing_is_cached(
    fresh_provider: OIDCProvider, shifted_clock: ShiftedClock
) -> None:
    op = fresh_provider
    token = op.token("client-opaque")
    async with introspecting(op, http_timeout=0.5, clock=shifted_clock) as validator:
        await validator.validate(provider_token := op.token("client-opaque"))  # warms discovery
        op.set_faults(mode="status", status=503)
        error = await refused(validator, token, Reason.INTROSPECTION_UNAVAILABLE)
        assert error.status_code == 503
        op.clear_faults()
        shifted_clock.advance_monotonic(1)  # the outage backoff: no call for a second
        assert await validator.validate(token)
        assert await validator.validate(provider_token)


# --- routing and fairness (SECURITY-CASES class 15) -----------------------------------------


@pytest.mark.parametrize("introspect_all", [False, True], ids=["default", "introspect_all"])
async def test_a_suffixed_jwt_from_the_provider_is_refused_without_a_call(
    provider: OIDCProvider, introspect_all: bool
) -> None:
    token = provider.token("client-rs256")
    async with introspecting(provider, introspect_all=introspect_all) as validator:
        for suffix in ("=", "==", "~", ".", ".AAAA", "~WyJhIiwiYiJd~"):
            await refused(validator, token + suffix, Reason.MALFORMED_TOKEN)
        await refused(validator, token.replace(".", ".~", 1), Reason.MALFORMED_TOKEN)
    assert provider.stats()["introspection"] == 0


def test_a_token_the_server_fails_on_does_not_shut_out_the_others_over_http() -> None:
    """A real HTTP server (uvicorn) that answers 500 for one crafted token: that token is
    refused, and everyone else's new tokens, sent in the same second, are still judged."""
    issuer = LocalIssuer()
    crafted = "crafted-" + secrets.token_urlsafe(16)

    def fail_on_crafted(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/introspect" and crafted.encode() in request.content:
            return httpx.Response(500, text="internal error")
        return None

    issuer.fault = fail_on_crafted
    with issuer.serve():
        validator = SyncTokenValidator(
            issuer=issuer.issuer,
            audience=issuer.audience,
            client_id="resource-server",
            client_secret="s3cr3t",
            clock=FrozenClock(wall=time.time()),  # the 1 s memo cannot run out mid-test
        )
        with validator:
            for _ in range(3):
                with pytest.raises(TemporarilyUnavailableError):
                    validator.validate(crafted)
            others = [issuer.opaque_token() for _ in range(5)]
            for token in others:
                assert validator.validate(token)
    assert issuer.requests["/introspect"] == 1 + len(others)  # the crafted one: once
