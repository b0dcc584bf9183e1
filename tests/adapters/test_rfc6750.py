"""The same table of requests gets the same RFC 6750 answers from Quart, Flask and the ASGI
middleware, over real HTTP, against the real oidc-provider."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from oauth_shield.testing import loopback_socket
from tests.conftest import secret_pieces
from tests.provider import OIDCProvider

from .apps import FRAMEWORKS, REALM
from .cases import CASES, Case
from .conftest import app_options, serve

# RFC 6750 §3: auth-param values in quoted strings of the RFC 6749 character sets.
_PARAM = r'[a-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
CHALLENGE = re.compile(rf"Bearer {_PARAM}(, {_PARAM})*")


def challenge_params(value: str) -> dict[str, str]:
    assert CHALLENGE.fullmatch(value), value
    return dict(re.findall(r'([a-z_]+)="([^"]*)"', value))


def check_answer(response: httpx.Response, case: Case, tokens: dict[str, str]) -> None:
    assert response.status_code == case.status, response.text
    said = response.text + repr(response.headers.multi_items())
    for token in tokens.values():
        assert all(piece not in said for piece in secret_pieces(token))
    challenges = response.headers.get_list("www-authenticate")
    if case.status == 200:
        assert challenges == []
        if case.path != "/open":
            assert response.json()["sub"] == case.subject
        return
    assert len(challenges) == 1
    params = challenge_params(challenges[0])
    assert params.pop("realm") == REALM
    assert params.pop("error", None) == case.error
    description = params.pop("error_description", None)
    if case.error is None:  # no credentials: a bare challenge (RFC 6750 §3.1)
        assert description is None
    elif case.description is not None:
        assert description == case.description
    assert params.pop("scope", None) == case.scope
    assert params == {}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body.get("error") == case.error
    assert set(body) <= {"error", "error_description"}


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_table(
    servers: dict[str, str], tokens: dict[str, str], framework: str, case: Case
) -> None:
    with httpx.Client(base_url=servers[framework]) as client:
        response = client.request(case.method, case.path, **case.request(tokens))
    check_answer(response, case, tokens)


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_an_unreachable_authorization_server_is_503_with_retry_after(
    as_provider: OIDCProvider, tokens: dict[str, str], framework: str
) -> None:
    with loopback_socket() as dead:  # bound, never listening: connections are refused
        port = dead.getsockname()[1]
        options = app_options(as_provider, issuer=f"http://127.0.0.1:{port}")
        with serve(framework, **options) as url, httpx.Client(base_url=url) as client:
            response = client.get("/items", headers={"Authorization": f"Bearer {tokens['rs256']}"})
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert (
        challenge_params(response.headers["www-authenticate"])["error"] == "temporarily_unavailable"
    )


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_debug_mode_still_answers_rfc6750(
    as_provider: OIDCProvider, tokens: dict[str, str], framework: str
) -> None:
    with (
        serve(framework, debug=True, **app_options(as_provider)) as url,
        httpx.Client(base_url=url) as client,
    ):
        for case in CASES:
            check_answer(
                client.request(case.method, case.path, **case.request(tokens)), case, tokens
            )


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_query_tokens_when_enabled(
    as_provider: OIDCProvider, tokens: dict[str, str], framework: str
) -> None:
    options = app_options(as_provider, allow_query_token=True)
    with serve(framework, **options) as url, httpx.Client(base_url=url) as client:
        assert client.get("/items", params={"access_token": tokens["rs256"]}).status_code == 200
        both = client.get(
            "/items", params={"access_token": tokens["rs256"]}, **_auth(tokens["rs256"])
        )
        assert both.status_code == 400


@pytest.mark.parametrize("framework", ["quart", "flask", "fastapi"])
def test_form_body_tokens_when_enabled(
    as_provider: OIDCProvider, tokens: dict[str, str], framework: str
) -> None:
    options = app_options(as_provider, allow_form_token=True)
    with serve(framework, **options) as url, httpx.Client(base_url=url) as client:
        assert client.post("/items", data={"access_token": tokens["rs256"]}).status_code == 200
        assert client.post("/items", data={"access_token": "x", "other": "y"}).status_code == 401


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
def test_options_preflight_is_never_refused(servers: dict[str, str], framework: str) -> None:
    with httpx.Client(base_url=servers[framework]) as client:
        response = client.options("/items", headers={"Origin": "https://app.test"})
    assert response.status_code not in (400, 401, 403)
    assert "www-authenticate" not in response.headers


def _auth(token: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def test_the_table_is_what_the_docs_show() -> None:
    """docs/adapters.md renders this table; keep both in step."""
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert json.dumps(names)  # every case has a stable, unique id
