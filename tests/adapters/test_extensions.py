"""Flask and Quart extension conventions: init_app, config keys, one validator per app,
the current_token proxy, lifecycle, and a missing framework named by its extra."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import flask_oauth_shield
import pytest
import quart_oauth_shield
from flask import Flask
from quart import Quart

from oauth_shield import ConfigurationError, SyncTokenValidator, TokenValidator
from oauth_shield.testing import LocalIssuer

EXTENSIONS = {"flask": (flask_oauth_shield, Flask), "quart": (quart_oauth_shield, Quart)}


def configured(framework: str, issuer: LocalIssuer, **config: Any) -> Any:
    _, app_class = EXTENSIONS[framework]
    app = app_class(f"{framework}-ext")
    app.config.update(
        {"OAUTH_SHIELD_ISSUER": issuer.issuer, "OAUTH_SHIELD_AUDIENCE": issuer.audience, **config}
    )
    return app


def state_of(app: Any) -> Any:
    return app.extensions["oauth_shield"]


@pytest.mark.parametrize("framework", list(EXTENSIONS))
def test_init_app_reads_prefixed_config_and_arguments_win(
    framework: str, issuer: LocalIssuer
) -> None:
    module, _ = EXTENSIONS[framework]
    app = configured(
        framework,
        issuer,
        OAUTH_SHIELD_LEEWAY="5",
        OAUTH_SHIELD_ALGORITHMS="RS256, ES256",
        OAUTH_SHIELD_JWKS_TTL=120,
        OAUTH_SHIELD_ALLOW_QUERY_TOKEN="yes",
        OAUTH_SHIELD_REALM="from-config",
    )
    shield = module.Shield(jwks_ttl=60, realm="from-argument")
    shield.init_app(app)
    settings = state_of(app).validator.settings
    assert settings.leeway == 5.0
    assert settings.algorithms == {"RS256", "ES256"}
    assert settings.jwks_ttl == 60.0  # the argument wins over OAUTH_SHIELD_JWKS_TTL
    assert state_of(app).settings.allow_query_token is True
    assert state_of(app).settings.realm == "from-argument"


@pytest.mark.parametrize("framework", list(EXTENSIONS))
def test_one_validator_per_app(framework: str, issuer: LocalIssuer) -> None:
    module, _ = EXTENSIONS[framework]
    shield = module.Shield()
    first, second = configured(framework, issuer), configured(framework, issuer)
    shield.init_app(first)
    shield.init_app(second)
    assert state_of(first).validator is not state_of(second).validator
    expected = SyncTokenValidator if framework == "flask" else TokenValidator
    assert isinstance(state_of(first).validator, expected)
    with pytest.raises(RuntimeError, match="already registered"):
        shield.init_app(first)


@pytest.mark.parametrize("framework", list(EXTENSIONS))
@pytest.mark.parametrize(
    "config",
    [
        {"OAUTH_SHIELD_LEEWAY": "soon"},
        {"OAUTH_SHIELD_INTROSPECT_ALL": "maybe"},
        {"OAUTH_SHIELD_REALM": 'x"y'},
        {"OAUTH_SHIELD_ISSUER": "http://issuer.example"},
    ],
)
def test_bad_config_fails_at_init_app(
    framework: str, issuer: LocalIssuer, config: dict[str, str]
) -> None:
    module, _ = EXTENSIONS[framework]
    with pytest.raises(ConfigurationError):
        module.Shield(configured(framework, issuer, **config))


def test_scopes_are_checked_when_the_view_is_decorated() -> None:
    with pytest.raises(ConfigurationError):
        flask_oauth_shield.Shield().require("read write")  # one scope with a space: a typo
    with pytest.raises(ConfigurationError):
        quart_oauth_shield.Shield().require('re"ad')


def test_flask_current_token_outside_a_protected_view(issuer: LocalIssuer) -> None:
    app = configured("flask", issuer)
    flask_oauth_shield.Shield(app)

    @app.get("/open")
    def open_route() -> str:
        return flask_oauth_shield.current_token.subject or ""

    app.testing = False
    response = app.test_client().get("/open")
    assert response.status_code == 500  # a programming error, loudly: never a silent pass


async def test_quart_current_token_outside_a_protected_view(issuer: LocalIssuer) -> None:
    app = configured("quart", issuer)
    quart_oauth_shield.Shield(app)
    async with app.test_request_context("/"):
        with pytest.raises(RuntimeError, match="not protected"):
            _ = quart_oauth_shield.current_token.subject


async def test_quart_warms_up_before_serving_and_closes_after(issuer: LocalIssuer) -> None:
    app = configured("quart", issuer)
    quart_oauth_shield.Shield(app, transport=issuer.transport())
    validator = state_of(app).validator
    async with app.test_app():
        for _ in range(50):
            if validator._keys.keys is not None:
                break
            await asyncio.sleep(0.01)
        assert issuer.requests["/jwks"] == 1  # fetched at startup, before any request
    assert validator._http._client is None  # closed after serving


async def test_quart_serves_again_after_a_serving_cycle(issuer: LocalIssuer, clock: Any) -> None:
    """after_serving closes the validator, and a closed validator refuses to work: the next
    before_serving opens it again (a test suite serves the same app once per test)."""
    app = configured("quart", issuer)
    shield = quart_oauth_shield.Shield(app, transport=issuer.transport(), clock=clock)

    @app.get("/who")
    @shield.require()
    async def who() -> str:
        return quart_oauth_shield.current_token.subject or ""

    for _ in range(2):
        async with app.test_app() as serving:
            bearer = {"Authorization": f"Bearer {issuer.token()}"}
            response = await serving.test_client().get("/who", headers=bearer)
            assert (response.status_code, await response.get_data(as_text=True)) == (200, "user-1")
    assert issuer.requests["/jwks"] == 1


@pytest.mark.parametrize("framework", ["flask", "quart"])
def test_a_missing_framework_names_the_extra(framework: str) -> None:
    code = f"import sys; sys.modules[{framework!r}] = None; import {framework}_oauth_shield"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert f"pip install 'oauth-shield[{framework}]'" in result.stderr
