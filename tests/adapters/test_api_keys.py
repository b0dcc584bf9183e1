"""API keys in the adapters (only where a route asks for them), current_bearer, and the
startup warnings for insecure settings."""

from __future__ import annotations

import logging
from typing import Any

import flask_oauth_shield
import httpx
import pytest
import quart_oauth_shield
from flask import Flask
from quart import Quart
from werkzeug.datastructures import Headers

from oauth_shield import ConfigurationError, TokenValidator
from oauth_shield.apikeys import APIKeyStore, new_key
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.testing import LocalIssuer

KEY, STORED = new_key(["read"])


def flask_app(issuer: LocalIssuer, **options: Any) -> Flask:
    app = Flask("keys-flask")
    app.config["OAUTH_SHIELD_API_KEYS"] = STORED.line()
    shield = flask_oauth_shield.Shield(
        app,
        issuer=issuer.issuer,
        audience=issuer.audience,
        transport=issuer.transport(),
        clock=options.pop("clock"),
        **options,
    )

    @app.get("/keys")
    @shield.require("read", api_keys=True)
    def keys() -> dict[str, Any]:
        return {
            "sub": flask_oauth_shield.current_token.subject,
            "auth": flask_oauth_shield.current_token.claims.get("auth"),
        }

    @app.get("/tokens-only")
    @shield.require("read")
    def tokens_only() -> dict[str, Any]:
        bearer = flask_oauth_shield.current_bearer
        return {
            "sub": flask_oauth_shield.current_token.subject,
            "bearer_length": len(bearer.reveal()),
        }

    @app.get("/bearer-of-a-key")
    @shield.require(api_keys=True)
    def bearer_of_a_key() -> str:
        return flask_oauth_shield.current_bearer.reveal()

    return app


def quart_app(issuer: LocalIssuer, **options: Any) -> Quart:
    app = Quart("keys-quart")
    app.config["OAUTH_SHIELD_API_KEYS"] = STORED.line()
    shield = quart_oauth_shield.Shield(
        app,
        issuer=issuer.issuer,
        audience=issuer.audience,
        transport=issuer.transport(),
        clock=options.pop("clock"),
        **options,
    )

    @app.get("/keys")
    @shield.require("read", api_keys=True)
    async def keys() -> dict[str, Any]:
        return {
            "sub": quart_oauth_shield.current_token.subject,
            "auth": quart_oauth_shield.current_token.claims.get("auth"),
        }

    @app.get("/tokens-only")
    @shield.require("read")
    async def tokens_only() -> dict[str, Any]:
        bearer = quart_oauth_shield.current_bearer
        return {
            "sub": quart_oauth_shield.current_token.subject,
            "bearer_length": len(bearer.reveal()),
        }

    return app


async def call(
    app: Any, path: str, headers: dict[str, str] | Headers
) -> tuple[int, dict[str, Any] | str]:
    if isinstance(app, Quart):
        response = await app.test_client().get(path, headers=headers)
        return response.status_code, await response.get_json() or await response.get_data(
            as_text=True
        )
    response = app.test_client().get(path, headers=headers)
    return response.status_code, response.get_json() or response.get_data(as_text=True)


@pytest.fixture(params=["flask", "quart"])
def app(request: pytest.FixtureRequest, issuer: LocalIssuer, clock: Any) -> Any:
    return (flask_app if request.param == "flask" else quart_app)(issuer, clock=clock)


async def test_an_api_key_where_the_route_accepts_them(app: Any) -> None:
    status, body = await call(app, "/keys", {"X-API-Key": KEY})
    assert status == 200
    assert body == {"sub": STORED.key_id, "auth": "api_key"}


async def test_a_bearer_token_where_api_keys_are_accepted_too(
    app: Any, issuer: LocalIssuer
) -> None:
    status, body = await call(app, "/keys", {"Authorization": f"Bearer {issuer.token()}"})
    assert status == 200
    assert body == {"sub": "user-1", "auth": None}


async def test_an_api_key_on_a_bearer_only_route_is_not_a_credential(app: Any) -> None:
    status, _ = await call(app, "/tokens-only", {"X-API-Key": KEY})
    assert status == 401


async def test_both_an_api_key_and_a_bearer_token_is_invalid_request(
    app: Any, issuer: LocalIssuer
) -> None:
    for path in ("/keys", "/tokens-only"):
        status, body = await call(
            app, path, {"X-API-Key": KEY, "Authorization": f"Bearer {issuer.token()}"}
        )
        assert status == 400
        assert body["error"] == "invalid_request"  # type: ignore[index]


