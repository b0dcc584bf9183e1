"""The FastAPI dependency beyond the RFC 6750 table: the OpenAPI security scheme, scopes across
nested dependencies, optional authentication, the lifespan and the raw token as a Secret; the
app under uvicorn, tokens from oidc-provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Security

from oauth_shield import AccessToken, IssuerUnavailableError, Secret, TokenValidator
from oauth_shield.fastapi import FastAPIShield
from oauth_shield.testing import serve_asgi
from tests.provider import API_AUDIENCE, OIDCProvider

from .conftest import app_options


def build(provider: OIDCProvider, **options: Any) -> tuple[FastAPI, FastAPIShield]:
    validator = TokenValidator(**app_options(provider))
    shield = FastAPIShield(validator, scopes={"read": "Read items"}, **options)
    app = shield.init_app(FastAPI(title="Items"))

    async def reader(token: AccessToken = Security(shield, scopes=["read"])) -> AccessToken:
        return token

    @app.get("/items")
    async def items(token: AccessToken = Security(reader, scopes=["write"])) -> Any:
        return {"sub": token.subject}  # needs read (reader) and write (here)

    @app.get("/any")
    async def any_token(token: AccessToken = Depends(shield)) -> Any:
        return {"sub": token.subject}

    @app.get("/maybe")
    async def maybe(token: AccessToken | None = Security(shield.optional)) -> Any:
        return {"sub": token.subject if token else None}

    @app.post("/exchange")
    async def exchange(
        token: AccessToken = Security(shield, scopes=["read"]),
        bearer: Secret = Depends(shield.bearer),
    ) -> Any:
        return {"same": bearer.reveal() == token_seen.pop(), "repr": repr(bearer)}

    token_seen: list[str] = []
    app.state.token_seen = token_seen
    return app, shield


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_scopes_add_up_across_nested_dependencies(
    as_provider: OIDCProvider, tokens: dict[str, str]
) -> None:
    app, _ = build(as_provider)
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        read_write = client.get("/items", headers=bearer(tokens["rs256"]))  # read write
        read_only = client.get("/items", headers=bearer(tokens["es256"]))  # read
        any_token = client.get("/any", headers=bearer(tokens["es256"]))
    assert read_write.status_code == 200
    assert read_only.status_code == 403
    assert 'scope="read write"' in read_only.headers["www-authenticate"]
    assert read_only.json()["error"] == "insufficient_scope"
    assert any_token.json() == {"sub": "client-es256"}


def test_optional_authentication_still_refuses_a_bad_credential(
    as_provider: OIDCProvider, tokens: dict[str, str]
) -> None:
    app, _ = build(as_provider)
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        nobody = client.get("/maybe")
        someone = client.get("/maybe", headers=bearer(tokens["es256"]))
        expired = client.get("/maybe", headers=bearer(tokens["expired"]))
        two = client.get("/maybe", headers=[("Authorization", "Bearer a")] * 2)
    assert nobody.json() == {"sub": None}
    assert someone.json() == {"sub": "client-es256"}
    assert expired.status_code == 401 and expired.json()["error"] == "invalid_token"
    assert two.status_code == 400 and two.json()["error"] == "invalid_request"


def test_the_raw_token_is_only_a_secret(as_provider: OIDCProvider, tokens: dict[str, str]) -> None:
    app, _ = build(as_provider)
    app.state.token_seen.append(tokens["rs256"])
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        answer = client.post("/exchange", headers=bearer(tokens["rs256"])).json()
    assert answer["same"] is True
    assert tokens["rs256"][-12:] not in answer["repr"]


def test_the_openapi_scheme_names_the_token_endpoint_and_each_routes_scopes(
    as_provider: OIDCProvider,
) -> None:
    app, _ = build(as_provider)
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        for _ in range(200):  # the issuer's metadata is fetched in the background at start
            document = client.get("/openapi.json").json()
            scheme = document["components"]["securitySchemes"]["oauth_shield"]
            if scheme["type"] == "oauth2":
                break
            time.sleep(0.02)
    assert scheme["type"] == "oauth2"
    flows = scheme["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == f"{as_provider.issuer}/token"
    assert flows["clientCredentials"]["scopes"]["read"] == "Read items"
    assert flows["authorizationCode"]["authorizationUrl"] == f"{as_provider.issuer}/auth"
    paths = document["paths"]
    assert sorted(paths["/items"]["get"]["security"][0]["oauth_shield"]) == ["read", "write"]
    assert paths["/any"]["get"]["security"] == [{"oauth_shield": []}]
    assert paths["/maybe"]["get"]["security"] == [{"oauth_shield": []}]


def test_the_scheme_is_openid_connect_until_the_issuer_is_known(
    as_provider: OIDCProvider,
) -> None:
    app, shield = build(as_provider)  # no lifespan: nothing fetched
    scheme = shield.model.model_dump(by_alias=True, exclude_none=True)
    assert scheme["openIdConnectUrl"] == f"{as_provider.issuer}/.well-known/openid-configuration"
    assert app.openapi()["components"]["securitySchemes"]["oauth_shield"]["type"] == (
        "openIdConnect"
    )
    configured = FastAPIShield(
        TokenValidator(issuer=as_provider.issuer, audience=API_AUDIENCE),
        token_url="https://as.example.test/token",
    )
    assert configured.model.model_dump()["flows"]["clientCredentials"]["tokenUrl"] == (
        "https://as.example.test/token"
    )


def test_a_tenant_template_issuer_gets_a_bearer_field_not_a_broken_url() -> None:
    """A ``{tenantid}`` template has no metadata to point Swagger at: the scheme is a plain
    bearer token (or the token_url given), never a URL with ``{tenantid}`` in it."""
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    validator = TokenValidator(
        issuer=template,
        jwks_uri="https://login.microsoftonline.com/common/discovery/v2.0/keys",
        audience="api://orders",
        any_tenant=True,
    )
    scheme = FastAPIShield(validator).model.model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    several = TokenValidator(
        issuer=[template, "https://sts.example.test"],
        jwks_uri={template: "https://login.microsoftonline.com/common/discovery/v2.0/keys"},
        audience="api://orders",
        any_tenant=True,
    )
    shown = FastAPIShield(several).model.model_dump(by_alias=True, exclude_none=True)
    assert shown["openIdConnectUrl"] == "https://sts.example.test/.well-known/openid-configuration"


def test_the_lifespan_warms_and_closes_the_validator(as_provider: OIDCProvider) -> None:
    app, _ = build(as_provider, check_at_startup=True)
    as_provider.reset_stats()
    with serve_asgi(app, lifespan="on"):
        warmed = as_provider.stats()["jwks"]
    assert warmed >= 1  # checked at start-up, before any request


def test_a_start_up_check_fails_the_start(as_provider: OIDCProvider) -> None:
    from oauth_shield.testing import loopback_socket

    with loopback_socket() as dead:
        options = app_options(as_provider, issuer=f"http://127.0.0.1:{dead.getsockname()[1]}")
        shield = FastAPIShield(TokenValidator(**options), check_at_startup=True)
        app = shield.init_app(FastAPI())

        async def start() -> None:
            async with app.router.lifespan_context(app):
                pass

        with pytest.raises(IssuerUnavailableError, match="cannot be fetched"):
            asyncio.run(start())


def test_fastapi_is_imported_only_with_the_submodule() -> None:
    import subprocess
    import sys

    code = "import sys, oauth_shield, oauth_shield.http; assert 'fastapi' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
