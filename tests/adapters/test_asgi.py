"""BearerAuthMiddleware at the ASGI level: which paths it covers, what it publishes, lifespan,
websockets, and bodies it reads on the way."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from oauth_shield import AccessToken, ConfigurationError, TokenValidator
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.testing import LocalIssuer
from tests.conftest import answer_lifespan


class App:
    """An ASGI app that records what reached it."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] == "http":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            self.bodies.append(body)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})


async def call(
    app: Any, scope: dict[str, Any], body_chunks: list[bytes] = ()
) -> list[dict[str, Any]]:  # type: ignore[assignment]
    chunks = list(body_chunks) or [b""]
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http(path: str, token: str | None = None, method: str = "GET", **extra: Any) -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    headers += extra.pop("headers", [])
    return {
        "type": "http",
        "path": path,
        "method": method,
        "headers": headers,
        "query_string": b"",
        **extra,
    }


def test_the_longest_prefix_wins_and_matches_whole_segments(validator: TokenValidator) -> None:
    middleware = BearerAuthMiddleware(
        App(), validator=validator, scopes={"/api": ["read"], "/api/admin": ["admin"], "/": []}
    )
    assert middleware.required_for("/api") == {"read"}
    assert middleware.required_for("/api/items/1") == {"read"}
    assert middleware.required_for("/api/admin") == {"admin"}
    assert middleware.required_for("/api/administrators") == {"read"}
    assert middleware.required_for("/apiary") == frozenset()  # only "/" covers it
    only_api = BearerAuthMiddleware(App(), validator=validator, scopes={"/api": ["read"]})
    assert only_api.required_for("/apiary") is None
    assert only_api.required_for("/") is None
    everywhere = BearerAuthMiddleware(App(), validator=validator, scopes=["read"])
    assert everywhere.required_for("/anything/at/all") == {"read"}


def test_bad_configuration_fails_at_construction(validator: TokenValidator) -> None:
    with pytest.raises(ConfigurationError):
        BearerAuthMiddleware(App(), validator=validator, scopes={"api": ["read"]})
    with pytest.raises(ConfigurationError):
        BearerAuthMiddleware(App(), validator=validator, scopes={"/api": ["re ad"]})
    with pytest.raises(ConfigurationError):
        BearerAuthMiddleware(App(), validator=validator, realm='a"b')


async def test_uncovered_paths_pass_through_untouched(validator: TokenValidator) -> None:
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, scopes={"/api": ["read"]})
    scope = http("/public")
    sent = await call(middleware, scope)
    assert sent[0]["status"] == 200
    assert app.scopes == [scope]  # the very same object: nothing added


async def test_the_token_is_published_in_auth_and_state(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, scopes=["read"])
    original = http("/items", issuer.token(), state={"db": "pool"})
    await call(middleware, original)
    seen = app.scopes[0]
    assert isinstance(seen["auth"], AccessToken)
    assert seen["state"] == {
        "db": "pool",
        "access_token": seen["auth"],
        "bearer": seen["state"]["bearer"],
    }
    assert seen["state"]["bearer"].reveal() == original["headers"][0][1].decode()[len("Bearer ") :]
    assert "eyJ" not in repr(seen["state"])  # the raw token only behind a masked Secret
    assert "auth" not in original and original["state"] == {"db": "pool"}  # the caller's scope


async def test_a_refusal_is_answered_by_the_middleware(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, scopes=["admin"])
    sent = await call(middleware, http("/items", issuer.token(scope="read")))
    assert app.scopes == []
    assert sent[0]["status"] == 403
    headers = dict(sent[0]["headers"])
    assert headers[b"www-authenticate"].startswith(
        b'Bearer realm="https://api.test", error="insufficient_scope"'
    )
    assert int(headers[b"content-length"]) == len(sent[1]["body"])
    assert json.loads(sent[1]["body"])["error"] == "insufficient_scope"


async def test_a_form_body_is_read_for_tokens_and_replayed(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, scopes=["read"])
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    token = issuer.token()
    sent = await call(middleware, http("/items", token, "POST", headers=form), [b"a=1&", b"b=2"])
    assert sent[0]["status"] == 200
    assert app.bodies == [b"a=1&b=2"]
    second = await call(
        middleware, http("/items", token, "POST", headers=form), [b"access_token=x"]
    )
    assert second[0]["status"] == 400


async def test_websockets_are_refused_before_accept(validator: TokenValidator) -> None:
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, scopes=["read"])
    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    assert await call(middleware, scope) == [{"type": "websocket.close", "code": 1008}]
    with_extension = {**scope, "extensions": {"websocket.http.response": {}}}
    sent = await call(middleware, with_extension)
    assert [m["type"] for m in sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert sent[0]["status"] == 401
    assert app.scopes == []


async def test_lifespan_passes_through_and_closes_the_validator(
    validator: TokenValidator, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = []
    original = validator.aclose

    async def aclose() -> None:
        closed.append(True)
        await original()

    monkeypatch.setattr(validator, "aclose", aclose)
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, scopes=["read"])
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert closed == [True]


async def test_options_are_exempt_unless_told_otherwise(validator: TokenValidator) -> None:
    app = App()
    assert (
        await call(BearerAuthMiddleware(app, validator=validator), http("/x", method="OPTIONS"))
    )[0]["status"] == 200
    strict = BearerAuthMiddleware(app, validator=validator, exempt_options=False)
    assert (await call(strict, http("/x", method="OPTIONS")))[0]["status"] == 401


async def test_a_second_lifespan_cycle_serves_again(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    """Shutdown closes the validator, and a closed validator refuses to work: the next
    startup opens it again (a test suite runs the same app's lifespan once per test)."""
    middleware = BearerAuthMiddleware(App(), validator=validator, scopes=["read"])
    for _ in range(2):
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        started = asyncio.Event()

        async def send(message: dict[str, Any], started: asyncio.Event = started) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()

        incoming.put_nowait({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(middleware({"type": "lifespan"}, incoming.get, send))
        await started.wait()
        reply = await call(middleware, http("/items", issuer.token(scope="read")))
        assert reply[0]["status"] == 200
        incoming.put_nowait({"type": "lifespan.shutdown"})
        await lifespan
    assert issuer.requests["/jwks"] == 1
