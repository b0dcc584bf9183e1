"""``providers.entra``, with Microsoft Entra ID's own shapes.

Where the shapes come from: Microsoft identity platform docs, "Access token claims
reference" (v1.0 and v2.0: ``iss`` ``https://sts.windows.net/{tid}/`` and
``https://login.microsoftonline.com/{tid}/v2.0``; ``ver``; ``azp``/``azpacr`` (v2) and
``appid``/``appidacr`` (v1); ``scp`` a space-separated string, ``roles`` an array; ``tid``,
``oid``, ``uti``), "ID token claims reference" (ID tokens: the client as ``aud``, ``nonce``,
no ``azpacr``; ``roles`` when app roles are assigned), and the published metadata and keys:
``https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration``
names the issuer ``https://login.microsoftonline.com/{tenantid}/v2.0``; the keys at
``/common/discovery/v2.0/keys`` carry ``x5t``, ``x5c`` and ``issuer`` but no ``alg``. Token
headers are ``{"typ": "JWT", "alg": "RS256", "kid": ..., "x5t": ...}``.
"""

from __future__ import annotations

from typing import Any

import pytest

from oauth_shield import ConfigurationError, Reason, providers
from oauth_shield.testing import SigningKey

from .conftest import Build, Site, public, reason_for, times

LOGIN = "https://login.microsoftonline.com"
CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FABRIKAM = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
STRANGER = "00000000-1111-2222-3333-444444444444"
API = "6e74172b-be56-4843-9ff4-e66a39bb12e3"  # the API's application (client) id
CALLER = "2d4d11a2-f814-46a7-890a-274a72a7309e"


def keys(key: SigningKey) -> dict[str, Any]:
    entry = public(key, alg=None, x5t=key.kid, x5c=["MIIC/TCCAeWgAwIBAgIQ"])
    entry |= {"issuer": f"{LOGIN}/{{tenantid}}/v2.0", "cloud_instance_name": "microsoftonline.com"}
    return {"keys": [entry]}


@pytest.fixture
def site(rsa_key: SigningKey) -> Site:
    return Site(
        {
            f"{LOGIN}/{tenant}/discovery/{path}": keys(rsa_key)
            for tenant in ("common", "organizations", CONTOSO)
            for path in ("v2.0/keys", "keys")
        }
    )


def v2(key: SigningKey, tid: str = CONTOSO, **changes: Any) -> str:
    payload = {
        "aud": API,
        "iss": f"{LOGIN}/{tid}/v2.0",
        **times(),
        "aio": "AXQAi/8TAAAA",
        "azp": CALLER,
        "azpacr": "0",
        "name": "Abe Lincoln",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "preferred_username": "abeli@contoso.com",
        "rh": "I",
        "scp": "access_as_user Orders.Read",
        "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
        "tid": tid,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "2.0",
        **changes,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return key.sign({"typ": "JWT", "alg": "RS256", "kid": key.kid, "x5t": key.kid}, payload)


def v1(key: SigningKey, tid: str = CONTOSO, **changes: Any) -> str:
    payload = {
        "aud": f"api://{API}",
        "iss": f"https://sts.windows.net/{tid}/",
        **times(),
        "appid": CALLER,
        "appidacr": "1",
        "idp": f"https://sts.windows.net/{tid}/",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "roles": ["Orders.Read.All"],
        "sub": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "tid": tid,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "1.0",
        **changes,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return key.sign({"typ": "JWT", "alg": "RS256", "kid": key.kid, "x5t": key.kid}, payload)


def id_token(key: SigningKey, **changes: Any) -> str:
    """A v2 ID token for the API's own client, with an app role assigned to the user."""
    claims = {"aud": API, "nonce": "123523", "azp": None, "azpacr": None, "scp": None}
    return v2(key, **{**claims, "roles": ["Orders.Admin"], **changes})


async def test_a_single_tenant_api(build: Build, site: Site, rsa_key: SigningKey) -> None:
    validator = build(providers.entra(CONTOSO, audience=API), site)
    delegated = await validator.validate(v2(rsa_key), "Orders.Read")
    assert delegated.scopes == {"access_as_user", "Orders.Read"}
    assert delegated.client_id == CALLER
    app = v2(rsa_key, scp=None, roles=["Orders.Read.All"], azpacr="1", idtyp="app")
    assert (await validator.validate(app, "Orders.Read.All")).scopes == {"Orders.Read.All"}
    assert site.seen == {f"{LOGIN}/{CONTOSO}/discovery/v2.0/keys": 1}  # keys without alg


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda key: id_token(key), Reason.CLAIM_MISMATCH),  # no azpacr: never an access token
        (lambda key: id_token(key, roles=None), Reason.CLAIM_MISMATCH),
        (lambda key: v2(key, scp=None), Reason.MISSING_CLAIM),  # neither scp nor roles
        (lambda key: v2(key, ver="1.0"), Reason.CLAIM_MISMATCH),
        (lambda key: v2(key, azpacr="3"), Reason.CLAIM_MISMATCH),
        (lambda key: v2(key, aud=f"api://{API}"), Reason.AUDIENCE_MISMATCH),
        (lambda key: v2(key, tid=FABRIKAM), Reason.ISSUER_MISMATCH),
        (lambda key: v1(key), Reason.ISSUER_MISMATCH),  # a v1 token for a v2 API
        (lambda key: v2(key, scp=["Orders.Read"]), None),  # an array reads as well
        (lambda key: v2(key, roles="Orders.Read.All"), None),
        (lambda key: v2(key, roles=[1]), Reason.INVALID_CLAIM),
    ],
    ids=["id-token", "id-token-no-roles", "no-permission", "v1-ver", "azpacr", "app-id-uri",
         "other-tenant", "v1-token", "scp-array", "roles-string", "roles-not-strings"],
)  # fmt: skip
async def test_refused(
    build: Build, site: Site, rsa_key: SigningKey, token: Any, reason: Any
) -> None:
    validator = build(providers.entra(CONTOSO, audience=API), site)
    assert await reason_for(validator, token(rsa_key)) is reason


