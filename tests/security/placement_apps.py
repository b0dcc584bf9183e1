"""The apps of the request-placement suite: each answers a marker naming the handler that
served it, so a test can tell which route a request target reached.

Routes everywhere: ``/admin`` (ADMIN, needs scope ``admin``), ``/items`` (ITEMS, needs
``read``), ``/public/<rest>`` and ``/health`` (public in the apps that use ``public=``).
``gunicorn_app`` builds one from ``PLACEMENT_*`` environment variables, for gunicorn.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import flask_oauth_shield
import quart_oauth_shield
from flask import Flask
from quart import Quart
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from oauth_shield import TokenValidator
from oauth_shield.asgi import BearerAuthMiddleware

#: The rules main could already express: everything needs ``read``, ``/admin`` needs ``admin``.
RULES: dict[str, Any] = {"scopes": {"/admin": ["admin"], "/": ["read"]}}
#: The same, with public paths.
PUBLIC_RULES: dict[str, Any] = {**RULES, "public": ["/public/*", "/health"]}


def starlette_app() -> Starlette:
    async def admin(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ADMIN")

    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ITEMS")

    async def public(request: Request) -> PlainTextResponse:
        return PlainTextResponse("PUBLIC")

    return Starlette(
        routes=[
            Route("/admin", admin),
            Route("/items", items),
            Route("/public/{rest:path}", public),
            Route("/health", public),
        ]
    )


def quart_app() -> Quart:
    app = Quart("placement")

    @app.get("/admin")
    async def admin() -> str:
        return "ADMIN"

    @app.get("/items")
    async def items() -> str:
        return "ITEMS"

    @app.get("/public/<path:rest>")
    async def public(rest: str) -> str:
        return "PUBLIC"

    @app.get("/health")
    async def health() -> str:
        return "PUBLIC"

    return app


def protected(framework: str, options: dict[str, Any], rules: dict[str, Any]) -> Any:
    """``framework``'s app behind the middleware with ``rules``."""
    inner = starlette_app() if framework == "starlette" else quart_app()
    return BearerAuthMiddleware(inner, validator=TokenValidator(**options), **rules)


def mounted(app: BearerAuthMiddleware, prefix: str = "/api") -> Starlette:
    """``app`` mounted under ``prefix`` by Starlette, as a dispatcher would. Starlette does
    not pass its lifespan on to mounted apps, so the outer app closes the validator."""

    @contextlib.asynccontextmanager
    async def lifespan(outer: Starlette) -> AsyncIterator[None]:
        async with app.validator:
            yield

    return Starlette(routes=[Mount(prefix, app=app)], lifespan=lifespan)


def quart_extension_app(options: dict[str, Any]) -> Quart:
    app = Quart("placement-extension")
    shield = quart_oauth_shield.Shield(app, **options)

    @app.get("/admin")
    @shield.require("admin")
    async def admin() -> str:
        return "ADMIN"

    @app.get("/items")
    @shield.require("read")
    async def items() -> str:
        return "ITEMS"

    return app


def flask_extension_app(options: dict[str, Any]) -> Flask:
    app = Flask("placement-extension")
    shield = flask_oauth_shield.Shield(app, **options)

    @app.get("/admin")
    @shield.require("admin")
    def admin() -> str:
        return "ADMIN"

    @app.get("/items")
    @shield.require("read")
    def items() -> str:
        return "ITEMS"

    return app


def _from_environment() -> Any:
    options = {
        "issuer": os.environ["PLACEMENT_ISSUER"],
        "audience": os.environ["PLACEMENT_AUDIENCE"],
        "insecure_http": True,
    }
    framework = os.environ["PLACEMENT_FRAMEWORK"]
    if framework == "flask-extension":
        return flask_extension_app(options)
    if framework == "quart-extension":
        return quart_extension_app(options)
    app = protected(framework, options, RULES)
    return mounted(app) if os.environ.get("PLACEMENT_MOUNTED") else app


gunicorn_app = _from_environment() if "PLACEMENT_FRAMEWORK" in os.environ else None
