"""One validator, several issuers: selection before any fetch, a key set per distinct source,
each issuer's own mix-up check and unknown-kid window, templates (Entra multi-tenant), and
bounded state whatever tokens arrive. Issuers are in-memory ``LocalIssuer`` s behind one
transport that routes by host and counts every request."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from oauth_shield import (
    ConfigurationError,
    InvalidTokenError,
    Reason,
    TemporarilyUnavailableError,
    TokenValidator,
)
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.conftest import AUDIENCE, FrozenClock, ValidatorFactory, refused

A, B, C = "https://a.test", "https://b.test/realms/orders", "https://c.test"
TEMPLATE = "https://login.test/{tenantid}/v2.0"
CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FABRIKAM = "aaaabbbb-0000-cccc-1111-dddd2222eeee"


class Router(httpx.MockTransport):
    """Requests go to the issuer that owns their host; every one is counted by URL."""

    def __init__(self, *issuers: LocalIssuer) -> None:
        self.by_host = {httpx.URL(issuer.issuer).host: issuer for issuer in issuers}
        self.seen: Counter[str] = Counter()
        super().__init__(self._route)

    def _route(self, request: httpx.Request) -> httpx.Response:
        self.seen[str(request.url)] += 1
        issuer = self.by_host.get(request.url.host)
        return issuer.handle(request) if issuer else httpx.Response(404)

    def count(self, suffix: str = "") -> int:
        return sum(n for url, n in self.seen.items() if url.endswith(suffix))


def moved(request: httpx.Request, path: str) -> httpx.Request:
    url = request.url.copy_with(path=path)
    return httpx.Request(request.method, url, headers=request.headers, content=request.content)


class Paths(LocalIssuer):
    """A LocalIssuer at a URL with a path (Keycloak's /realms/x): it serves under the path."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        prefix = httpx.URL(self.issuer).path.rstrip("/")
        path = request.url.path.removeprefix(prefix)
        return super().handle(moved(request, path))

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "jwks_uri": f"{self.issuer}/jwks"}


@pytest.fixture
def issuers(clock: FrozenClock) -> dict[str, LocalIssuer]:
    return {
        A: LocalIssuer(A, AUDIENCE, algorithms=("ES256",), clock=clock.time),
        B: Paths(B, AUDIENCE, algorithms=("ES256",), clock=clock.time),
        C: LocalIssuer(C, AUDIENCE, algorithms=("ES256",), clock=clock.time),
    }


@pytest.fixture
def router(issuers: dict[str, LocalIssuer]) -> Router:
    return Router(*issuers.values())


@pytest.fixture
def several(make_validator: ValidatorFactory, router: Router) -> ValidatorFactory:
    def make(**options: Any) -> TokenValidator:
        return make_validator(**{"issuer": [A, B], "transport": router, **options})

    return make


async def test_one_validator_accepts_each_configured_issuer(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer], router: Router
) -> None:
    validator = several()
    for name in (A, B, A, B):
        token = issuers[name].token(sub=f"user-of-{name}")
        assert (await validator.validate(token)).subject == f"user-of-{name}"
    # Each issuer's metadata and key set, once each.
    assert router.seen == {
        f"{A}/.well-known/openid-configuration": 1,
        f"{A}/jwks": 1,
        f"{B}/.well-known/openid-configuration": 1,
        f"{B}/jwks": 1,
    }


async def test_an_unconfigured_issuer_is_refused_before_any_fetch(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer], router: Router
) -> None:
    validator = several()
    for token in (
        issuers[C].token(),  # a real issuer, not ours
        issuers[A].token(iss=A + "/"),  # a lookalike of ours
        issuers[A].token(iss=None),
        issuers[A].token(iss=[A]),
    ):
        await refused(validator, token)
    assert router.count() == 0  # cold, and it stays cold: not even a discovery


