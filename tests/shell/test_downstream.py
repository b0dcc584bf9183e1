"""Downstream calls: the service's own token and exchanged tokens, cached and refreshed once;
the proxy header allowlist."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from oauth_shield import ConfigurationError, downstream
from oauth_shield.downstream import (
    ClientCredentialsAuth,
    DownstreamAuthError,
    TokenExchanger,
    forward_headers,
    response_headers,
)
from oauth_shield.testing import LocalIssuer, serve_asgi

SECRET = "s3cr:et+with/odd%chars"


class Downstream:
    """An API behind us that records the Authorization it receives; the issuer answers /token."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self.seen: list[str] = []
        self.reject_next = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "issuer.test":
            return self.issuer.handle(request)
        self.seen.append(request.headers.get("Authorization", ""))
        if self.reject_next:
            self.reject_next -= 1
            return httpx.Response(401)
        claims = self.issuer.minted.get(self.seen[-1].removeprefix("Bearer "), {})
        return httpx.Response(200, json={"aud": claims.get("aud"), "sub": claims.get("sub")})


@pytest.fixture
def api(issuer: LocalIssuer) -> Downstream:
    issuer.clients["service"] = SECRET
    return Downstream(issuer)


def transports(api: Downstream) -> dict[str, Any]:
    transport = httpx.MockTransport(api)
    return {"transport": transport, "async_transport": transport}


def credentials(api: Downstream, **options: Any) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        token_endpoint="https://issuer.test/token",
        client_id="service",
        client_secret=SECRET,
        **transports(api),
        **options,
    )


def test_client_credentials_sync_then_cached(api: Downstream, issuer: LocalIssuer) -> None:
    auth = credentials(api, resource="https://orders.test", scope="orders:read")
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        first = client.get("https://orders.test/x").json()
        client.get("https://orders.test/y")
    assert first == {"aud": "https://orders.test", "sub": "service"}
    assert issuer.requests["/token"] == 1
    assert api.seen[0] == api.seen[1] and api.seen[0].startswith("Bearer eyJ")


async def test_concurrent_async_calls_make_one_token_request(
    api: Downstream, issuer: LocalIssuer
) -> None:
    auth = credentials(api)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        answers = await asyncio.gather(*(client.get("https://orders.test/x") for _ in range(50)))
    assert {r.status_code for r in answers} == {200}
    assert issuer.requests["/token"] == 1


def test_the_token_is_refreshed_before_it_expires(
    api: Downstream, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(downstream.time, "monotonic", lambda: now[0])
    auth = credentials(api)  # LocalIssuer tokens live 300 s: refreshed from 270 s on
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        client.get("https://orders.test/x")
        now[0] += 269
        client.get("https://orders.test/x")
        assert issuer.requests["/token"] == 1
        now[0] += 2
        client.get("https://orders.test/x")
    assert issuer.requests["/token"] == 2


def test_a_401_downstream_retries_once_with_a_fresh_token(
    api: Downstream, issuer: LocalIssuer
) -> None:
    auth = credentials(api)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        client.get("https://orders.test/x")
        api.reject_next = 1
        assert client.get("https://orders.test/x").status_code == 200
        api.reject_next = 2
        assert client.get("https://orders.test/x").status_code == 401  # once, not forever
    assert issuer.requests["/token"] == 3  # the first token, then one per 401 retried


def test_the_secret_is_form_encoded_in_basic_auth(api: Downstream, issuer: LocalIssuer) -> None:
    seen: list[str] = []

    def spy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            seen.append(request.headers["Authorization"])
        return api(request)

    auth = ClientCredentialsAuth(
        token_endpoint="https://issuer.test/token",
        client_id="service",
        client_secret=SECRET,
        transport=httpx.MockTransport(spy),
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(spy)) as client:
        client.get("https://orders.test/x")
    client_id, _, secret = base64.b64decode(seen[0].removeprefix("Basic ")).decode().partition(":")
    assert (unquote_plus(client_id), unquote_plus(secret)) == ("service", SECRET)
    assert ":" not in secret  # encoded: only the separator is a bare colon


@pytest.mark.parametrize(
    "token_endpoint_answer",
    [
        lambda: httpx.Response(
            401, json={"error": "invalid_client", "error_description": "leak-canary-body"}
        ),
        lambda: httpx.Response(500, text="leak-canary-body"),
        lambda: httpx.Response(200, json={"token_type": "Bearer"}),
    ],
    ids=["401", "500", "no-token"],
)
def test_a_failed_grant_raises_without_secrets(
    api: Downstream, token_endpoint_answer: Callable[[], httpx.Response]
) -> None:
    def failing(request: httpx.Request) -> httpx.Response:
        return token_endpoint_answer() if request.url.path == "/token" else api(request)

    auth = ClientCredentialsAuth(
        token_endpoint="https://issuer.test/token",
        client_id="service",
        client_secret=SECRET,
        transport=httpx.MockTransport(failing),
    )
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(failing)) as client,
        pytest.raises(DownstreamAuthError) as caught,
    ):
        client.get("https://orders.test/x")
    text = (
        f"{caught.value} {caught.value!r} {caught.value.__cause__!r} {caught.value.__context__!r}"
    )
    assert (
        SECRET not in text
        and "leak-canary-body" not in text
        and "https://issuer.test/token" in text
    )
    assert api.seen == []  # the downstream call was never made without a token