async def test_two_api_keys_are_invalid_request(app: Any) -> None:
    twice = Headers([("X-API-Key", KEY), ("X-API-Key", KEY)])  # WSGI folds them into one
    status, body = await call(app, "/keys", twice)
    assert (status, body["error"]) == (400, "invalid_request")  # type: ignore[index]


async def test_a_wrong_api_key(app: Any) -> None:
    status, body = await call(app, "/keys", {"X-API-Key": KEY[:-2] + "zz"})
    assert status == 401
    assert body == {"error": "invalid_token", "error_description": "The API key is invalid"}


async def test_current_bearer_is_the_raw_token_behind_a_secret(
    app: Any, issuer: LocalIssuer
) -> None:
    token = issuer.token()
    status, body = await call(app, "/tokens-only", {"Authorization": f"Bearer {token}"})
    assert status == 200
    assert body["bearer_length"] == len(token)  # type: ignore[index]


def test_current_bearer_is_not_there_for_an_api_key(issuer: LocalIssuer, clock: Any) -> None:
    app = flask_app(issuer, clock=clock)
    app.testing = True  # the view's exception reaches the test
    with pytest.raises(
        RuntimeError, match="no bearer token: this request was authenticated by an API key"
    ):
        app.test_client().get("/bearer-of-a-key", headers={"X-API-Key": KEY})


@pytest.mark.parametrize("extension", [flask_oauth_shield, quart_oauth_shield])
def test_api_keys_without_a_store_fail_at_configuration(
    extension: Any, issuer: LocalIssuer
) -> None:
    shield = extension.Shield()
    shield.require("read", api_keys=True)
    app = (Flask if extension is flask_oauth_shield else Quart)("no-keys")
    app.config.update(
        {"OAUTH_SHIELD_ISSUER": issuer.issuer, "OAUTH_SHIELD_AUDIENCE": issuer.audience}
    )
    with pytest.raises(ConfigurationError, match="API keys"):
        shield.init_app(app)


async def test_the_asgi_middleware_accepts_api_keys_when_given_a_store(
    issuer: LocalIssuer, clock: Any
) -> None:
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["auth"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    validator = TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport(), clock=clock
    )
    app = BearerAuthMiddleware(
        inner, validator=validator, scopes=["read"], api_keys=APIKeyStore([STORED])
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://api"
    ) as client:
        assert (await client.get("/x", headers={"X-API-Key": KEY})).status_code == 200
        both = await client.get(
            "/x", headers={"X-API-Key": KEY, "Authorization": f"Bearer {issuer.token()}"}
        )
        assert both.status_code == 400
    assert seen[0].subject == STORED.key_id
    await validator.aclose()


def test_insecure_settings_are_logged_at_startup(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield")
    TokenValidator(
        issuer="http://issuer.internal:8080",
        audience="a",
        insecure_http=True,
        profile="jwt",
        leeway=120,
    )
    app = Flask("warn")
    app.config.update(
        {
            "OAUTH_SHIELD_ISSUER": issuer.issuer,
            "OAUTH_SHIELD_AUDIENCE": issuer.audience,
            "OAUTH_SHIELD_ALLOW_QUERY_TOKEN": "true",
        }
    )
    flask_oauth_shield.Shield(app)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("insecure_http" in line for line in said)
    assert any("relaxed 'jwt' profile" in line for line in said)
    assert any("leeway is 120 s" in line for line in said)
    assert any("query string" in line for line in said)
    with pytest.raises(ConfigurationError, match="insecure_http"):
        TokenValidator(issuer="http://issuer.internal:8080", audience="a")


def test_the_middleware_warns_of_query_tokens_too(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield")
    validator = TokenValidator(issuer=issuer.issuer, audience=issuer.audience)
    BearerAuthMiddleware(lambda *a: None, validator=validator, allow_query=True)  # type: ignore[arg-type]
    assert any("query string" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("header", ["Authorization", "cookie", "X API Key", "", "X-Key:"])
def test_the_api_key_header_must_be_a_plain_header_name(issuer: LocalIssuer, header: str) -> None:
    validator = TokenValidator(issuer=issuer.issuer, audience=issuer.audience)
    with pytest.raises(ConfigurationError, match="api_key_header"):
        BearerAuthMiddleware(lambda *a: None, validator=validator, api_key_header=header)  # type: ignore[arg-type]
    app = Flask("header")
    app.config.update(
        {"OAUTH_SHIELD_ISSUER": issuer.issuer, "OAUTH_SHIELD_AUDIENCE": issuer.audience}
    )
    with pytest.raises(ConfigurationError, match="api_key_header"):
        flask_oauth_shield.Shield(app, api_key_header=header)