async def test_a_key_of_one_issuer_never_verifies_a_token_naming_another(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer], router: Router, clock: FrozenClock
) -> None:
    validator = several()
    a_key = issuers[A].keys[0]
    await validator.validate(issuers[A].token())
    await validator.validate(issuers[B].token())
    # Signed by A's key (A's kid), naming B: B's key set has no such kid; A's is not asked.
    forged = issuers[B].token(key=a_key)
    await refused(validator, forged, Reason.UNKNOWN_KID)
    # B publishes a key under A's kid: the kid now selects B's key, which A's signature fails.
    impostor = SigningKey("ES256", kid=a_key.kid)
    issuers[B].published.append(impostor.jwk)
    await refused(validator, issuers[B].token(key=a_key), Reason.UNKNOWN_KID)  # window full
    clock.advance(30)
    await refused(validator, issuers[B].token(key=a_key), Reason.BAD_SIGNATURE)
    assert (router.count(f"{A}/jwks"), router.count(f"{B}/jwks")) == (1, 3)


async def test_issuers_naming_one_jwks_uri_share_one_key_set(
    make_validator: ValidatorFactory, issuers: dict[str, LocalIssuer], router: Router
) -> None:
    shared = issuers[A]  # both issuers' tokens are signed by A's keys, published at A's URL
    validator = make_validator(issuer=[A, C], jwks_uri=f"{A}/jwks", transport=router)
    assert len(validator._sources.key_sets) == 1
    tokens = [shared.token(iss=name) for name in (A, C, A, C)]
    results = await asyncio.gather(*(validator.validate(token) for token in tokens))
    assert [token.claims["iss"] for token in results] == [A, C, A, C]
    assert router.seen == {f"{A}/jwks": 1}  # no discovery, one key set


async def test_a_flood_naming_one_issuer_costs_only_its_key_set(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer], router: Router, clock: FrozenClock
) -> None:
    validator = several()
    await validator.validate(issuers[A].token())
    await validator.validate(issuers[B].token())
    stranger = SigningKey("ES256", kid="stranger")
    for burst in range(3):
        flood = [
            stranger.sign(
                {"alg": "ES256", "typ": "at+jwt", "kid": f"k-{burst}-{i}"}, issuers[B].claims()
            )
            for i in range(100)
        ]
        outcomes = await asyncio.gather(
            *(validator.validate(token) for token in flood), return_exceptions=True
        )
        assert {getattr(o, "reason", None) for o in outcomes} == {Reason.UNKNOWN_KID}
        clock.advance(10)
    assert router.count(f"{B}/jwks") == 2  # the first fetch and one refetch in 30 s
    assert router.count(f"{A}/jwks") == 1  # untouched
    assert (await validator.validate(issuers[A].token())).subject == "user-1"


async def test_each_issuer_has_its_own_mix_up_check(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer], caplog: pytest.LogCaptureFixture
) -> None:
    issuers[B].metadata = lambda: {"issuer": C, "jwks_uri": f"{C}/jwks"}  # type: ignore[method-assign]
    validator = several()
    await refused(validator, issuers[B].token(), Reason.KEYS_UNAVAILABLE)
    assert (await validator.validate(issuers[A].token())).subject == "user-1"
    assert any("issuer_mismatch" in record.getMessage() for record in caplog.records)


async def test_check_names_the_issuer_whose_key_set_failed(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer]
) -> None:
    issuers[B].published = []  # a key set with no usable key
    with pytest.raises(Exception, match=r"the key set of https://b\.test/realms/orders"):
        await several().check()


async def test_repr_and_resource_metadata_name_every_issuer(several: ValidatorFactory) -> None:
    validator = several()
    assert repr(validator) == f"TokenValidator(issuer={[A, B]!r}, audience=({AUDIENCE!r},))"


# --- templates: Entra multi-tenant ---------------------------------------------------------


