"""The Flask and Quart extensions name a bad setting as the app configured it: the
``OAUTH_SHIELD_*`` key from ``app.config``, or the ``Shield(...)`` argument."""

from __future__ import annotations

from typing import Any

import flask_oauth_shield
import pytest
import quart_oauth_shield
from flask import Flask
from quart import Quart

from oauth_shield import ConfigurationError

EXTENSIONS = {"flask": (flask_oauth_shield, Flask), "quart": (quart_oauth_shield, Quart)}


def init(framework: str, config: dict[str, Any], **arguments: Any) -> ConfigurationError:
    module, app_class = EXTENSIONS[framework]
    app = app_class(f"{framework}-config-errors")
    app.config.update(config)
    with pytest.raises(ConfigurationError) as raised:
        module.Shield(app, **arguments)
    return raised.value


@pytest.mark.parametrize("framework", list(EXTENSIONS))
def test_a_key_from_app_config_is_named_as_a_key(framework: str) -> None:
    error = init(
        framework,
        {"OAUTH_SHIELD_ISSUER": "http://as.example.com", "OAUTH_SHIELD_AUDIENCE": "api"},
    )
    assert str(error).startswith("OAUTH_SHIELD_ISSUER must use https;")
    assert "OAUTH_SHIELD_INSECURE_HTTP=true" in str(error)
    assert "'http://as.example.com'" in str(error)


@pytest.mark.parametrize("framework", list(EXTENSIONS))
def test_an_argument_is_named_as_an_argument(framework: str) -> None:
    error = init(framework, {"OAUTH_SHIELD_ISSUER": "https://as.example.com"}, audience="")
    assert str(error).startswith("audience must be a non-empty string")


@pytest.mark.parametrize("framework", list(EXTENSIONS))
def test_a_missing_key_is_named(framework: str) -> None:
    error = init(framework, {"OAUTH_SHIELD_ISSUER": "https://as.example.com"})
    assert str(error).startswith("OAUTH_SHIELD_AUDIENCE is not set: ")
