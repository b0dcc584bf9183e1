"""DPoP (RFC 9449) in every adapter, over real HTTP, with tokens from the real oidc-provider.

A client that makes proofs as a client library does (``tests.dpop.DPoPClient``) calls the
Quart, Flask, ASGI and FastAPI apps of ``tests.adapters.apps``; the hostile requests are
the ones a thief or a confused client would send.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import flask_oauth_shield
import httpx
import pytest
import quart_oauth_shield
from fastapi import FastAPI, Security
from flask import Flask
from quart import Quart

from oauth_shield import AccessToken, TokenValidator
from oauth_shield.fastapi import FastAPIShield
from oauth_shield.testing import DPoPKey, serve_asgi, serve_wsgi
from tests.dpop import DPoPClient
from tests.provider import OIDCProvider

from .apps import FRAMEWORKS
from .conftest import app_options, serve

NONCE_SECRET = "a nonce secret shared by the API's workers"
ALGS = 'algs="ES256 EdDSA PS256 RS256"'


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey("ES256")


@pytest.fixture(scope="module")
def bound(as_provider: OIDCProvider, key: DPoPKey) -> dict[str, str]:
    """DPoP-bound tokens from the provider: a JWT and an opaque one."""
    return {
        "jwt": as_provider.dpop_token(key)["access_token"],
        "opaque": as_provider.dpop_token(key, "client-dpop-opaque")["access_token"],
    }


@pytest.fixture(scope="module")
def allowed(as_provider: OIDCProvider) -> Iterator[dict[str, str]]:
    """Every framework's app with dpop="allowed"."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(serve(name, **app_options(as_provider, dpop="allowed")))
            for name in FRAMEWORKS
        }


@pytest.fixture(scope="module")
def required(as_provider: OIDCProvider) -> Iterator[dict[str, str]]:
    """Every framework's app with dpop="required" and server nonces."""
    options = app_options(
        as_provider, dpop="required", dpop_nonce=True, dpop_nonce_secret=NONCE_SECRET
    )
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serve(name, **options)) for name in FRAMEWORKS}


def challenges(response: httpx.Response) -> str:
    return str(response.headers.get("WWW-Authenticate", ""))


