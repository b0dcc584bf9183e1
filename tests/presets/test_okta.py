"""``providers.okta``, with Okta's own shapes.

Where the shapes come from: Okta's developer docs "Tokens: access token" and "Validate access
tokens": a custom authorization server's issuer ``https://<org>/oauth2/<id>``, its metadata
at ``/oauth2/<id>/.well-known/openid-configuration`` and keys at ``/oauth2/<id>/v1/keys``;
the header ``{"kid": ..., "alg": "RS256"}`` (no ``typ``); the payload ``ver`` 1, ``jti``
``AT....``, ``cid`` (the client), ``uid``, ``scp`` (an array), ``aud`` ``api://default``.
ID tokens carry the client as ``aud``, ``amr``, ``idp``, ``nonce``, and no ``scp``.
"""

from __future__ import annotations

from typing import Any

import pytest

from oauth_shield import ConfigurationError, Reason, providers
from oauth_shield.testing import SigningKey

from .conftest import Build, Site, public, reason_for, times

ORG = "https://example.okta.com"
ISSUER = f"{ORG}/oauth2/default"
CLIENT = "0oa1b2c3d4E5f6G7h8i9"


@pytest.fixture
def site(rsa_key: SigningKey) -> Site:
    return Site(
        {
            f"{ISSUER}/.well-known/openid-configuration": {
                "issuer": ISSUER,
                "jwks_uri": f"{ISSUER}/v1/keys",
                "introspection_endpoint": f"{ISSUER}/v1/introspect",
            },
            f"{ISSUER}/v1/keys": {"keys": [public(rsa_key)]},
        }
    )


def token(key: SigningKey, **changes: Any) -> str:
    payload = {
        "ver": 1,
        "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE",
        "iss": ISSUER,
        "aud": "api://default",
        **times(nbf=None),
        "cid": CLIENT,
        "uid": "00ujmkLgOP5fgTVL10g3",
        "scp": ["openid", "orders:read"],
        "auth_time": 1_799_999_000,
        "sub": "alice@example.com",
        **changes,
    }
    payload = {name: value for name, value in payload.items() if value is not None}
    return key.sign({"kid": key.kid, "alg": "RS256"}, payload)


async def test_scp_grants_and_cid_is_the_client(
    build: Build, site: Site, rsa_key: SigningKey
) -> None:
    validator = build(providers.okta(ORG, audience="api://default"), site)
    accepted = await validator.validate(token(rsa_key), "orders:read")
    assert accepted.scopes == {"openid", "orders:read"}
    assert accepted.client_id == CLIENT


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        # An ID token presented to the API, even one whose aud were the API's: no scp.
        ({"aud": "api://default", "scp": None, "cid": None, "amr": ["pwd"], "nonce": "n"},
         Reason.MISSING_CLAIM),
        ({"aud": CLIENT, "scp": None}, Reason.AUDIENCE_MISMATCH),
        ({"scp": "openid orders:read"}, None),  # a string reads too
        ({"scp": [["orders:read"]]}, Reason.INVALID_CLAIM),
        ({"iss": ORG}, Reason.ISSUER_MISMATCH),  # the org authorization server's tokens
        ({"cid": ""}, Reason.INVALID_CLAIM),
    ],
    ids=lambda value: repr(value)[:40],
)  # fmt: skip
async def test_refused(
    build: Build, site: Site, rsa_key: SigningKey, changes: dict[str, Any], reason: Reason | None
) -> None:
    validator = build(providers.okta(ORG, audience="api://default"), site)
    assert await reason_for(validator, token(rsa_key, **changes)) is reason


async def test_a_named_authorization_server(build: Build, rsa_key: SigningKey) -> None:
    issuer = f"{ORG}/oauth2/aus8r5c3vFNi6eFHa0h7"
    site = Site(
        {
            f"{issuer}/.well-known/openid-configuration": {
                "issuer": issuer,
                "jwks_uri": f"{issuer}/v1/keys",
            },
            f"{issuer}/v1/keys": {"keys": [public(rsa_key)]},
        }
    )
    options = providers.okta(ORG + "/", authorization_server="aus8r5c3vFNi6eFHa0h7", audience="x")
    validator = build(options, site)
    assert await reason_for(validator, token(rsa_key, iss=issuer, aud="x")) is None


@pytest.mark.parametrize("server", ["", "a/b", "a b", None])
def test_bad_authorization_servers_are_named(server: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        providers.okta(ORG, authorization_server=server, audience="api://default")
    assert raised.value.field == "authorization_server"
