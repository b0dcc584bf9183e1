"""Every preset: a plain dict of ``TokenValidator`` arguments that every way in takes, whose
relaxed profile (where it sets one) is no start-up warning, and which names its provider."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import flask
import flask_oauth_shield
import pytest
import quart
import quart_oauth_shield

from oauth_shield import SyncTokenValidator, TokenValidator, providers
from oauth_shield._config import PRESETS
from oauth_shield.asgi import BearerAuthMiddleware

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
PRESET_CALLS: dict[str, Callable[[], Any]] = {
    "keycloak": lambda: providers.keycloak("https://sso.test", "r", audience="api"),
    "auth0": lambda: providers.auth0("t.auth0.com", audience="api"),
    "entra": lambda: providers.entra(TENANT, audience="api"),
    "okta": lambda: providers.okta("https://o.okta.com", audience="api://default"),
    "cognito": lambda: providers.cognito("eu-west-1", "eu-west-1_X", client_ids=["c"]),
    "github_actions": lambda: providers.github_actions(audience="api", repository_owner="o"),
    "kubernetes": lambda: providers.kubernetes("https://k8s.test", audience="api"),
}


def test_every_provider_has_a_preset() -> None:
    assert set(PRESET_CALLS) == PRESETS == set(providers.__all__)


@pytest.mark.parametrize("name", sorted(PRESET_CALLS))
async def test_a_preset_is_a_plain_dict_every_way_in_takes(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield")
    options = PRESET_CALLS[name]()
    assert type(options) is dict and options["preset"] == name
    async with TokenValidator(**options) as validator:
        assert validator.settings.preset == name
    SyncTokenValidator(**options).close()
    quart_oauth_shield.Shield(quart.Quart(name), **options)
    flask_oauth_shield.Shield(flask.Flask(name), **options)

    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    BearerAuthMiddleware(app, validator=TokenValidator(**options))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_hand_chosen_relaxed_profile_is_still_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.config")
    options = {**providers.okta("https://o.okta.com", audience="api://default"), "preset": None}
    TokenValidator(**options)
    assert [record.getMessage() for record in caplog.records] == [
        "the relaxed 'jwt' profile is on: typ at+jwt and RFC 9068 claims are not required "
        "(issuer https://o.okta.com/oauth2/default)"
    ]


def test_only_providers_without_rfc9068_tokens_relax_the_profile() -> None:
    relaxed = {name for name, call in PRESET_CALLS.items() if call().get("profile") == "jwt"}
    assert relaxed == PRESETS  # none of them issues RFC 9068 tokens by default
    assert "profile" not in providers.auth0("t.auth0.com", audience="api", rfc9068=True)


def test_an_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="preset must be one of auth0, cognito"):
        TokenValidator(issuer="https://a.test", audience="api", preset="ping")