@pytest.fixture
def login(clock: FrozenClock) -> LocalIssuer:
    """Entra's login host: one key set for every tenant, at /common/discovery/v2.0/keys."""
    issuer = LocalIssuer("https://login.test", AUDIENCE, algorithms=("RS256",), clock=clock.time)
    handle = issuer.handle

    def keys_at_entras_path(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/common/discovery/v2.0/keys":
            request = moved(request, "/jwks")
        return handle(request)

    issuer.handle = keys_at_entras_path  # type: ignore[method-assign]
    return issuer


def tenant_token(login: LocalIssuer, tid: str, **claims: Any) -> str:
    iss = TEMPLATE.replace("{tenantid}", tid)
    return login.token(header={"typ": "JWT"}, iss=iss, tid=tid, **claims)


@pytest.fixture
def entra(make_validator: ValidatorFactory, login: LocalIssuer) -> ValidatorFactory:
    def make(**options: Any) -> TokenValidator:
        return make_validator(
            **{
                "issuer": TEMPLATE,
                "jwks_uri": "https://login.test/common/discovery/v2.0/keys",
                "profile": "jwt",
                "transport": Router(login),
                **options,
            }
        )

    return make


async def test_tenants_of_the_allow_list_share_one_key_set(
    entra: ValidatorFactory, login: LocalIssuer
) -> None:
    validator = entra(tenants=[CONTOSO, FABRIKAM])
    for tid in (CONTOSO, FABRIKAM):
        token = await validator.validate(tenant_token(login, tid))
        assert token.claims["iss"] == f"https://login.test/{tid}/v2.0"
    assert login.requests == {"/jwks": 1}


@pytest.mark.parametrize(
    "claims",
    [
        {"tid": "00000000-1111-2222-3333-444444444444"},  # not on the list
        {"iss": f"https://login.test/{CONTOSO}/v2.0", "tid": FABRIKAM},  # tid is not iss's
        {"iss": "https://login.test/organizations/v2.0", "tid": "organizations"},
        {"iss": f"https://login.test/{CONTOSO}/v2.0", "tid": None},
        {"iss": f"https://login.test/{CONTOSO}/v2.0/", "tid": CONTOSO},
    ],
    ids=["other-tenant", "tid-not-iss", "not-a-guid", "no-tid", "trailing-slash"],
)
async def test_hostile_tenants_are_refused_before_any_fetch(
    entra: ValidatorFactory, login: LocalIssuer, claims: dict[str, Any]
) -> None:
    validator = entra(tenants=[CONTOSO])
    iss = claims.pop("iss", f"https://login.test/{claims['tid']}/v2.0")
    token = login.token(header={"typ": "JWT"}, iss=iss, **claims)
    await refused(validator, token, Reason.ISSUER_MISMATCH)
    assert login.requests == {}


async def test_any_tenant_accepts_each_tenant_and_still_compares_iss_exactly(
    entra: ValidatorFactory, login: LocalIssuer
) -> None:
    validator = entra(any_tenant=True)
    stranger = "00000000-1111-2222-3333-444444444444"
    assert (await validator.validate(tenant_token(login, stranger))).claims["tid"] == stranger
    await refused(
        validator,
        login.token(header={"typ": "JWT"}, iss=f"https://login.test/{stranger}/v2.0", tid=CONTOSO),
        Reason.ISSUER_MISMATCH,
    )


async def test_a_template_has_no_metadata(entra: ValidatorFactory) -> None:
    validator = entra(any_tenant=True)
    with pytest.raises(Exception, match="is a template: it has no metadata"):
        await validator.metadata()


# --- bounded state, introspection ---------------------------------------------------------


async def test_state_is_bounded_by_configuration_whatever_tokens_arrive(
    entra: ValidatorFactory, login: LocalIssuer
) -> None:
    validator = entra(any_tenant=True)
    before = (len(validator._sources.key_sets), len(validator._sources.by_issuer))
    for n in range(300):
        tid = f"{n:08x}-0000-0000-0000-000000000000"
        await validator.validate(tenant_token(login, tid))
        await refused(validator, login.token(iss=f"https://x{n}.test", tid=tid))
    assert (len(validator._sources.key_sets), len(validator._sources.by_issuer)) == before
    assert login.requests == {"/jwks": 1}


async def test_introspection_answers_name_one_of_the_issuers(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer], router: Router
) -> None:
    validator = several(client_id="rs", client_secret="secret")
    introspector = issuers[A]  # the first issuer's metadata names the endpoint
    ok = introspector.opaque_token(iss=B)
    assert (await validator.validate(ok)).claims["iss"] == B
    await refused(validator, introspector.opaque_token(iss=C), Reason.ISSUER_MISMATCH)
    assert router.count(f"{B}/.well-known/openid-configuration") == 0


