"""Readiness in every adapter: ``validator.check()`` names what cannot work, ``check_at_startup``
fails the application's start on it, and the decorator-order trap is caught."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import flask_oauth_shield
import httpx
import pytest
import quart_oauth_shield
from flask import Blueprint, Flask
from quart import Quart

from oauth_shield import (
    ConfigurationError,
    IssuerUnavailableError,
    SyncTokenValidator,
    TokenValidator,
)
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.testing import LocalIssuer, loopback_socket
from tests.conftest import answer_lifespan

# --- check() -----------------------------------------------------------------------------


async def test_check_installs_the_key_set(issuer: LocalIssuer, clock: Any) -> None:
    async with TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport(), clock=clock
    ) as validator:
        await validator.check()
        fetched = issuer.requests["/jwks"]
        await validator.validate(issuer.token())
        assert issuer.requests["/jwks"] == fetched  # the first token needed no fetch


async def test_check_refuses_metadata_that_names_another_issuer(issuer: LocalIssuer) -> None:
    validator = TokenValidator(
        issuer=issuer.issuer + "/", audience=issuer.audience, transport=issuer.transport()
    )
    async with validator:
        with pytest.raises(ConfigurationError, match=re.escape("https://issuer.test/")):
            await validator.check()


async def test_check_refuses_a_key_set_without_usable_keys(issuer: LocalIssuer) -> None:
    issuer.published = []
    async with TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport()
    ) as validator:
        with pytest.raises(ConfigurationError, match="key set"):
            await validator.check()


async def test_check_says_an_unreachable_issuer_is_unavailable() -> None:
    with loopback_socket() as dead:  # bound, not listening: connections are refused
        issuer = f"http://127.0.0.1:{dead.getsockname()[1]}"
        async with TokenValidator(issuer=issuer, audience="https://api.test") as validator:
            with pytest.raises(IssuerUnavailableError, match=r"127\.0\.0\.1"):
                await validator.check()


async def test_check_needs_an_introspection_endpoint(issuer: LocalIssuer) -> None:
    def no_introspection(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("openid-configuration"):
            metadata = issuer.metadata()
            del metadata["introspection_endpoint"]
            return httpx.Response(200, json=metadata)
        return None

    issuer.fault = no_introspection
    async with TokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        client_id="rs",
        client_secret="s3cr3t-value",
        transport=issuer.transport(),
    ) as validator:
        with pytest.raises(ConfigurationError, match="introspection endpoint") as raised:
            await validator.check()
    assert "s3cr3t" not in str(raised.value)


def test_the_sync_facade_checks_too(issuer: LocalIssuer) -> None:
    with (
        SyncTokenValidator(
            issuer=issuer.issuer + "/", audience=issuer.audience, transport=issuer.transport()
        ) as validator,
        pytest.raises(ConfigurationError),
    ):
        validator.check()


# --- check_at_startup in every adapter ---------------------------------------------------


def wrong_issuer(issuer: LocalIssuer) -> dict[str, Any]:
    return {
        "issuer": issuer.issuer + "/",
        "audience": issuer.audience,
        "transport": issuer.transport(),
    }


def test_flask_checks_at_init_app(issuer: LocalIssuer) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("https://issuer.test/")):
        flask_oauth_shield.Shield(Flask("f"), check_at_startup=True, **wrong_issuer(issuer))
    app = Flask("g")
    app.config["OAUTH_SHIELD_CHECK_AT_STARTUP"] = "true"
    with pytest.raises(ConfigurationError):
        flask_oauth_shield.Shield(app, **wrong_issuer(issuer))
    flask_oauth_shield.Shield(Flask("h"), **wrong_issuer(issuer))  # no check: starts


async def test_quart_fails_its_start(issuer: LocalIssuer) -> None:
    app = Quart("q")
    quart_oauth_shield.Shield(app, check_at_startup=True, **wrong_issuer(issuer))
    with pytest.raises(ConfigurationError):
        await app.startup()
    good = Quart("r")
    quart_oauth_shield.Shield(
        good, check_at_startup=True, issuer=issuer.issuer, audience=issuer.audience,
        transport=issuer.transport(),
    )  # fmt: skip
    await good.startup()
    await good.shutdown()


async def run_lifespan(app: Any, before_shutdown: Any = None) -> list[dict[str, Any]]:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if len(incoming) == 1 and before_shutdown is not None:
            await before_shutdown()
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    return sent


async def test_the_middleware_fails_the_lifespan_start(issuer: LocalIssuer) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await answer_lifespan(receive, send)

    middleware = BearerAuthMiddleware(
        app, validator=TokenValidator(**wrong_issuer(issuer)), check_at_startup=True
    )
    sent = await run_lifespan(middleware)
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "https://issuer.test/" in sent[0]["message"]
    warm = BearerAuthMiddleware(
        app,
        validator=TokenValidator(
            issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport()
        ),
    )

    async def warmed() -> None:
        while not issuer.requests["/jwks"]:  # noqa: ASYNC110 - the issuer is a counter
            await asyncio.sleep(0.01)

    started = await asyncio.wait_for(run_lifespan(warm, warmed), 5)
    assert started[0]["type"] == "lifespan.startup.complete"
    assert issuer.requests["/jwks"] == 1  # warmed at start-up, without any request


# --- the decorator-order trap ------------------------------------------------------------


def test_flask_refuses_require_above_the_route(issuer: LocalIssuer) -> None:
    app = Flask("trap")
    shield = flask_oauth_shield.Shield(app, issuer=issuer.issuer, audience=issuer.audience)
    with pytest.raises(RuntimeError, match=re.escape("below @app.route")):

        @shield.require("read")
        @app.get("/items")
        def items() -> str:
            return "open"


async def test_quart_refuses_require_above_the_route(issuer: LocalIssuer) -> None:
    app = Quart("trap")
    shield = quart_oauth_shield.Shield(app, issuer=issuer.issuer, audience=issuer.audience)
    with pytest.raises(RuntimeError, match="'items'"):

        @shield.require("read")
        @app.get("/items")
        async def items() -> str:
            return "open"


def test_a_blueprint_with_the_trap_fails_every_request(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    shield = flask_oauth_shield.Shield(issuer=issuer.issuer, audience=issuer.audience)
    blueprint = Blueprint("api", __name__)

    @shield.require("read")  # the app is not known yet: only the first request can tell
    @blueprint.get("/items")
    def items() -> str:
        return "open"

    app = Flask("factory")
    app.register_blueprint(blueprint)
    shield.init_app(app)
    client = app.test_client()
    for _ in range(2):
        assert client.get("/items").status_code == 500  # fails closed, every time
    assert "api.items" in caplog.text


def test_the_route_check_leaves_after_the_first_good_request(
    issuer: LocalIssuer, clock: Any
) -> None:
    app = Flask("good")
    shield = flask_oauth_shield.Shield(
        app,
        issuer=issuer.issuer,
        audience=issuer.audience,
        transport=issuer.transport(),
        clock=clock,
    )

    @app.get("/items")
    @shield.require("read")
    def items() -> str:
        return "ok"

    hooks = app.before_request_funcs[None]
    assert len(hooks) == 1
    client = app.test_client()
    assert client.get("/items").status_code == 401
    assert hooks == []  # requests after the first pay nothing for the check
    token = issuer.token()
    assert client.get("/items", headers={"Authorization": f"Bearer {token}"}).text == "ok"


async def test_quart_checks_its_routes_before_serving(issuer: LocalIssuer) -> None:
    shield = quart_oauth_shield.Shield(issuer=issuer.issuer, audience=issuer.audience)
    app = Quart("late")

    @shield.require("read")
    @app.get("/items")
    async def items() -> str:
        return "open"

    shield.init_app(app)
    with pytest.raises(RuntimeError, match="'items'"):
        await app.startup()
