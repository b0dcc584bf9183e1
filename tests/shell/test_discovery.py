"""Authorization server metadata: discovery URLs, the mix-up defence, endpoint checks."""

from __future__ import annotations

import logging

import httpx
import pytest

from oauth_shield import Reason
from oauth_shield._discovery import METADATA_TTL, metadata_urls
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock, ValidatorFactory, refused

from .conftest import GatedTransport


@pytest.mark.parametrize(
    ("issuer", "urls"),
    [
        (
            "https://as.test",
            (
                "https://as.test/.well-known/openid-configuration",
                "https://as.test/.well-known/oauth-authorization-server",
            ),
        ),
        (
            "https://as.test/tenant/1",
            (
                "https://as.test/tenant/1/.well-known/openid-configuration",
                "https://as.test/.well-known/oauth-authorization-server/tenant/1",
            ),
        ),
        (
            "https://as.test/realm/",
            (
                "https://as.test/realm/.well-known/openid-configuration",
                "https://as.test/.well-known/oauth-authorization-server/realm",
            ),
        ),
    ],
)
def test_metadata_urls(issuer: str, urls: tuple[str, str]) -> None:
    assert metadata_urls(issuer) == urls


async def test_rfc8414_metadata_is_used_when_there_is_no_openid_document(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    def only_rfc8414(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        issuer.requests[path] += 1
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json=issuer.metadata())
        if path == "/jwks":
            return httpx.Response(200, json={"keys": issuer.published})
        return httpx.Response(404)

    gate.failure = only_rfc8414
    assert (await gated().validate(issuer.token())).subject == "user-1"
    assert issuer.requests["/.well-known/openid-configuration"] == 1


@pytest.mark.parametrize(
    "named",
    [
        "https://issuer.test/",
        "https://attacker.test",
        "https://ISSUER.test",
        None,
        ["https://issuer.test"],
    ],
)
async def test_metadata_naming_another_issuer_validates_nothing(
    gated: ValidatorFactory,
    gate: GatedTransport,
    issuer: LocalIssuer,
    named: object,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    def mixed_up(request: httpx.Request) -> httpx.Response:
        issuer.requests[request.url.path] += 1
        if request.url.path == "/jwks":
            return httpx.Response(200, json={"keys": issuer.published})
        return httpx.Response(200, json={**issuer.metadata(), "issuer": named})

    gate.failure = mixed_up
    await refused(gated(), issuer.token(), Reason.KEYS_UNAVAILABLE, caplog=all_logs)
    assert issuer.requests["/jwks"] == 0  # nothing from that document was used
    assert any("mix-up" in r.getMessage() and r.levelno == logging.ERROR for r in all_logs.records)


@pytest.mark.parametrize(
    "jwks_uri", ["http://issuer.test/jwks", "https://user:pw@issuer.test/jwks", 42, None, "jwks"]
)
async def test_an_unusable_jwks_uri_in_the_metadata(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer, jwks_uri: object
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        issuer.requests[request.url.path] += 1
        return httpx.Response(200, json={"issuer": issuer.issuer, "jwks_uri": jwks_uri})

    gate.failure = handler
    await refused(gated(), issuer.token(), Reason.KEYS_UNAVAILABLE)
    assert sum(issuer.requests.values()) == 1  # only the metadata was requested


async def test_a_configured_jwks_uri_skips_discovery(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    validator = make_validator(jwks_uri=f"{issuer.issuer}/jwks")
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert set(issuer.requests) == {"/jwks"}


async def test_metadata_is_reread_after_its_ttl_and_kept_if_that_fails(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = gated()
    await validator.validate(issuer.token())
    clock.advance(METADATA_TTL + 1)
    await validator.validate(issuer.token())  # key set expired too: refetch both
    assert issuer.requests["/.well-known/openid-configuration"] == 2

    real = issuer.handle

    def metadata_down(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known"):
            issuer.requests[request.url.path] += 1
            return httpx.Response(503)
        return real(request)

    gate.failure = metadata_down
    clock.advance(METADATA_TTL + 1)
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert issuer.requests["/jwks"] == 3  # the key set came from the last known metadata