def test_introspection_needs_an_endpoint_when_no_issuer_has_metadata() -> None:
    with pytest.raises(Exception, match="introspection_endpoint is not set"):
        TokenValidator(
            issuer=TEMPLATE,
            audience=AUDIENCE,
            jwks_uri="https://login.test/keys",
            any_tenant=True,
            client_id="rs",
            client_secret="s",
        )


async def test_one_issuer_refuses_a_foreign_iss_without_a_refetch(
    make_validator: ValidatorFactory, issuers: dict[str, LocalIssuer], router: Router
) -> None:
    validator = make_validator(issuer=A, transport=router)
    await validator.validate(issuers[A].token())
    unknown_kid_and_foreign = issuers[C].token()
    await refused(validator, unknown_kid_and_foreign, Reason.ISSUER_MISMATCH)
    assert router.count("/jwks") == 1


def _names(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    return (record.getMessage() for record in caplog.records if record.levelno >= logging.INFO)


async def test_a_misconfigured_issuer_list_is_explained_once(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oauth_shield")
    validator = several()
    for _ in range(3):
        with pytest.raises(InvalidTokenError):
            await validator.validate(issuers[C].token())
    warnings = [line for line in _names(caplog) if "none of the issuers" in line]
    assert len(warnings) == 1
    assert "before its signature was checked" in warnings[0]


# --- RFC 9728 metadata -------------------------------------------------------------------------


def resource_servers(**options: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    validator = TokenValidator(audience="https://api.test", **options)
    return BearerAuthMiddleware(app, validator=validator, resource=True).guard.resource


def test_resource_metadata_names_every_issuer_known_in_full() -> None:
    listed = resource_servers(issuer=[A, B])
    assert listed is not None and listed.authorization_servers == (A, B)
    tenants = resource_servers(
        issuer=[A, TEMPLATE], jwks_uri={TEMPLATE: "https://login.test/keys"}, tenants=[CONTOSO]
    )
    assert tenants.authorization_servers == (A, f"https://login.test/{CONTOSO}/v2.0")
    with pytest.raises(ConfigurationError, match="authorization_servers must be given"):
        resource_servers(issuer=TEMPLATE, jwks_uri="https://login.test/keys", any_tenant=True)


async def test_health_reports_every_key_set_and_fails_only_when_none_serves(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer]
) -> None:
    validator = several()
    issuers[B].fault = lambda request: httpx.Response(503)
    await validator.start()
    for _ in range(50):  # the background fetches
        if all(keys.fetches for keys in validator._sources.key_sets):
            break
        await asyncio.sleep(0.01)
    health = await validator.health()
    assert health["status"] == "degraded"  # A's tokens are still served
    assert [(k["issuer"], k["state"]) for k in health["key_sets"]] == [(A, "fresh"), (B, "none")]
    issuers[A].fault = issuers[B].fault
    both_down = several()
    await both_down.start()
    for _ in range(50):
        if all(keys.fetches for keys in both_down._sources.key_sets):
            break
        await asyncio.sleep(0.01)
    assert (await both_down.health())["status"] == "failing"  # no token can be checked


async def test_an_outage_event_names_the_issuer_whose_key_set_failed(
    several: ValidatorFactory, issuers: dict[str, LocalIssuer]
) -> None:
    from oauth_shield import events

    validator = several()
    told: list[events.Event] = []
    validator.subscribe(told.append)
    issuers[B].fault = lambda request: httpx.Response(500)
    with pytest.raises(TemporarilyUnavailableError):
        await validator.validate(issuers[B].token())
    outages = [event for event in told if isinstance(event, events.IssuerUnavailable)]
    assert outages and {event.issuer for event in outages} == {B}  # not the first one, A
