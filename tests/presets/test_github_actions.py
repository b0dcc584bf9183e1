"""``providers.github_actions``, with GitHub's own shapes.

Where the shapes come from: GitHub's docs "About security hardening with OpenID Connect",
section "Understanding the OIDC token": the example header ``{"typ": "JWT", "alg": "RS256",
"x5t": ..., "kid": ...}`` and payload (``sub`` ``repo:octo-org/octo-repo:environment:prod``,
``aud`` ``https://github.com/octo-org`` by default, ``repository``, ``repository_owner``,
``repository_id``, ``job_workflow_ref``...), and
``https://token.actions.githubusercontent.com/.well-known/openid-configuration`` (keys at
``/.well-known/jwks``, with ``x5c`` and ``x5t``).
"""

from __future__ import annotations

from typing import Any

import pytest

from oauth_shield import ConfigurationError, Reason, providers
from oauth_shield.testing import SigningKey

from .conftest import Build, Site, public, reason_for, times

ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "https://github.com/octo-org"


@pytest.fixture
def site(rsa_key: SigningKey) -> Site:
    return Site(
        {
            f"{ISSUER}/.well-known/openid-configuration": {
                "issuer": ISSUER,
                "jwks_uri": f"{ISSUER}/.well-known/jwks",
                "subject_types_supported": ["public", "pairwise"],
                "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref"],
            },
            f"{ISSUER}/.well-known/jwks": {"keys": [public(rsa_key, x5t="ZXg", x5c=["MIIC"])]},
        }
    )


def token(key: SigningKey, **changes: Any) -> str:
    payload = {
        "jti": "example-id",
        "sub": "repo:octo-org/octo-repo:environment:prod",
        "environment": "prod",
        "aud": AUDIENCE,
        "ref": "refs/heads/main",
        "sha": "example-sha",
        "repository": "octo-org/octo-repo",
        "repository_owner": "octo-org",
        "actor_id": "12",
        "repository_visibility": "private",
        "repository_id": "74",
        "repository_owner_id": "65",
        "run_id": "example-run-id",
        "run_number": "10",
        "run_attempt": "2",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "workflow": "example-workflow",
        "head_ref": "",
        "base_ref": "",
        "event_name": "workflow_dispatch",
        "ref_type": "branch",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "iss": ISSUER,
        **times(),
        **changes,
    }
    header = {"typ": "JWT", "alg": "RS256", "x5t": "example-thumbprint", "kid": key.kid}
    return key.sign(header, payload)


@pytest.mark.parametrize(
    "restriction",
    [
        {"repository_owner": "octo-org"},
        {"repository": "octo-org/octo-repo"},
        {"repository": ["octo-org/other", "octo-org/octo-repo"]},
        {"repository": "octo-org/octo-repo", "repository_owner": "octo-org"},
    ],
    ids=repr,
)
async def test_a_workflow_of_the_named_repository_or_owner(
    build: Build, site: Site, rsa_key: SigningKey, restriction: dict[str, Any]
) -> None:
    validator = build(providers.github_actions(audience=AUDIENCE, **restriction), site)
    accepted = await validator.validate(token(rsa_key))
    assert accepted.subject == "repo:octo-org/octo-repo:environment:prod"
    assert accepted.client_id is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"repository": "evil-org/octo-repo", "repository_owner": "evil-org"},
         Reason.CLAIM_MISMATCH),
        ({"repository_owner": "Octo-Org"}, Reason.CLAIM_MISMATCH),  # compared exactly
        ({"aud": "sts.amazonaws.com"}, Reason.AUDIENCE_MISMATCH),
        ({"repository_owner": ["octo-org"]}, Reason.CLAIM_MISMATCH),
    ],
    ids=lambda value: repr(value)[:40],
)  # fmt: skip
async def test_refused(
    build: Build, site: Site, rsa_key: SigningKey, changes: dict[str, Any], reason: Reason
) -> None:
    validator = build(
        providers.github_actions(audience=AUDIENCE, repository_owner="octo-org"), site
    )
    assert await reason_for(validator, token(rsa_key, **changes)) is reason


async def test_required_claims_refine_a_preset(
    build: Build, site: Site, rsa_key: SigningKey
) -> None:
    options = providers.github_actions(audience=AUDIENCE, repository_owner="octo-org")
    options["required_claims"] = {**options["required_claims"], "ref": "refs/heads/main"}  # type: ignore[typeddict-item, dict-item]
    validator = build(options, site)
    assert await reason_for(validator, token(rsa_key)) is None
    assert await reason_for(validator, token(rsa_key, ref="refs/heads/dev")) is (
        Reason.CLAIM_MISMATCH
    )


def test_an_audience_alone_is_not_enough() -> None:
    with pytest.raises(ConfigurationError) as raised:
        providers.github_actions(audience=AUDIENCE)
    assert raised.value.field == "repository"
    assert "every workflow of every GitHub repository" in str(raised.value)
    with pytest.raises(ConfigurationError):
        providers.github_actions(audience=AUDIENCE, repository=[])