def refused(response: httpx.Response, error: str, *secrets: str) -> None:
    """A 401 with ``error`` that says nothing of what the client sent."""
    assert response.status_code == 401, response.text
    assert response.json()["error"] == error
    said = response.text + json.dumps(dict(response.headers))
    for secret in secrets:
        assert secret not in said


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["jwt", "opaque"])
def test_bound_tokens_with_proofs(
    allowed: dict[str, str], framework: str, kind: str, key: DPoPKey, bound: dict[str, str]
) -> None:
    client = DPoPClient(key, bound[kind])
    with httpx.Client(base_url=allowed[framework], auth=client) as http:
        for _ in range(2):  # the second one: a known token, a new proof
            response = http.get("/items", params={"page": 2})
            assert response.status_code == 200, response.text
            assert response.json()["client"].startswith("client-dpop")
            assert "DPoP-Nonce" not in response.headers  # nonces are off
        assert http.post("/items").status_code == 200
    # The same proof again, to the same URL: a replay.
    replayed = httpx.get(
        f"{allowed[framework]}/items?page=2",
        headers={"Authorization": f"DPoP {bound[kind]}", "DPoP": client.proofs[0]},
    )
    refused(replayed, "invalid_dpop_proof", bound[kind], client.proofs[0])
    assert challenges(replayed).startswith(
        'Bearer realm="test-api", DPoP realm="test-api", error="invalid_dpop_proof"'
    )
    assert challenges(replayed).endswith(ALGS)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_hostile_requests(
    allowed: dict[str, str],
    framework: str,
    key: DPoPKey,
    bound: dict[str, str],
    tokens: dict[str, str],
) -> None:
    base = allowed[framework]
    token = bound["jwt"]
    url = f"{base}/items"

    def send(authorization: str, *proofs: str, method: str = "GET", **headers: str) -> Any:
        pairs = [("Authorization", authorization), *(("DPoP", p) for p in proofs)]
        pairs += list(headers.items())
        return httpx.request(method, url, headers=pairs)

    proof = key.proof("GET", url, access_token=token)
    thief = DPoPKey("ES256")
    host = base.removeprefix("http://")
    cases = {
        "as bearer": (send(f"Bearer {token}"), "invalid_token"),
        "no proof": (send(f"DPoP {token}"), "invalid_dpop_proof"),
        "two proofs": (send(f"DPoP {token}", proof, proof), "invalid_dpop_proof"),
        "another method": (send(f"DPoP {token}", proof, method="POST"), "invalid_dpop_proof"),
        "another token": (
            send(f"DPoP {token}", key.proof("GET", url, access_token=bound["opaque"])),
            "invalid_dpop_proof",
        ),
        "the thief's key": (
            send(f"DPoP {token}", thief.proof("GET", url, access_token=token)),
            "invalid_token",
        ),
        "a bearer token with a proof": (
            send(f"Bearer {tokens['es256']}", key.proof("GET", url, access_token=tokens["es256"])),
            "invalid_dpop_proof",
        ),
        "a plain token under DPoP": (
            send(f"DPoP {tokens['es256']}", key.proof("GET", url, access_token=tokens["es256"])),
            "invalid_token",
        ),
        "trailing slash": (
            send(f"DPoP {token}", key.proof("GET", url + "/", access_token=token)),
            "invalid_dpop_proof",
        ),
        "another host behind X-Forwarded-Host": (
            send(
                f"DPoP {token}",
                key.proof("GET", "https://evil.test/items", access_token=token),
                **{"X-Forwarded-Host": "evil.test", "X-Forwarded-Proto": "https"},
            ),
            "invalid_dpop_proof",
        ),
        "the default port spelled out is the same URL, but not another port": (
            send(
                f"DPoP {token}",
                key.proof("GET", f"http://{host.split(':')[0]}:1/items", access_token=token),
            ),
            "invalid_dpop_proof",
        ),
    }
    for name, (response, error) in cases.items():
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"] == error, name
        for secret in (token, proof):
            assert secret not in response.text + json.dumps(dict(response.headers)), name
    # The bearer challenge carries a bearer error; a DPoP request's, the DPoP one.
    assert 'Bearer realm="test-api", error="invalid_token"' in challenges(cases["as bearer"][0])
    assert 'DPoP realm="test-api", error="invalid_token"' in challenges(cases["the thief's key"][0])
    # Bearer tokens still work beside DPoP ones, and a good DPoP request after all of it.
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {tokens['es256']}"})
    assert bearer.status_code == 200
    good = send(f"DPoP {token}", key.proof("GET", url, access_token=token))
    assert good.status_code == 200, good.text


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_required_with_nonces(
    required: dict[str, str],
    framework: str,
    key: DPoPKey,
    bound: dict[str, str],
    tokens: dict[str, str],
) -> None:
    base = required[framework]
    # A bearer token is another scheme here: a bare DPoP challenge, no Bearer one.
    bearer = httpx.get(f"{base}/items", headers={"Authorization": f"Bearer {tokens['es256']}"})
    assert bearer.status_code == 401
    assert challenges(bearer) == f'DPoP realm="test-api", {ALGS}'  # RFC 9449 §7.1
    # The nonce flow: asked for one, retried with it, then sent the current one each time.
    client = DPoPClient(key, bound["jwt"])
    with httpx.Client(base_url=base, auth=client) as http:
        first = http.get("/items")
        assert first.status_code == 200, first.text
        assert len(client.proofs) == 2  # the first proof had no nonce: use_dpop_nonce, retry
        assert first.headers["DPoP-Nonce"] == client.nonce
        assert http.get("/any").status_code == 200
        assert len(client.proofs) == 3  # the nonce was known: no round trip
    stale = httpx.get(
        f"{base}/items",
        headers={
            "Authorization": f"DPoP {bound['jwt']}",
            "DPoP": key.proof("GET", f"{base}/items", access_token=bound["jwt"], nonce="x" * 22),
        },
    )
    refused(stale, "use_dpop_nonce", bound["jwt"])
    assert stale.headers["DPoP-Nonce"] == client.nonce
    assert challenges(stale).startswith('DPoP realm="test-api", error="use_dpop_nonce"')


