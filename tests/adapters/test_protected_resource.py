"""RFC 9728: every adapter serves the same protected resource metadata, at the root form for a
resource without a path and at the path-inserted form for one with a path, and every challenge
names it; over real HTTP against the real oidc-provider."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from oauth_shield import ProtectedResource
from tests.provider import API_AUDIENCE, OIDCProvider

from .apps import FRAMEWORKS
from .conftest import app_options, serve
from .test_rfc6750 import challenge_params

# RFC 9728 §2: the members this library may send, and what each must hold.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
MEMBERS = {
    "resource",
    "authorization_servers",
    "scopes_supported",
    "bearer_methods_supported",
    "resource_name",
    "resource_documentation",
}


def check_document(document: dict[str, Any], resource: str, issuer: str) -> None:
    """The RFC 9728 §2 field rules, as a client would check them."""
    assert set(document) <= MEMBERS
    parts = urlsplit(document["resource"])  # REQUIRED; https, no fragment (§2)
    assert document["resource"] == resource
    assert parts.scheme == "https" and parts.netloc and not parts.fragment and not parts.query
    assert document["authorization_servers"] == [issuer]  # issuer identifiers (RFC 8414)
    for scope in document.get("scopes_supported", []):
        assert _SCOPE_TOKEN.fullmatch(scope) and scope != "offline_access"
    methods = document["bearer_methods_supported"]
    assert methods and set(methods) <= {"header", "body", "query"}
    assert len(methods) == len(set(methods))
    for name in ("resource_name",):
        assert isinstance(document.get(name, ""), str)


def well_known(resource: str) -> str:
    """RFC 9728 §3.1: the well-known path between the host and the resource's path."""
    return "/.well-known/oauth-protected-resource" + urlsplit(resource).path.rstrip("/")


RESOURCES = {
    "root": (True, API_AUDIENCE),  # resource=True: the validator's one audience
    "path": (f"{API_AUDIENCE}/v1", f"{API_AUDIENCE}/v1"),
}


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
@pytest.mark.parametrize("where", list(RESOURCES))
def test_every_adapter_serves_the_metadata_and_names_it(
    as_provider: OIDCProvider, tokens: dict[str, str], framework: str, where: str
) -> None:
    option, resource = RESOURCES[where]
    options = app_options(as_provider, resource=option)
    with serve(framework, **options) as url, httpx.Client(base_url=url) as client:
        answer = client.get(well_known(resource))
        root = client.get("/.well-known/oauth-protected-resource")
        anonymous = client.get("/items")
        expired = client.get("/items", headers={"Authorization": f"Bearer {tokens['expired']}"})
        short = client.get("/admin", headers={"Authorization": f"Bearer {tokens['rs256']}"})
        opened = client.get("/open")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "public, max-age=3600"
    check_document(answer.json(), resource, as_provider.issuer)
    assert answer.json()["bearer_methods_supported"] == ["header"]
    if where == "path":  # only the path-inserted form describes a resource with a path
        assert root.status_code in (401, 404)
    metadata = f"https://api.example.test{well_known(resource)}"
    assert challenge_params(anonymous.headers["www-authenticate"]) == {
        "realm": "test-api",
        "scope": "read",  # what the route needs, so the client asks for it at once
        "resource_metadata": metadata,
    }
    assert challenge_params(expired.headers["www-authenticate"])["scope"] == "read"
    assert challenge_params(expired.headers["www-authenticate"])["resource_metadata"] == metadata
    assert challenge_params(short.headers["www-authenticate"])["scope"] == "admin"
    assert challenge_params(short.headers["www-authenticate"])["resource_metadata"] == metadata
    assert opened.status_code == 200


@pytest.mark.parametrize("framework", ["quart", "asgi", "fastapi"])
def test_the_methods_follow_the_settings_and_the_scope_can_be_left_out(
    as_provider: OIDCProvider, framework: str
) -> None:
    described = ProtectedResource(
        scopes_supported=["read", "admin", "offline_access"],
        resource_name="Test API",
        challenge_scope=False,
        max_age=60,
    )
    options = app_options(as_provider, resource=described, allow_query_token=True)
    with serve(framework, **options) as url, httpx.Client(base_url=url) as client:
        answer = client.get("/.well-known/oauth-protected-resource")
        anonymous = client.get("/items")
    document = answer.json()
    check_document(document, API_AUDIENCE, as_provider.issuer)
    assert document["bearer_methods_supported"] == ["header", "query"]
    assert document["scopes_supported"] == ["read", "admin"]  # offline_access never
    assert document["resource_name"] == "Test API"
    assert answer.headers["cache-control"] == "public, max-age=60"
    assert "scope" not in challenge_params(anonymous.headers["www-authenticate"])


@pytest.mark.parametrize("framework", ["quart", "flask", "asgi", "fastapi"])
def test_without_a_resource_nothing_changes(servers: dict[str, str], framework: str) -> None:
    with httpx.Client(base_url=servers[framework]) as client:
        answer = client.get("/.well-known/oauth-protected-resource")
        anonymous = client.get("/items")
    assert answer.status_code in (401, 404)
    assert challenge_params(anonymous.headers["www-authenticate"]) == {"realm": "test-api"}
