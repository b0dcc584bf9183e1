"""``providers.keycloak``, with Keycloak's own shapes.

Where the shapes come from: Keycloak's server administration guide ("OpenID Connect
endpoints", "Audience support": the audience mapper), the realm's
``/realms/<realm>/.well-known/openid-configuration`` (``jwks_uri``
``.../protocol/openid-connect/certs``), and the tokens Keycloak 24-26 signs: header
``{"alg": "RS256", "typ": "JWT", "kid": ...}``; payload ``typ`` ``Bearer`` (access), ``ID``
(ID token); ``azp`` the client; ``realm_access.roles``, ``resource_access.<client>.roles``;
``aud`` ``account`` unless an audience mapper adds the API. The realm's key set also
publishes its encryption key (``"use": "enc"``, ``"alg": "RSA-OAEP"``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from oauth_shield import ConfigurationError, Reason, providers
from oauth_shield.testing import SigningKey

from .conftest import Build, Site, public, reason_for, times

BASE = "https://sso.example.com"
ISSUER = f"{BASE}/realms/orders"
CERTS = f"{ISSUER}/protocol/openid-connect/certs"


@pytest.fixture
def site(rsa_key: SigningKey, other_key: SigningKey) -> Site:
    encryption = public(other_key, use="enc", alg="RSA-OAEP", x5t="e30", x5c=["MIIC"])
    return Site(
        {
            f"{ISSUER}/.well-known/openid-configuration": {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
                "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
                "introspection_endpoint": f"{ISSUER}/protocol/openid-connect/token/introspect",
                "jwks_uri": CERTS,
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "HS256"],
            },
            CERTS: {"keys": [encryption, public(rsa_key, x5t="abc", x5c=["MIIC"])]},
        }
    )


def access_token(key: SigningKey, **changes: Any) -> str:
    payload = {
        **times(),
        "jti": "onrtac:0a6f7c3e",
        "iss": ISSUER,
        "aud": ["orders-api", "account"],
        "sub": "3f1e9c8a-5a38-4d2c-9d5e-2f0b7c1a9e11",
        "typ": "Bearer",
        "azp": "web-app",
        "sid": "6c8f0a",
        "acr": "1",
        "allowed-origins": ["https://app.example.com"],
        "realm_access": {"roles": ["default-roles-orders", "offline_access", "orders:read"]},
        "resource_access": {
            "orders-api": {"roles": ["approve"]},
            "account": {"roles": ["manage-account"]},
        },
        "scope": "openid email profile",
        "preferred_username": "alice",
        **changes,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return key.sign({"alg": "RS256", "typ": "JWT", "kid": key.kid}, payload)


async def test_an_access_token_grants_realm_and_client_roles(
    build: Build, site: Site, rsa_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.config")
    options = providers.keycloak(
        BASE, "orders", audience="orders-api", client_roles_of="orders-api"
    )
    validator = build(options, site)
    token = await validator.validate(access_token(rsa_key), ["orders:read", "approve"])
    assert token.scopes == {"default-roles-orders", "offline_access", "orders:read", "approve"}
    assert token.client_id == "web-app"  # azp
    assert "manage-account" not in token.scopes  # another client's roles grant nothing
    assert "openid" not in token.scopes  # Keycloak's client scopes are not roles
    assert caplog.records == []  # the preset's profile is no weakened default
    assert site.seen[CERTS] == 1


async def test_only_realm_roles_without_client_roles_of(
    build: Build, site: Site, rsa_key: SigningKey
) -> None:
    validator = build(providers.keycloak(BASE, "orders", audience="orders-api"), site)
    assert await reason_for(validator, access_token(rsa_key), ["approve"]) is (
        Reason.INSUFFICIENT_SCOPE
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"typ": "ID", "aud": "orders-api"}, Reason.CLAIM_MISMATCH),  # an ID token for the API
        ({"typ": "Refresh"}, Reason.CLAIM_MISMATCH),
        ({"typ": None}, Reason.CLAIM_MISMATCH),
        ({"aud": "account"}, Reason.AUDIENCE_MISMATCH),  # no audience mapper
        ({"iss": f"{BASE}/realms/other"}, Reason.ISSUER_MISMATCH),
        ({"iss": f"{BASE}/auth/realms/orders"}, Reason.ISSUER_MISMATCH),  # pre-17 path
        ({"realm_access": {"roles": [{"name": "orders:read"}]}}, Reason.INVALID_CLAIM),
        ({"realm_access": ["orders:read"]}, Reason.INVALID_CLAIM),
        ({"resource_access": {"orders-api": "approve"}}, Reason.INVALID_CLAIM),
        ({"azp": "mobile-app"}, Reason.CLIENT_NOT_ALLOWED),
    ],
    ids=lambda value: repr(value)[:40],
)
async def test_refused(
    build: Build, site: Site, rsa_key: SigningKey, changes: dict[str, Any], reason: Reason
) -> None:
    options = providers.keycloak(
        BASE, "orders", audience="orders-api", client_roles_of="orders-api"
    )
    validator = build(options, site, allowed_clients=["web-app"])
    assert await reason_for(validator, access_token(rsa_key, **changes)) is reason


async def test_the_encryption_key_is_never_a_verification_key(
    build: Build, site: Site, other_key: SigningKey
) -> None:
    validator = build(providers.keycloak(BASE, "orders", audience="orders-api"), site)
    assert await reason_for(validator, access_token(other_key)) is Reason.UNKNOWN_KID


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ((BASE, "orders/x"), "realm"),
        ((BASE, ""), "realm"),
        (("", "orders"), "base_url"),
        ((BASE, "orders", ""), "client_roles_of"),
    ],
)
def test_bad_arguments_are_named(arguments: tuple[str, ...], field: str) -> None:
    base, realm, *client = arguments
    more = {"client_roles_of": client[0]} if client else {}
    with pytest.raises(ConfigurationError) as raised:
        providers.keycloak(base, realm, audience="orders-api", **more)
    assert raised.value.field == field
