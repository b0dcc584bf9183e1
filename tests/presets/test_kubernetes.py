"""``providers.kubernetes``, with Kubernetes' own shapes.

Where the shapes come from: the Kubernetes docs "Managing Service Accounts" (bound
service-account tokens: ``aud``, ``exp``, ``iat``, ``nbf``, ``jti``, ``sub``
``system:serviceaccount:<namespace>:<name>``, and the ``kubernetes.io`` object with
namespace, pod and service account) and "Service account issuer discovery"
(``<issuer>/.well-known/openid-configuration`` names ``jwks_uri`` ``<api server>/openid/v1/jwks``;
keys ``{"use": "sig", "kty": "RSA", "kid", "alg": "RS256", "n", "e"}``). Headers are
``{"alg": "RS256", "kid": ...}``. Legacy secret-based tokens have ``iss``
``kubernetes/serviceaccount`` and no ``exp``.
"""

from __future__ import annotations

from typing import Any

import pytest

from oauth_shield import ConfigurationError, Reason, providers
from oauth_shield.testing import SigningKey

from .conftest import Build, Site, public, reason_for, times

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
JWKS = f"{ISSUER}/keys"


@pytest.fixture
def site(rsa_key: SigningKey) -> Site:
    return Site(
        {
            f"{ISSUER}/.well-known/openid-configuration": {
                "issuer": ISSUER,
                "jwks_uri": JWKS,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            },
            JWKS: {"keys": [public(rsa_key)]},
        }
    )


def token(key: SigningKey, namespace: str = "prod", name: str = "orders", **changes: Any) -> str:
    payload = {
        "aud": ["orders-api"],
        **times(),
        "iss": ISSUER,
        "jti": "8b0e4d5e-1f2a-4c3b-9d8e-7f6a5b4c3d2e",
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "ip-10-0-1-2", "uid": "646e7c5e"},
            "pod": {"name": f"{name}-7d9f8", "uid": "5e0bd49b"},
            "serviceaccount": {"name": name, "uid": "14ee3fa4"},
            "warnafter": 1_800_003_000,
        },
        "sub": f"system:serviceaccount:{namespace}:{name}",
        **changes,
    }
    payload = {key_: value for key_, value in payload.items() if value is not None}
    return key.sign({"alg": "RS256", "kid": key.kid}, payload)


async def test_a_pods_token(build: Build, site: Site, rsa_key: SigningKey) -> None:
    options = providers.kubernetes(
        ISSUER, audience="orders-api", service_accounts=["prod:orders", "prod:billing"]
    )
    validator = build(options, site)
    assert (await validator.validate(token(rsa_key))).subject == "system:serviceaccount:prod:orders"
    assert await reason_for(validator, token(rsa_key, name="billing")) is None


@pytest.mark.parametrize(
    ("token_of", "reason"),
    [
        (lambda key: token(key, namespace="dev"), Reason.CLAIM_MISMATCH),
        (lambda key: token(key, name="debug"), Reason.CLAIM_MISMATCH),
        (lambda key: token(key, aud=[ISSUER]), Reason.AUDIENCE_MISMATCH),  # the API server's
        (lambda key: token(key, iss="kubernetes/serviceaccount", exp=None), Reason.ISSUER_MISMATCH),
        (lambda key: token(key, exp=None), Reason.MISSING_CLAIM),
    ],
    ids=["other-namespace", "other-account", "api-server-audience", "legacy", "no-exp"],
)
async def test_refused(
    build: Build, site: Site, rsa_key: SigningKey, token_of: Any, reason: Any
) -> None:
    options = providers.kubernetes(ISSUER, audience="orders-api", service_accounts=["prod:orders"])
    validator = build(options, site)
    assert await reason_for(validator, token_of(rsa_key)) is reason


async def test_any_account_of_the_cluster_without_service_accounts(
    build: Build, site: Site, rsa_key: SigningKey
) -> None:
    validator = build(providers.kubernetes(ISSUER, audience="orders-api"), site)
    assert await reason_for(validator, token(rsa_key, namespace="dev", name="x")) is None


@pytest.mark.parametrize("accounts", [["orders"], ["prod/orders"], ["Prod:orders"], [""], []])
def test_bad_service_accounts_are_named(accounts: list[str]) -> None:
    with pytest.raises(ConfigurationError) as raised:
        providers.kubernetes(ISSUER, audience="orders-api", service_accounts=accounts)
    assert raised.value.field == "service_accounts"
