"""The MCP authorization flow with the ``mcp`` SDK's own client, against MCP servers built with
each SDK and protected by ``MCPShield``, over real HTTP, with tokens from oidc-provider."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from oauth_shield.mcp import MCPShield
from oauth_shield.testing import loopback_socket, serve_asgi
from tests.provider import OIDCProvider

from .servers import SDKS

REDIRECT_URI = "http://localhost:3030/callback"


@contextlib.contextmanager
def serve_mcp(sdk: str, provider: OIDCProvider, **options: Any) -> Iterator[str]:
    """Serve ``sdk``'s server on a port known before it is built; yields the MCP URL."""
    sock = loopback_socket()
    resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    shield = MCPShield(issuer=provider.issuer, resource=resource, scopes=["read"], **options)
    with serve_asgi(SDKS[sdk](shield), sock=sock):
        yield resource


class Browser:
    """What a person's browser does with the authorization URL, without a person: the test
    provider logs in and consents at once; the code comes back on the redirect URI."""

    def __init__(self) -> None:
        self.result: asyncio.Future[Any] | None = None

    async def redirect(self, url: str) -> None:
        from mcp.client.auth import AuthorizationCodeResult

        self.result = asyncio.get_running_loop().create_future()
        async with httpx.AsyncClient() as browser:
            for _ in range(10):
                response = await browser.get(url)
                url = response.headers.get("location", "")
                if not response.is_redirect:
                    raise AssertionError(f"the provider stopped at {response.status_code}")
                url = str(response.url.join(url))
                if url.startswith(REDIRECT_URI):
                    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
                    assert "error" not in query, query
                    self.result.set_result(
                        AuthorizationCodeResult(
                            code=query["code"], state=query.get("state"), iss=query.get("iss")
                        )
                    )
                    return
        raise AssertionError("too many redirects")

    async def callback(self) -> Any:
        assert self.result is not None
        return await self.result


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: Any = None
        self.client: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client

    async def set_client_info(self, client_info: Any) -> None:
        self.client = client_info


