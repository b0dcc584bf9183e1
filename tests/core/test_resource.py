"""ProtectedResource (RFC 9728) and the challenge parameters it adds, pure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield import (
    ConfigurationError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    ProtectedResource,
    Reason,
    TemporarilyUnavailableError,
    render_challenge,
)

ISSUER = "https://as.example.test"


def complete(**fields: object) -> ProtectedResource:
    return ProtectedResource(**fields).complete(  # type: ignore[arg-type]
        issuer=ISSUER, audience=["https://api.example.test"]
    )


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ("https://api.example.test", "/.well-known/oauth-protected-resource"),
        ("https://api.example.test/", "/.well-known/oauth-protected-resource"),
        ("https://api.example.test/mcp", "/.well-known/oauth-protected-resource/mcp"),
        ("https://api.example.test/a/b/", "/.well-known/oauth-protected-resource/a/b"),
        ("http://127.0.0.1:8000/mcp", "/.well-known/oauth-protected-resource/mcp"),
    ],
)
def test_the_well_known_path_is_inserted_before_the_resource_path(resource: str, path: str) -> None:
    described = complete(resource=resource)
    assert described.metadata_path == path
    assert described.metadata_url.endswith(path)
    assert (
        described.metadata_url.split("/.well-known")[0]
        == resource.split("/")[0] + "//" + (resource.split("/")[2])
    )


@pytest.mark.parametrize(
    "resource",
    [
        "http://api.example.test",  # https only (loopback aside)
        "https://api.example.test/x#frag",
        "https://api.example.test/x?q=1",
        "https://user:pw@api.example.test",
        "api.example.test",
        'https://api.example.test/"x',
        "https://api.example.test/ x",
    ],
)
def test_a_resource_that_is_not_an_https_url_is_refused(resource: str) -> None:
    with pytest.raises(ConfigurationError, match="resource"):
        complete(resource=resource)


def test_defaults_come_from_the_validator() -> None:
    described = complete()
    assert described.document() == {
        "resource": "https://api.example.test",
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
    }
    with pytest.raises(ConfigurationError, match="several audiences"):
        ProtectedResource().complete(issuer=ISSUER, audience=["https://a.test", "https://b.test"])


def test_the_document_follows_the_rfc() -> None:
    described = ProtectedResource(
        scopes_supported=["read", "offline_access", "write read"],
        resource_name="Items",
        resource_documentation="https://docs.example.test/items",
        max_age=120,
    ).complete(
        issuer=ISSUER, audience=["https://api.example.test"], bearer_methods=["query", "header"]
    )
    status, headers, body = described.response()
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=120"
    assert json.loads(body) == {
        "resource": "https://api.example.test",
        "authorization_servers": [ISSUER],
        "scopes_supported": ["read", "write"],  # offline_access is never advertised
        "bearer_methods_supported": ["header", "query"],
        "resource_name": "Items",
        "resource_documentation": "https://docs.example.test/items",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"scopes_supported": ['a"b']},
        {"authorization_servers": ["http://as.example.test"]},
        {"bearer_methods_supported": ["query"]},
        {"bearer_methods_supported": ["header", "cookie"]},
        {"resource_documentation": "ftp://docs"},
        {"max_age": -1},
    ],
)
def test_bad_fields_are_refused_at_construction(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        complete(**fields)


METADATA = "https://api.example.test/.well-known/oauth-protected-resource"


def test_every_challenge_names_the_metadata_and_401s_the_scope() -> None:
    errors = [
        MissingTokenError(Reason.MISSING_TOKEN),
        InvalidTokenError(Reason.EXPIRED),
        InvalidRequestError(Reason.MULTIPLE_CREDENTIALS),
        InsufficientScopeError(["write", "read"]),
        TemporarilyUnavailableError(Reason.KEYS_UNAVAILABLE),
    ]
    rendered = {
        type(error).__name__: error.headers("api", scope=["read"], resource_metadata=METADATA)
        for error in errors
    }
    for headers in rendered.values():
        assert headers["WWW-Authenticate"].endswith(f'resource_metadata="{METADATA}"')
    assert rendered["MissingTokenError"]["WWW-Authenticate"] == (
        f'Bearer realm="api", scope="read", resource_metadata="{METADATA}"'
    )
    assert 'scope="read"' in rendered["InvalidTokenError"]["WWW-Authenticate"]
    assert "scope" not in rendered["InvalidRequestError"]["WWW-Authenticate"]
    assert "scope" not in rendered["TemporarilyUnavailableError"]["WWW-Authenticate"]
    assert 'scope="read write"' in rendered["InsufficientScopeError"]["WWW-Authenticate"]
    assert "Retry-After" in rendered["TemporarilyUnavailableError"]


@given(st.text())
def test_a_metadata_url_never_breaks_out_of_the_header(url: str) -> None:
    challenge = render_challenge(error="invalid_token", resource_metadata=url)
    assert challenge.count('"') in (2, 4)
    assert "\r" not in challenge and "\n" not in challenge
