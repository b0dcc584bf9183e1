"""Downstream calls with the service's own token, obtained from the real oidc-provider by the
client-credentials grant, presented to an API that validates it with oauth_shield.

(oidc-provider has no RFC 8693 token exchange; tests/shell/test_downstream.py covers it
against LocalIssuer's token endpoint.)"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from oauth_shield import TokenValidator
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.downstream import ClientCredentialsAuth, DownstreamAuthError
from oauth_shield.testing import serve_asgi
from tests.conftest import answer_lifespan
from tests.provider import API_AUDIENCE, OIDCProvider


async def whoami(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    body = f'{{"sub": "{scope["auth"].subject}"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def token_endpoint(provider: OIDCProvider) -> str:
    return str(
        httpx.get(f"{provider.issuer}/.well-known/openid-configuration").json()["token_endpoint"]
    )


async def test_the_services_own_token_is_accepted_downstream(provider: OIDCProvider) -> None:
    api = BearerAuthMiddleware(
        whoami,
        validator=TokenValidator(issuer=provider.issuer, audience=API_AUDIENCE),
        scopes=["read"],
    )
    auth = ClientCredentialsAuth(
        token_endpoint=token_endpoint(provider),
        client_id="client-rs256",
        client_secret=provider.clients["client-rs256"],
        resource=API_AUDIENCE,
        scope="read",
    )
    provider.reset_stats()
    with serve_asgi(api) as url:
        async with httpx.AsyncClient(auth=auth) as client:
            answers = await asyncio.gather(*(client.get(f"{url}/orders") for _ in range(20)))
        with httpx.Client(auth=auth) as client:
            answers.append(client.get(f"{url}/orders"))
    assert {response.status_code for response in answers} == {200}
    assert {response.json()["sub"] for response in answers} == {"client-rs256"}
    assert provider.stats()["token"] == 1  # one grant for 21 calls, sync and async together


async def test_wrong_credentials_raise_without_the_secret(provider: OIDCProvider) -> None:
    auth = ClientCredentialsAuth(
        token_endpoint=token_endpoint(provider),
        client_id="client-rs256",
        client_secret="not-the-secret",
    )
    async with httpx.AsyncClient(auth=auth) as client:
        with pytest.raises(DownstreamAuthError) as caught:
            await client.get(f"{provider.issuer}/never-reached")
    assert "invalid_client" in str(caught.value)
    assert "not-the-secret" not in f"{caught.value!s} {caught.value!r}"