async def call_tools(url: str, *calls: tuple[str, dict[str, Any]]) -> tuple[list[str], Any]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientMetadata

    browser = Browser()
    storage = MemoryStorage()
    auth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="oauth_shield test",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    answers = []
    async with (
        httpx2.AsyncClient(auth=auth, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            answers.append(result.content[0].text)
    return answers, storage.tokens


@pytest.mark.parametrize("sdk", list(SDKS))
def test_the_sdk_client_completes_the_whole_flow(as_provider: OIDCProvider, sdk: str) -> None:
    with serve_mcp(sdk, as_provider) as url:
        answers, tokens = asyncio.run(call_tools(url, ("whoami", {})))
    client_id, subject, scopes, fingerprint = answers[0].split("|")
    assert subject == "mcp-user" and client_id
    assert "read" in scopes.split()
    assert fingerprint and fingerprint not in tokens.access_token  # never the raw token
    assert tokens.access_token[-8:] not in answers[0]


def test_a_tool_needing_another_scope_steps_up_through_the_sdk_client(
    as_provider: OIDCProvider,
) -> None:
    # The first token carries what the 401 challenge named ("read"); delete_item answers 403
    # naming "read write"; the SDK's client authorizes again for both and retries.
    with serve_mcp("mcp", as_provider) as url:
        answers, tokens = asyncio.run(call_tools(url, ("delete_item", {"item_id": "7"})))
    assert answers == ["deleted 7"]
    assert set(tokens.scope.split()) >= {"read", "write"}


# --- the answers themselves, over raw HTTP ---------------------------------------------------

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}


def challenge(response: httpx.Response) -> dict[str, str]:
    from tests.adapters.test_rfc6750 import challenge_params

    return challenge_params(response.headers["www-authenticate"])


def metadata_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-protected-resource{parts.path}"


@pytest.mark.parametrize("sdk", list(SDKS))
def test_refusals_name_the_metadata_and_what_to_ask_for(
    as_provider: OIDCProvider, sdk: str
) -> None:
    with serve_mcp(sdk, as_provider) as url, httpx.Client() as client:
        wrong_audience = as_provider.token("client-rs256", scope="read write")  # the API's
        read_only = as_provider.token("client-rs256", resource=url, scope="read")
        anonymous = client.post(url, json={**CALL, "method": "ping"}, headers=MCP_HEADERS)
        other = client.post(
            url, json=CALL, headers={**MCP_HEADERS, "Authorization": f"Bearer {wrong_audience}"}
        )
        call = {**CALL, "params": {"name": "delete_item", "arguments": {"item_id": "7"}}}
        short = client.post(
            url, json=call, headers={**MCP_HEADERS, "Authorization": f"Bearer {read_only}"}
        )
        batch = client.post(
            url,
            json=[{**call, "params": {"name": "whoami"}}, call],
            headers={**MCP_HEADERS, "Authorization": f"Bearer {read_only}"},
        )
    assert anonymous.status_code == 401
    assert challenge(anonymous) == {
        "realm": url,
        "scope": "read",
        "resource_metadata": metadata_url(url),
    }
    assert other.status_code == 401  # RFC 8707: a token for another resource
    assert challenge(other)["error"] == "invalid_token"
    assert challenge(other)["resource_metadata"] == metadata_url(url)
    for response in (short, batch):
        assert response.status_code == 403
        params = challenge(response)
        assert params["error"] == "insufficient_scope"
        assert params["scope"] == "read write"  # every scope the call needs, not the missing one
        assert params["resource_metadata"] == metadata_url(url)


@pytest.mark.parametrize("sdk", list(SDKS))
def test_a_session_stays_bound_to_the_principal_that_opened_it(
    as_provider: OIDCProvider, sdk: str
) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    with serve_mcp(sdk, as_provider) as url, httpx.Client() as client:
        owner = as_provider.token("client-rs256", resource=url, scope="read")
        stranger = as_provider.token("client-es256", resource=url, scope="read")
        opened = client.post(
            url, json=initialize, headers={**MCP_HEADERS, "Authorization": f"Bearer {owner}"}
        )
        session = opened.headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        headers = {**MCP_HEADERS, "mcp-session-id": session, "MCP-Protocol-Version": "2025-06-18"}
        mine = client.post(url, json=ping, headers={**headers, "Authorization": f"Bearer {owner}"})
        theirs = client.post(
            url, json=ping, headers={**headers, "Authorization": f"Bearer {stranger}"}
        )
    assert opened.status_code == 200
    assert mine.status_code == 200
    assert theirs.status_code == 404  # the SDK's binding: as if the session did not exist


@pytest.mark.parametrize("sdk", list(SDKS))
def test_a_stopped_provider_is_503_with_retry_after_not_401(sdk: str) -> None:
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    with OIDCProvider() as provider:
        token = provider.token("client-rs256", resource=url, scope="read")
        shield = MCPShield(issuer=provider.issuer, resource=url, scopes=["read"])
    with serve_asgi(SDKS[sdk](shield), sock=sock), httpx.Client() as client:
        response = client.post(
            url,
            json={**CALL, "method": "ping"},
            headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert challenge(response)["error"] == "temporarily_unavailable"
    assert challenge(response)["resource_metadata"] == metadata_url(url)


@pytest.mark.parametrize("sdk", list(SDKS))
def test_a_body_nested_too_deep_to_read_is_400_not_500(as_provider: OIDCProvider, sdk: str) -> None:
    """The tool-scope check reads the JSON-RPC body: one nested past Python's recursion limit
    (50,000 ``[``, under the body cap) is a request it cannot read, not a server error."""
    with serve_mcp(sdk, as_provider) as url, httpx.Client() as client:
        token = as_provider.token("client-rs256", resource=url, scope="read")
        response = client.post(
            url,
            content=b"[" * 50_000,
            headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 400
    assert challenge(response)["error"] == "invalid_request"