async def test_v1_tokens(build: Build, site: Site, rsa_key: SigningKey) -> None:
    validator = build(providers.entra(CONTOSO, audience=f"api://{API}", version=1), site)
    accepted = await validator.validate(v1(rsa_key), "Orders.Read.All")
    assert accepted.client_id == CALLER  # appid
    assert await reason_for(validator, v2(rsa_key, aud=f"api://{API}")) is Reason.ISSUER_MISMATCH
    assert site.seen == {f"{LOGIN}/{CONTOSO}/discovery/keys": 1}


async def test_a_multi_tenant_api_with_an_allow_list(
    build: Build, site: Site, rsa_key: SigningKey
) -> None:
    options = providers.entra("organizations", audience=API, tenants=[CONTOSO, FABRIKAM])
    validator = build(options, site)
    for tid in (CONTOSO, FABRIKAM):
        assert (await validator.validate(v2(rsa_key, tid=tid))).claims["tid"] == tid
    assert await reason_for(validator, v2(rsa_key, tid=STRANGER)) is Reason.ISSUER_MISMATCH
    spoofed = v2(rsa_key, tid=CONTOSO, iss=f"{LOGIN}/{STRANGER}/v2.0")
    assert await reason_for(validator, spoofed) is Reason.ISSUER_MISMATCH
    assert site.seen == {f"{LOGIN}/organizations/discovery/v2.0/keys": 1}


async def test_any_tenant(build: Build, site: Site, rsa_key: SigningKey) -> None:
    validator = build(providers.entra("common", audience=API, any_tenant=True), site)
    assert (await validator.validate(v2(rsa_key, tid=STRANGER))).claims["tid"] == STRANGER


@pytest.mark.parametrize(
    ("tenant", "more", "field"),
    [
        ("contoso.onmicrosoft.com", {}, "tenant"),
        ("consumers", {}, "tenant"),
        (CONTOSO, {"tenants": [FABRIKAM]}, "tenant"),
        (CONTOSO, {"any_tenant": True}, "tenant"),
        ("organizations", {"version": 3}, "version"),
        ("organizations", {}, "tenants"),  # multi-tenant: which tenants? (from the validator)
        ("organizations", {"tenants": []}, "tenants"),
    ],
)
def test_bad_arguments_are_named(tenant: str, more: dict[str, Any], field: str) -> None:
    from oauth_shield import TokenValidator

    with pytest.raises(ConfigurationError) as raised:
        TokenValidator(**providers.entra(tenant, audience=API, **more))
    assert raised.value.field == field
