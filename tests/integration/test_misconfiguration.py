"""A misconfigured validator against a real OpenID Provider says what is wrong and what to do.

Each case is a mistake made in real deployments; before, each refused every token with a bare
``issuer_mismatch`` or nothing at all in the log at the default level.
"""

from __future__ import annotations

import logging

import pytest

from oauth_shield import Reason, TokenValidator
from tests.conftest import log_text, refused, secret_pieces
from tests.provider import API_AUDIENCE, OIDCProvider


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)  # what a service logs by default
    return caplog


async def test_a_trailing_slash_on_the_issuer(
    provider: OIDCProvider, logs: pytest.LogCaptureFixture
) -> None:
    configured = provider.issuer + "/"
    token = provider.token()
    async with TokenValidator(issuer=configured, audience=API_AUDIENCE) as validator:
        await refused(validator, token, Reason.KEYS_UNAVAILABLE, caplog=logs)
    [line] = lines(logs, logging.ERROR)
    assert "the metadata names another issuer" in line
    assert f"it names {provider.issuer!r}, issuer is {configured!r}" in line
    assert f"remove the trailing slash from issuer: set it to {provider.issuer!r}" in line
    assert f"at {provider.issuer}/.well-known/openid-configuration" in line
    for piece in secret_pieces(token):
        assert piece not in log_text(logs)


async def test_localhost_for_127_0_0_1(
    provider: OIDCProvider, logs: pytest.LogCaptureFixture
) -> None:
    configured = provider.issuer.replace("127.0.0.1", "localhost")
    async with TokenValidator(issuer=configured, audience=API_AUDIENCE) as validator:
        await refused(validator, provider.token(), Reason.KEYS_UNAVAILABLE)
    [line] = lines(logs, logging.ERROR)
    assert "the server calls itself 127.0.0.1 where issuer says localhost" in line
    assert f"set issuer to {provider.issuer!r}" in line


async def test_an_audience_typo(provider: OIDCProvider, logs: pytest.LogCaptureFixture) -> None:
    typo = API_AUDIENCE + "/v1"
    tokens = [provider.token(), provider.token("client-es256")]
    async with TokenValidator(issuer=provider.issuer, audience=typo) as validator:
        for token in tokens:
            await refused(validator, token, Reason.AUDIENCE_MISMATCH, caplog=logs)
    [warning] = lines(logs, logging.WARNING)
    assert f"its aud {API_AUDIENCE!r} names none of audience [{typo!r}]" in warning
    assert "add it to audience (OAUTH_SHIELD_AUDIENCE)" in warning
    assert lines(logs, logging.ERROR) == []


async def test_the_wrong_metadata_path(
    provider: OIDCProvider, logs: pytest.LogCaptureFixture
) -> None:
    configured = provider.issuer + "/realms/api"
    async with TokenValidator(issuer=configured, audience=API_AUDIENCE) as validator:
        await refused(validator, provider.token(), Reason.KEYS_UNAVAILABLE)
    [line] = lines(logs, logging.ERROR)
    assert f"{configured}/.well-known/openid-configuration" in line
    assert "no metadata for this issuer" in line
    assert f"check that issuer {configured!r} is exactly the server's issuer identifier" in line


def test_from_env_without_an_audience(provider: OIDCProvider) -> None:
    from oauth_shield import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"^OAUTH_SHIELD_AUDIENCE is not set: "):
        TokenValidator.from_env({"OAUTH_SHIELD_ISSUER": provider.issuer})
