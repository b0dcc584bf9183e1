"""The health route of every adapter, over real servers: no token needed, never cached, 200
while tokens can be checked and 503 when they cannot; the document holds no secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import flask_oauth_shield
import httpx
import pytest
import quart_oauth_shield
from fastapi import FastAPI, Security
from flask import Flask
from quart import Quart

from oauth_shield import AccessToken, ConfigurationError, TokenValidator
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.fastapi import FastAPIShield
from oauth_shield.http import health_response
from oauth_shield.testing import LocalIssuer, serve_asgi, serve_wsgi
from tests.conftest import answer_lifespan

pytestmark = pytest.mark.integration

SECRET = "health-client-secret-canary"


def options(issuer: LocalIssuer) -> dict[str, Any]:
    return {
        "issuer": issuer.issuer,
        "audience": issuer.audience,
        "client_id": "rs",
        "client_secret": SECRET,
    }


def flask_app(issuer: LocalIssuer) -> Any:
    app = Flask("health-flask")
    shield = flask_oauth_shield.Shield(app, **options(issuer))
    shield.health_route(app)

    @app.get("/items")
    @shield.require()
    def items() -> dict[str, str]:
        return {"sub": flask_oauth_shield.current_token.subject or ""}

    return app


def quart_app(issuer: LocalIssuer) -> Any:
    app = Quart("health-quart")
    shield = quart_oauth_shield.Shield(app, **options(issuer))
    shield.health_route(app, "/healthz")

    @app.get("/items")
    @shield.require()
    async def items() -> dict[str, str]:
        return {"sub": quart_oauth_shield.current_token.subject or ""}

    return app


def asgi_app(issuer: LocalIssuer) -> Any:
    async def plain(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    validator = TokenValidator(**options(issuer))
    return BearerAuthMiddleware(plain, validator=validator, health_path="/healthz")


def fastapi_app(issuer: LocalIssuer) -> Any:
    shield = FastAPIShield(TokenValidator(**options(issuer)))
    app = shield.health_route(shield.init_app(FastAPI()))

    @app.get("/items")
    async def items(token: AccessToken = Security(shield)) -> dict[str, str]:
        return {"sub": token.subject or ""}

    return app


APPS: dict[str, Callable[[LocalIssuer], Any]] = {
    "flask": flask_app,
    "quart": quart_app,
    "asgi": asgi_app,
    "fastapi": fastapi_app,
}


def served(framework: str, app: Any) -> Any:
    return serve_wsgi(app) if framework == "flask" else serve_asgi(app)


def check_answer(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Content-Type"].startswith("application/json")
    assert SECRET not in answer.text
    document: dict[str, Any] = answer.json()
    return document


@pytest.mark.parametrize("framework", list(APPS))
def test_the_health_route_answers_without_a_token(framework: str) -> None:
    issuer = LocalIssuer()
    with issuer.serve(), served(framework, APPS[framework](issuer)) as url:
        token = issuer.token()
        assert httpx.get(f"{url}/items", headers={"Authorization": f"Bearer {token}"}).is_success
        document = check_answer(httpx.get(f"{url}/healthz"), 200)
        assert document["status"] == "ok"
        assert document["issuer"] == issuer.issuer
        assert document["keys"]["state"] == "fresh"
        assert document["keys"]["last_fetch"] == "success"
        assert document["introspection"] == "unknown"
        assert document["shared_cache"] == "absent"
        assert token not in json.dumps(document)


@pytest.mark.parametrize("framework", list(APPS))
def test_the_health_route_answers_503_when_tokens_cannot_be_checked(framework: str) -> None:
    issuer = LocalIssuer()
    issuer.fault = lambda request: httpx.Response(503)
    with issuer.serve(), served(framework, APPS[framework](issuer)) as url:
        token = issuer.token()
        refused = httpx.get(f"{url}/items", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 503
        document = check_answer(httpx.get(f"{url}/healthz"), 503)
        assert document["status"] == "failing"
        assert document["keys"] == {
            "state": "none",
            "age_seconds": None,
            "expires_in_seconds": None,
            "count": 0,
            "last_fetch": "status_503",
        }


def test_the_middleware_answers_only_get_and_head_on_its_health_path() -> None:
    issuer = LocalIssuer()
    with issuer.serve(), serve_asgi(asgi_app(issuer)) as url:
        assert httpx.post(f"{url}/healthz").status_code == 405
        assert httpx.get(f"{url}/healthz/more").status_code == 401  # only the exact path


def test_a_health_path_must_be_a_path() -> None:
    issuer = LocalIssuer()

    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
        pass

    with pytest.raises(ConfigurationError, match="health_path"):
        BearerAuthMiddleware(app, validator=TokenValidator(**options(issuer)), health_path="h")


def test_health_route_needs_the_app_registered_first() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        flask_oauth_shield.Shield().health_route(Flask("unregistered"))


@pytest.mark.parametrize(
    ("status", "code"), [("ok", 200), ("degraded", 200), ("failing", 503), ("?", 503)]
)
def test_the_status_rule(status: str, code: int) -> None:
    assert health_response({"status": status}).status == code