def test_nonces_are_shared_across_frameworks(
    required: dict[str, str], key: DPoPKey, bound: dict[str, str]
) -> None:
    """Workers sharing the nonce secret accept each other's nonces (here: four apps)."""
    client = DPoPClient(key, bound["jwt"])
    for base in required.values():
        assert httpx.get(f"{base}/items", auth=client).status_code == 200
    assert len(client.proofs) == len(required) + 1  # one use_dpop_nonce round trip in all


def test_metadata_advertises_dpop(as_provider: OIDCProvider) -> None:
    options = app_options(as_provider, dpop="required", resource=True)
    for framework in ("asgi", "fastapi", "quart", "flask"):
        with serve(framework, **options) as base:
            document = httpx.get(f"{base}/.well-known/oauth-protected-resource").json()
        assert document["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA", "PS256", "RS256"]
        assert document["dpop_bound_access_tokens_required"] is True


# --- a per-route policy --------------------------------------------------------------------


def _quart(options: dict[str, Any]) -> Quart:
    app = Quart("dpop-routes")
    shield = quart_oauth_shield.Shield(app, realm="test-api", **options)

    @app.get("/open-to-both")
    @shield.require("read")
    async def both() -> dict[str, Any]:
        return {"bound": quart_oauth_shield.current_token.dpop_bound}

    @app.get("/payments")
    @shield.require("read", dpop="required")
    async def payments() -> dict[str, Any]:
        return {"jkt": quart_oauth_shield.current_token.jkt}

    return app


def _flask(options: dict[str, Any]) -> Flask:
    app = Flask("dpop-routes")
    shield = flask_oauth_shield.Shield(app, realm="test-api", **options)

    @app.get("/open-to-both")
    @shield.require("read")
    def both() -> dict[str, Any]:
        return {"bound": flask_oauth_shield.current_token.dpop_bound}

    @app.get("/payments")
    @shield.require("read", dpop="required")
    def payments() -> dict[str, Any]:
        return {"jkt": flask_oauth_shield.current_token.jkt}

    return app


def _fastapi(options: dict[str, Any]) -> FastAPI:
    shield = FastAPIShield(TokenValidator(**options), realm="test-api")
    app = shield.init_app(FastAPI())

    @app.get("/open-to-both")
    async def both(token: AccessToken = Security(shield, scopes=["read"])) -> Any:
        return {"bound": token.dpop_bound}

    @app.get("/payments")
    async def payments(token: AccessToken = Security(shield.dpop_required, scopes=["read"])) -> Any:
        return {"jkt": token.jkt}

    return app


@pytest.mark.parametrize("make", [_quart, _flask, _fastapi], ids=["quart", "flask", "fastapi"])
def test_a_route_requires_dpop(
    as_provider: OIDCProvider,
    make: Any,
    key: DPoPKey,
    bound: dict[str, str],
    tokens: dict[str, str],
) -> None:
    app = make(app_options(as_provider, dpop="allowed"))
    server = serve_wsgi(app) if isinstance(app, Flask) else serve_asgi(app)
    bearer = {"Authorization": f"Bearer {tokens['es256']}"}
    with server as base:
        assert httpx.get(f"{base}/open-to-both", headers=bearer).json() == {"bound": False}
        refusal = httpx.get(f"{base}/payments", headers=bearer)
        assert refusal.status_code == 401 and "Bearer" not in challenges(refusal)
        assert challenges(refusal).startswith('DPoP realm="test-api"')
        paid = httpx.get(f"{base}/payments", auth=DPoPClient(key, bound["jwt"]))
        assert paid.json() == {"jkt": key.jkt}
