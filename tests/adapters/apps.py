"""The same small API in every stack: Quart, Flask, Starlette behind the ASGI middleware, and
FastAPI with its ``Security`` dependency.

Routes: ``GET/POST /items`` (scope ``read``), ``GET /admin`` (scope ``admin``), ``GET /any``
(any valid token), ``GET /open`` (not protected). Protected routes answer the token's subject.
"""

from __future__ import annotations

from typing import Any

import flask_oauth_shield
import quart_oauth_shield
from fastapi import FastAPI, Security
from flask import Flask
from quart import Quart
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from oauth_shield import AccessToken, TokenValidator
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.fastapi import FastAPIShield

REALM = "test-api"


def quart_app(*, debug: bool = False, **options: Any) -> Quart:
    app = Quart("quart-test")
    app.debug = debug
    shield = quart_oauth_shield.Shield(app, realm=REALM, **options)
    token = quart_oauth_shield.current_token

    @app.route("/items", methods=["GET", "POST"])
    @shield.require("read")
    async def items() -> dict[str, Any]:
        return {"sub": token.subject, "client": token.client_id}

    @app.get("/admin")
    @shield.require("admin")
    async def admin() -> dict[str, Any]:
        return {"sub": token.subject}

    @app.get("/any")
    @shield.require()
    def any_token() -> dict[str, Any]:  # a sync view: the decorator goes through ensure_async
        return {"sub": token.subject}

    @app.get("/open")
    async def open_route() -> dict[str, Any]:
        return {"open": True}

    return app


def flask_app(*, debug: bool = False, **options: Any) -> Flask:
    app = Flask("flask-test")
    app.debug = debug
    shield = flask_oauth_shield.Shield(app, realm=REALM, **options)
    token = flask_oauth_shield.current_token

    @app.route("/items", methods=["GET", "POST"])
    @shield.require("read")
    def items() -> dict[str, Any]:
        return {"sub": token.subject, "client": token.client_id}

    @app.get("/admin")
    @shield.require("admin")
    def admin() -> dict[str, Any]:
        return {"sub": token.subject}

    @app.get("/any")
    @shield.require()
    def any_token() -> dict[str, Any]:
        return {"sub": token.subject}

    @app.get("/open")
    def open_route() -> dict[str, Any]:
        return {"open": True}

    return app


def asgi_app(
    *, debug: bool = False, allow_query_token: bool = False, resource: Any = None, **options: Any
) -> BearerAuthMiddleware:
    async def protected(request: Request) -> JSONResponse:
        assert request.state.access_token is request.auth
        return JSONResponse({"sub": request.auth.subject, "client": request.auth.client_id})

    async def open_route(request: Request) -> JSONResponse:
        return JSONResponse({"open": True})

    routes = [
        Route("/items", protected, methods=["GET", "POST"]),
        Route("/admin", protected),
        Route("/any", protected),
        Route("/open", open_route),
    ]
    return BearerAuthMiddleware(
        Starlette(debug=debug, routes=routes),
        validator=TokenValidator(**options),
        scopes={"/items": ["read"], "/admin": ["admin"], "/any": []},
        public=["/open"],
        realm=REALM,
        allow_query=allow_query_token,
        resource=resource,
    )


def fastapi_app(*, debug: bool = False, **options: Any) -> FastAPI:
    shield = FastAPIShield(realm=REALM, **options)
    app = shield.init_app(FastAPI(debug=debug))

    @app.api_route("/items", methods=["GET", "POST"])
    async def items(token: AccessToken = Security(shield, scopes=["read"])) -> Any:
        return {"sub": token.subject, "client": token.client_id}

    @app.get("/admin")
    async def admin(token: AccessToken = Security(shield, scopes=["admin"])) -> Any:
        return {"sub": token.subject}

    @app.get("/any")
    def any_token(token: AccessToken = Security(shield)) -> Any:  # a sync route
        return {"sub": token.subject}

    @app.get("/open")
    async def open_route() -> dict[str, Any]:
        return {"open": True}

    return app


FRAMEWORKS = {"quart": quart_app, "flask": flask_app, "asgi": asgi_app, "fastapi": fastapi_app}