def test_a_token_answer_without_a_token_says_so(api: Downstream) -> None:
    """...naming the endpoint without its query: some gateways sign the token endpoint's URL
    (``?sig=...``), a secret as in any URL."""

    def no_token(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"token_type": "Bearer"})

    auth = ClientCredentialsAuth(
        token_endpoint="https://issuer.test/token?sig=URL-SIGNATURE",
        client_id="service",
        client_secret=SECRET,
        transport=httpx.MockTransport(no_token),
    )
    with (
        httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client,
        pytest.raises(DownstreamAuthError, match=r"\(no access_token in the answer\)$") as caught,
    ):
        client.get("https://orders.test/x")
    said = f"{caught.value} {caught.value!r} {auth!r}"
    assert "URL-SIGNATURE" not in said and "https://issuer.test/token" in said


async def test_a_failing_token_endpoint_is_asked_once_a_second(
    api: Downstream, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(downstream.time, "monotonic", lambda: now[0])
    issuer.clients["service"] = "another secret"  # the grant fails with invalid_client
    auth = credentials(api)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
        for _ in range(20):
            with pytest.raises(DownstreamAuthError, match="invalid_client"):
                await client.get("https://orders.test/x")
        assert issuer.requests["/token"] == 1
        issuer.clients["service"] = SECRET
        now[0] += 1
        assert (await client.get("https://orders.test/x")).status_code == 200
    assert issuer.requests["/token"] == 2


@pytest.mark.parametrize("factory", [ClientCredentialsAuth, TokenExchanger])
def test_the_token_endpoint_must_be_https(factory: Any) -> None:
    options = {"client_id": "service", "client_secret": SECRET}
    with pytest.raises(ConfigurationError, match="token_endpoint must use https"):
        factory(token_endpoint="http://issuer.example/token", **options)
    factory(token_endpoint="http://127.0.0.1:8080/token", **options)  # loopback: fine
    factory(token_endpoint="http://issuer.example/token", insecure_http=True, **options)


async def test_token_exchange_gives_each_caller_their_own_downstream_token(
    api: Downstream, issuer: LocalIssuer
) -> None:
    exchanger = TokenExchanger(
        token_endpoint="https://issuer.test/token",
        client_id="service",
        client_secret=SECRET,
        audience="https://billing.test",
        **transports(api),
    )
    alice, bob = issuer.token(sub="alice"), issuer.token(sub="bob")
    results = {}
    for name, caller in (("alice", alice), ("bob", bob)):
        async with httpx.AsyncClient(
            auth=exchanger.auth(caller), transport=httpx.MockTransport(api)
        ) as client:
            answers = await asyncio.gather(
                *(client.get("https://billing.test/x") for _ in range(10))
            )
        results[name] = {r.json()["sub"] for r in answers}
        assert {r.json()["aud"] for r in answers} == {"https://billing.test"}
    assert results == {"alice": {"alice"}, "bob": {"bob"}}
    assert issuer.requests["/token"] == 2  # one exchange per caller, however many calls
    assert alice not in api.seen[0] and bob not in "".join(api.seen)  # never forwarded as is
    assert "eyJ" not in repr(exchanger.auth(alice))


def test_forward_headers_is_an_allowlist_without_credentials_or_hop_by_hop() -> None:
    inbound = [
        ("Authorization", "Bearer t"),
        ("Cookie", "a=b"),
        ("X-API-Key", "osk_x"),
        ("Host", "api"),
        ("Accept", "application/json"),
        ("Traceparent", "00-abc"),
        ("X-Request-ID", "r1"),
        ("Connection", "keep-alive, X-Request-ID"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("X-Internal-Debug", "1"),
        ("Accept", "text/html"),
    ]
    assert forward_headers(inbound) == [
        ("Accept", "application/json"),
        ("Traceparent", "00-abc"),
        ("Accept", "text/html"),  # repeated headers stay repeated
    ]
    assert forward_headers(inbound, allow=["authorization", "x-internal-debug"]) == [
        ("X-Internal-Debug", "1")
    ]


def test_response_headers_strip_credentials_cookies_and_hop_by_hop() -> None:
    upstream = {
        "Content-Type": "application/json",
        "Set-Cookie": "sid=1",
        "WWW-Authenticate": "Bearer",
        "Transfer-Encoding": "chunked",
        "Content-Length": "10",
        "X-Request-ID": "r1",
    }
    assert response_headers(upstream) == [
        ("Content-Type", "application/json"),
        ("X-Request-ID", "r1"),
    ]
    repeated = httpx.Headers([("Link", "<a>"), ("Link", "<b>"), ("Set-Cookie", "sid=1")])
    assert response_headers(repeated) == [("link", "<a>"), ("link", "<b>")]  # as httpx names them


def test_raw_asgi_headers_from_a_real_server() -> None:
    """ASGI raw headers are (bytes, bytes) pairs, as uvicorn gives them in the scope and as
    httpx keeps them in ``headers.raw``: names are compared as text, whatever their type or
    case, and the pairs come back as given (bytes, repeats and latin-1 values intact)."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(list(scope["headers"]))
        relayed = [
            (b"Content-Type", b"text/plain"),
            (b"Set-Cookie", b"sid=1"),
            (b"set-cookie", b"theme=dark"),
            (b"WWW-Authenticate", b'Bearer error="invalid_token"'),
            (b"X-Request-ID", b"r1"),
            (b"X-Name", "café".encode("latin-1")),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": relayed})
        await send({"type": "http.response.body", "body": b"ok"})

    inbound = [
        (b"Authorization", b"Bearer t"),
        (b"Cookie", b"a=b"),
        (b"X-API-Key", b"osk_x"),
        (b"Accept", b"application/json"),
        (b"traceparent", b"00-abc"),
        (b"X-Trace", b"t1"),
        (b"Connection", b"keep-alive, X-Trace"),
        (b"Accept", b"text/html"),
        (b"Accept-Language", "fr-CH, café".encode("latin-1")),
    ]
    with serve_asgi(app) as url:
        response = httpx.get(url, headers=inbound)
    raw = seen[0]
    assert (b"authorization", b"Bearer t") in raw  # uvicorn's names are lower-case bytes
    assert forward_headers(raw) == [
        (b"user-agent", b"python-httpx/" + httpx.__version__.encode()),  # httpx's own
        (b"accept", b"application/json"),
        (b"traceparent", b"00-abc"),
        (b"accept", b"text/html"),
        (b"accept-language", "fr-CH, café".encode("latin-1")),
    ]
    assert forward_headers(raw, allow=["X-Trace", b"cookie", "authorization"]) == []
    relayed = response_headers(response.headers.raw)  # as received: uvicorn's own, then ours
    names = {name.lower() for name, _ in relayed}
    assert not names & {b"set-cookie", b"www-authenticate", b"content-length"}
    kept = [pair for pair in relayed if pair[0].lower() not in (b"date", b"server")]
    # As received: the case of each name is the server's (h11 keeps it, httptools does not).
    assert kept == [pair for pair in response.headers.raw if pair in kept]
    assert [(name.lower(), value) for name, value in kept] == [
        (b"content-type", b"text/plain"),
        (b"x-request-id", b"r1"),
        (b"x-name", "café".encode("latin-1")),
    ]
    mixed = [(b"Set-Cookie", b"a=1"), ("WWW-Authenticate", "Bearer"), (b"X-Ok", b"1")]
    assert response_headers(mixed) == [(b"X-Ok", b"1")]
    assert response_headers({b"Set-Cookie": b"a=1", b"Link": b"<a>"}) == [(b"Link", b"<a>")]
