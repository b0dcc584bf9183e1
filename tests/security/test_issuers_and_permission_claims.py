"""Hostile tokens against a validator with several issuers, a tenant template and provider
claim rules (SECURITY-CASES classes 3 and 7, as issue 13 extends them): a wrong ``tid``, the
``iss`` of one configured issuer over another's key, permission and client claims of the
wrong type, deep nesting on a claim path, huge arrays. Each is refused with the right
reason, says nothing of the token, and a valid token is accepted right after."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from oauth_shield import Reason, TokenValidator
from oauth_shield.testing import LocalIssuer
from tests.conftest import AUDIENCE, ISSUER, FrozenClock, ValidatorFactory, refused

OTHER = "https://b.test"
TEMPLATE = "https://login.test/{tenantid}/v2.0"
CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
STRANGER = "00000000-1111-2222-3333-444444444444"


@pytest.fixture
def others(clock: FrozenClock) -> dict[str, LocalIssuer]:
    return {
        OTHER: LocalIssuer(OTHER, AUDIENCE, algorithms=("ES256",), clock=clock.time),
        "https://login.test": LocalIssuer(
            "https://login.test", AUDIENCE, algorithms=("ES256",), clock=clock.time
        ),
    }


@pytest.fixture
def strict(
    make_validator: ValidatorFactory, issuer: LocalIssuer, others: dict[str, LocalIssuer]
) -> TokenValidator:
    by_host = {httpx.URL(i.issuer).host: i for i in [issuer, *others.values()]}
    return make_validator(
        issuer=[ISSUER, OTHER, TEMPLATE],
        jwks_uri={TEMPLATE: "https://login.test/jwks"},
        tenants=[CONTOSO],
        scope_claims=["scope", "/realm_access/roles"],
        required_claims={"token_use": "access"},
        allowed_clients=["client-1"],
        transport=httpx.MockTransport(lambda request: by_host[request.url.host].handle(request)),
    )


@pytest.fixture
def check(strict: TokenValidator, issuer: LocalIssuer, all_logs: pytest.LogCaptureFixture) -> Any:
    async def refuse(token: str, reason: Reason, scopes: Any = None) -> None:
        await refused(strict, token, reason, scopes=scopes, caplog=all_logs)
        valid = issuer.token(token_use="access", realm_access={"roles": ["read"]})
        assert (await strict.validate(valid, ["read"])).subject == "user-1"

    return refuse


def good(**claims: Any) -> dict[str, Any]:
    return {"token_use": "access", **claims}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"tid": STRANGER, "iss": f"https://login.test/{STRANGER}/v2.0"}, Reason.ISSUER_MISMATCH),
        ({"tid": STRANGER, "iss": f"https://login.test/{CONTOSO}/v2.0"}, Reason.ISSUER_MISMATCH),
        ({"tid": CONTOSO, "iss": f"https://login.test/{STRANGER}/v2.0"}, Reason.ISSUER_MISMATCH),
        ({"tid": "../" + CONTOSO, "iss": f"https://login.test/../{CONTOSO}/v2.0"},
         Reason.ISSUER_MISMATCH),
        ({"tid": CONTOSO + "\n", "iss": f"https://login.test/{CONTOSO}\n/v2.0"},
         Reason.ISSUER_MISMATCH),
        ({"tid": "a" * 2500, "iss": "https://login.test/" + "a" * 2500 + "/v2.0"},
         Reason.ISSUER_MISMATCH),
        ({"tid": 7, "iss": "https://login.test/7/v2.0"}, Reason.ISSUER_MISMATCH),
        ({"iss": TEMPLATE, "tid": "{tenantid}"}, Reason.ISSUER_MISMATCH),
    ],
    ids=["stranger", "tid-not-iss", "iss-not-tid", "path", "newline", "huge", "number",
         "placeholder"],
)  # fmt: skip
async def test_hostile_tenants(
    check: Any, others: dict[str, LocalIssuer], claims: dict[str, Any], reason: Reason
) -> None:
    await check(others["https://login.test"].token(**good(**claims)), reason)


async def test_the_iss_of_one_issuer_over_the_key_of_another(
    check: Any, issuer: LocalIssuer, others: dict[str, LocalIssuer]
) -> None:
    # Signed by our first issuer's key, naming the second: its key set has no such key.
    await check(issuer.token(**good(iss=OTHER)), Reason.UNKNOWN_KID)
    # Signed by the second's key, naming the first.
    await check(others[OTHER].token(**good(iss=ISSUER)), Reason.UNKNOWN_KID)
    # A tenant's token signed by a configured issuer's key.
    tenant = good(iss=f"https://login.test/{CONTOSO}/v2.0", tid=CONTOSO)
    await check(issuer.token(**tenant), Reason.UNKNOWN_KID)


def nested(depth: int) -> Any:
    value: Any = ["read"]
    for _ in range(depth):
        value = {"roles": value}
    return value


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"realm_access": {"roles": 1}}, Reason.INVALID_CLAIM),
        ({"realm_access": {"roles": {"read": True}}}, Reason.INVALID_CLAIM),
        ({"realm_access": {"roles": ["read", None]}}, Reason.INVALID_CLAIM),
        ({"realm_access": "read"}, Reason.INVALID_CLAIM),
        ({"realm_access": ["read"]}, Reason.INVALID_CLAIM),
        ({"realm_access": nested(25)}, Reason.INVALID_CLAIM),  # roles is an object, deep down
        ({"scope": ["read"], "realm_access": {"roles": [["read"]]}}, Reason.INVALID_CLAIM),
        # Huge but well-formed (just under the size limit): read once, grants nothing asked.
        ({"realm_access": {"roles": [f"r{i}" for i in range(800)]}}, Reason.INSUFFICIENT_SCOPE),
        ({"token_use": True}, Reason.CLAIM_MISMATCH),
        ({"token_use": ["access"]}, Reason.CLAIM_MISMATCH),
        ({"token_use": "access "}, Reason.CLAIM_MISMATCH),
        ({"token_use": None}, Reason.CLAIM_MISMATCH),
        ({"client_id": ["client-1"]}, Reason.INVALID_CLAIM),
        ({"client_id": "client-1\u0000"}, Reason.CLIENT_NOT_ALLOWED),
        ({"client_id": "CLIENT-1"}, Reason.CLIENT_NOT_ALLOWED),
    ],
    ids=lambda value: repr(value)[:40],
)  # fmt: skip
async def test_hostile_claims(
    check: Any, issuer: LocalIssuer, claims: dict[str, Any], reason: Reason
) -> None:
    base = {"token_use": "access", "scope": None, **claims}
    if base["token_use"] is None:
        base.pop("token_use")
    await check(issuer.token(**base), reason, scopes=["read"])
