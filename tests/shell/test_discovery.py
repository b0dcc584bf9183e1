"""Authorization server metadata: discovery URLs, the mix-up defence, endpoint checks."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from oauth_shield import Reason, TokenValidator
from oauth_shield._discovery import METADATA_TTL, metadata_urls
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock, ValidatorFactory, refused

from .conftest import GatedTransport

Handler = Callable[[httpx.Request], httpx.Response]


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


# --- endpoints that would leave the issuer's scheme, or that httpx cannot parse --------------


def serving_metadata(server: LocalIssuer, seen: list[str], /, **endpoints: object) -> Handler:
    """The issuer, with its metadata naming ``endpoints`` instead; records every URL asked."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={**server.metadata(), **endpoints})
        return server.handle(request)

    return handler


METADATA_URL = "https://issuer.test/.well-known/openid-configuration"
DOWNGRADES = [
    "http://127.0.0.1:8080/x",
    "http://localhost/x",
    "http://[::1]/x",
    "http://issuer.test/x",
]


UNPARSABLE = ["https://999.1.1.1/x", "https://xn--zz.example/x"]
REFUSED_ENDPOINTS = [
    # An https issuer's metadata naming plain http (loopback: the fetch rules alone would
    # allow it): the client secret and tokens would travel in clear text.
    *((url, "insecure_url", "downgrade") for url in DOWNGRADES),
    # Passes urllib, not httpx: before, httpx.InvalidURL or idna.IDNAError escaped validate().
    *((url, "invalid_url", "not a URL httpx can request") for url in UNPARSABLE),
]


@pytest.mark.parametrize(("endpoint", "kind", "why"), REFUSED_ENDPOINTS)
async def test_a_refused_jwks_uri_from_the_metadata_is_never_requested(
    gated: ValidatorFactory,
    gate: GatedTransport,
    issuer: LocalIssuer,
    endpoint: str,
    kind: str,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    gate.failure = serving_metadata(issuer, seen, jwks_uri=endpoint)
    await refused(gated(), issuer.token(), Reason.KEYS_UNAVAILABLE)
    assert seen == [METADATA_URL]
    [line] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.exc_info is None  # a named failure, not an unexpected exception
    said = line.getMessage()
    assert f"[{kind}] at {endpoint}" in said and why in said


@pytest.mark.parametrize(("endpoint", "kind", "why"), REFUSED_ENDPOINTS)
async def test_a_refused_introspection_endpoint_from_the_metadata_is_never_called(
    gated: ValidatorFactory,
    gate: GatedTransport,
    issuer: LocalIssuer,
    endpoint: str,
    kind: str,
    why: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    gate.failure = serving_metadata(issuer, seen, introspection_endpoint=endpoint)
    validator = gated(client_id="rs", client_secret="secret-" + "x" * 16)
    for _ in range(2):  # the second from the cached metadata
        await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_FAILED)
    assert seen == [METADATA_URL]  # neither the secret nor a token went anywhere
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 2 and all(f"[{kind}] at {endpoint}" in line for line in said)


async def test_insecure_http_lets_metadata_name_plain_http_endpoints(
    gated: ValidatorFactory, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    seen: list[str] = []
    gate.failure = serving_metadata(issuer, seen, jwks_uri="http://issuer.test/jwks")
    assert (await gated(insecure_http=True).validate(issuer.token())).subject == "user-1"
    assert seen == [METADATA_URL, "http://issuer.test/jwks"]


async def test_an_http_loopback_issuer_may_name_https_endpoints(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    """Only a downgrade is refused: a development issuer on loopback may point at https."""
    issuer.issuer = "http://127.0.0.1:9000"
    seen: list[str] = []
    handler = serving_metadata(issuer, seen, jwks_uri="https://keys.test/jwks")
    validator = make_validator(issuer=issuer.issuer, transport=httpx.MockTransport(handler))
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert seen[-1] == "https://keys.test/jwks"


# --- the mix-up refusal names both issuers and the likely fix --------------------------------


@pytest.mark.parametrize(
    ("configured", "named", "fix"),
    [
        ("https://issuer.test/", "https://issuer.test",
         "remove the trailing slash from issuer: set it to 'https://issuer.test'"),
        ("https://issuer.test", "https://issuer.test/",
         "add a / to issuer: set it to 'https://issuer.test/'"),
        ("https://issuer.test/realms/a", "https://issuer.test/realms/A",
         "compared case-sensitively: set issuer to 'https://issuer.test/realms/A'"),
        ("http://localhost:8080", "http://127.0.0.1:8080",
         "the server calls itself 127.0.0.1 where issuer says localhost (a host alias?"),
        ("https://issuer.test", "http://issuer.test",
         "the server names itself with http: set issuer to 'http://issuer.test'"),
        ("https://issuer.test", "https://attacker.test/tenant",
         "if this is your authorization server, set issuer to 'https://attacker.test/tenant'"),
        ("https://issuer.test", None, "it names no issuer string"),
        ("https://issuer.test", "https://issuer.test\n\x1b[2J" + "x" * 500,
         "'https://issuer.test??[2Jxxx"),
    ],
    ids=["remove-slash", "add-slash", "case", "host-alias", "scheme", "other", "none", "hostile"],
)  # fmt: skip
async def test_the_mix_up_refusal_names_both_issuers_and_the_fix(
    issuer: LocalIssuer,
    clock: FrozenClock,
    configured: str,
    named: object,
    fix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []
    issuer.issuer = configured
    handler = serving_metadata(issuer, seen, issuer=named)
    validator = TokenValidator(
        issuer=configured,
        audience=issuer.audience,
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    async with validator:
        await refused(validator, issuer.token(), Reason.KEYS_UNAVAILABLE)
    assert len(seen) == 1  # the first document; nothing from it was used
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("key set fetch failed: the metadata names another issuer")
    assert "mix-up defence" in line and f"at {seen[0]}" in line
    assert f"issuer is {configured!r}" in line
    assert fix in line
    assert line.isprintable() and len(line) < 1500


async def test_no_metadata_at_either_place_names_both_urls(
    gated: ValidatorFactory,
    gate: GatedTransport,
    issuer: LocalIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate.failure = lambda request: httpx.Response(404)
    await refused(gated(), issuer.token(), Reason.KEYS_UNAVAILABLE)
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith(
        "key set fetch failed: the server answered HTTP 404 (and status_404 at "
        "https://issuer.test/.well-known/openid-configuration: no metadata for this issuer) "
        "[status_404] at https://issuer.test/.well-known/oauth-authorization-server; check that "
        "issuer 'https://issuer.test' is exactly the server's issuer identifier"
    ), line
    assert "or set jwks_uri" in line
