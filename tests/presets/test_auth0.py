"""``providers.auth0``, with Auth0's own shapes.

Where the shapes come from: Auth0's docs "Access Token Profiles" (the ``Auth0`` and
``RFC 9068`` profiles: header ``typ`` ``JWT`` or ``at+jwt``; ``azp``, ``gty``; ``client_id``
and ``jti`` in RFC 9068 tokens), "Enable Role-Based Access Control for APIs" (``permissions``,
with "Add Permissions in the Access Token"), and a tenant's
``https://<domain>/.well-known/openid-configuration``: the issuer ends with ``/``, the key
set is ``/.well-known/jwks.json`` with ``x5c`` and ``x5t``. ID tokens have the client as
``aud``.
"""

from __future__ import annotations

from typing import Any

import pytest

from oauth_shield import ConfigurationError, Reason, providers
from oauth_shield.testing import SigningKey

from .conftest import Build, Site, public, reason_for, times

DOMAIN = "example.us.auth0.com"
ISSUER = f"https://{DOMAIN}/"
API = "https://api.example.com/orders"
CLIENT = "tqB5Mx8ZkqUZ3f0EjQmL7K2X1n9pA4sR"


@pytest.fixture
def site(rsa_key: SigningKey) -> Site:
    return Site(
        {
            f"https://{DOMAIN}/.well-known/openid-configuration": {
                "issuer": ISSUER,
                "jwks_uri": f"https://{DOMAIN}/.well-known/jwks.json",
                "token_endpoint": f"https://{DOMAIN}/oauth/token",
            },
            f"https://{DOMAIN}/.well-known/jwks.json": {
                "keys": [public(rsa_key, x5t="Zm9v", x5c=["MIIDHTCCAgWgAwIBAgIJ"])]
            },
        }
    )


def token(key: SigningKey, rfc9068: bool = False, **changes: Any) -> str:
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "auth0|65f0c1d2e3",
        "aud": [API, f"https://{DOMAIN}/userinfo"],
        **times(nbf=None),
        "scope": "openid profile read:orders",
        "azp": CLIENT,
        "permissions": ["read:orders", "write:orders"],
    }
    if rfc9068:
        payload |= {"client_id": CLIENT, "jti": "6a3e9f"}
    payload |= changes
    payload = {name: value for name, value in payload.items() if value is not None}
    typ = "at+jwt" if rfc9068 else "JWT"
    return key.sign({"alg": "RS256", "typ": typ, "kid": key.kid}, payload)


async def test_scope_and_permissions_grant(build: Build, site: Site, rsa_key: SigningKey) -> None:
    validator = build(providers.auth0(DOMAIN, audience=API), site)
    accepted = await validator.validate(token(rsa_key), ["read:orders", "write:orders"])
    assert accepted.scopes == {"openid", "profile", "read:orders", "write:orders"}
    assert accepted.client_id == CLIENT


async def test_a_client_credentials_token(build: Build, site: Site, rsa_key: SigningKey) -> None:
    validator = build(providers.auth0(f"https://{DOMAIN}/", audience=API), site)
    machine = token(
        rsa_key, sub=f"{CLIENT}@clients", aud=API, gty="client-credentials", permissions=None
    )
    assert (await validator.validate(machine, "read:orders")).subject == f"{CLIENT}@clients"


async def test_the_rfc9068_profile_keeps_every_rfc9068_rule(
    build: Build, site: Site, rsa_key: SigningKey
) -> None:
    validator = build(providers.auth0(DOMAIN, audience=API, rfc9068=True), site)
    assert validator.settings.profile == "rfc9068"
    assert await reason_for(validator, token(rsa_key, rfc9068=True), "write:orders") is None
    assert await reason_for(validator, token(rsa_key)) is Reason.WRONG_TYPE  # a JWT-typ token
    no_jti = token(rsa_key, rfc9068=True, jti=None)
    assert await reason_for(validator, no_jti) is Reason.MISSING_CLAIM


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": CLIENT, "nonce": "n-0S6"}, Reason.AUDIENCE_MISMATCH),  # an ID token
        ({"iss": f"https://{DOMAIN}"}, Reason.ISSUER_MISMATCH),  # without the slash
        ({"permissions": "read:orders write:orders"}, None),  # a string: space-separated
        ({"permissions": {"read:orders": True}}, Reason.INVALID_CLAIM),
        ({"azp": 42}, Reason.INVALID_CLAIM),
    ],
    ids=lambda value: repr(value)[:40],
)
async def test_refused(
    build: Build, site: Site, rsa_key: SigningKey, changes: dict[str, Any], reason: Reason | None
) -> None:
    validator = build(providers.auth0(DOMAIN, audience=API), site)
    assert await reason_for(validator, token(rsa_key, **changes)) is reason


@pytest.mark.parametrize("domain", ["", "https://", "example.auth0.com/path", "a b", 7])
def test_bad_domains_are_named(domain: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        providers.auth0(domain, audience=API)
    assert raised.value.field == "domain"
