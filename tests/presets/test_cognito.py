"""``providers.cognito``, with Amazon Cognito's own shapes.

Where the shapes come from: the Cognito developer guide, "Understanding the access token" and
"Understanding the identity (ID) token" (their example payloads: an access token has
``client_id``, ``token_use`` ``access``, ``scope``, ``cognito:groups``, ``username``, and no
``aud``; an ID token has ``aud`` the app client and ``token_use`` ``id``), "Verifying a JSON
Web Token" (issuer ``https://cognito-idp.<region>.amazonaws.com/<userPoolId>``, keys at
``/.well-known/jwks.json``), and aws-jwt-verify's ``CognitoJwtVerifier({tokenUse,
clientId})``. Headers are ``{"kid": ..., "alg": "RS256"}``.
"""

from __future__ import annotations

from typing import Any

import pytest

from oauth_shield import ConfigurationError, Reason, providers
from oauth_shield.testing import SigningKey

from .conftest import Build, Site, public, reason_for, times

REGION, POOL = "us-east-1", "us-east-1_EXAMPLE"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"
CLIENT = "1example23456789"


@pytest.fixture
def site(rsa_key: SigningKey) -> Site:
    return Site(
        {
            f"{ISSUER}/.well-known/openid-configuration": {
                "issuer": ISSUER,
                "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
            },
            f"{ISSUER}/.well-known/jwks.json": {"keys": [public(rsa_key)]},
        }
    )


def access(key: SigningKey, **changes: Any) -> str:
    payload = {
        "sub": "aaaaaaaa-bbbb-cccc-dddd-example",
        "cognito:groups": ["admin"],
        "iss": ISSUER,
        "version": 2,
        "client_id": CLIENT,
        "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin phone openid profile email",
        "auth_time": 1_799_999_000,
        **times(nbf=None),
        "jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "username": "my-example-user",
        **changes,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return key.sign({"kid": key.kid, "alg": "RS256"}, payload)


def identity(key: SigningKey) -> str:
    return access(
        key,
        aud=CLIENT,
        token_use="id",
        client_id=None,
        scope=None,
        email="user@example.com",
        **{"cognito:username": "my-example-user"},
    )


async def test_an_access_token_for_an_allowed_client(
    build: Build, site: Site, rsa_key: SigningKey
) -> None:
    validator = build(providers.cognito(REGION, POOL, client_ids=[CLIENT]), site)
    accepted = await validator.validate(access(rsa_key), ["admin", "openid"])
    assert accepted.client_id == CLIENT
    assert "aws.cognito.signin.user.admin" in accepted.scopes
    assert validator.settings.audience == ()


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (identity, Reason.CLAIM_MISMATCH),  # token_use id (and no client_id): never accepted
        (lambda key: access(key, client_id="9other987654321"), Reason.CLIENT_NOT_ALLOWED),
        (lambda key: access(key, client_id=None), Reason.MISSING_CLAIM),
        (lambda key: access(key, token_use="Access"), Reason.CLAIM_MISMATCH),
        (lambda key: access(key, **{"cognito:groups": "admin"}), None),
        (lambda key: access(key, **{"cognito:groups": [7]}), Reason.INVALID_CLAIM),
        (lambda key: access(key, iss=ISSUER.replace(POOL, "us-east-1_OTHER")),
         Reason.ISSUER_MISMATCH),
    ],
    ids=["id-token", "other-client", "no-client", "token-use-case", "groups-string",
         "groups-not-strings", "other-pool"],
)  # fmt: skip
async def test_refused(
    build: Build, site: Site, rsa_key: SigningKey, token: Any, reason: Any
) -> None:
    validator = build(providers.cognito(REGION, POOL, client_ids=[CLIENT, "2second"]), site)
    assert await reason_for(validator, token(rsa_key)) is reason


@pytest.mark.parametrize(
    ("region", "pool", "clients", "field"),
    [
        ("us-east", POOL, [CLIENT], "region"),
        (REGION, "eu-west-1_EXAMPLE", [CLIENT], "user_pool_id"),
        (REGION, POOL, [], "client_ids"),
        (REGION, POOL, CLIENT, "client_ids"),  # a string is not a list of ids
    ],
)
def test_bad_arguments_are_named(region: str, pool: str, clients: Any, field: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        providers.cognito(region, pool, client_ids=clients)
    assert raised.value.field == field
