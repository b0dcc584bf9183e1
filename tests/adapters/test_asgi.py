"""BearerAuthMiddleware at the ASGI level: which paths it covers, what it publishes, lifespan,
websockets, and bodies it reads on the way."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from oauth_shield import AccessToken, ConfigurationError, TokenValidator
from oauth_shield.asgi import AnonymousUser, BearerAuthMiddleware, TokenUser
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
    everywhere = BearerAuthMiddleware(App(), validator=validator, scopes=["read"])
    assert everywhere.required_for("/anything/at/all") == {"read"}


def test_a_path_nobody_listed_requires_a_token(validator: TokenValidator) -> None:
    only_api = BearerAuthMiddleware(App(), validator=validator, scopes={"/api": ["read"]})
    assert only_api.required_for("/apiary") == frozenset()
    assert only_api.required_for("/") == frozenset()


def test_public_paths_are_exact_or_subtrees(validator: TokenValidator) -> None:
    middleware = BearerAuthMiddleware(
        App(),
        validator=validator,
        scopes={"/api": ["read"], "/docs/admin": ["admin"]},
        public=["/health", "/openapi.json", "/docs/*", "/api/status"],
    )
    assert middleware.required_for("/health") is None
    assert middleware.required_for("/health/") == frozenset()  # exact means exact
    assert middleware.required_for("/healthz") == frozenset()
    assert middleware.required_for("/openapi.json") is None
    assert middleware.required_for("/docs") is None
    assert middleware.required_for("/docs/oauth2-redirect") is None
    assert middleware.required_for("/docs/admin/x") == {"admin"}  # the longer rule wins
    assert middleware.required_for("/docsx") == frozenset()
    assert middleware.required_for("/api/status") is None  # an exact path beats a prefix
    assert middleware.required_for("/api/status/x") == {"read"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scopes": {"api": ["read"]}}, "start with '/'"),
        ({"scopes": {"/api": ["re ad"]}}, "scope tokens"),
        ({"realm": 'a"b'}, "realm"),
        ({"scopes": {}}, "protects nothing"),
        ({"scopes": {"/docs": None}}, "public=[...]"),
        ({"public": "/health"}, "not one string"),
        ({"public": ["/*"]}, "every path public"),
        ({"public": ["health"]}, "start with '/'"),
        ({"public": ["/a/../b"]}, "dot segments"),
        ({"public": ["/docs/*"], "scopes": {"/docs": ["read"]}}, "both public and protected"),
    ],
)
def test_bad_configuration_fails_at_construction(
    validator: TokenValidator, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        BearerAuthMiddleware(App(), validator=validator, **options)


async def test_public_paths_pass_through_with_an_anonymous_user(
    validator: TokenValidator,
) -> None:
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, public=["/health"])
    scope = http("/health")
    sent = await call(middleware, scope)
    assert sent[0]["status"] == 200
    seen = app.scopes[0]
    assert seen["user"] == AnonymousUser() and not seen["user"].is_authenticated
    assert seen["auth"].scopes == frozenset()
    assert "user" not in scope  # the caller's scope is left as it was
    already = http("/health", user="someone")
    await call(middleware, already)
    assert app.scopes[1] is already  # a user set by another middleware is kept


async def test_the_token_is_published_in_auth_and_state(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    app = App()
    middleware = BearerAuthMiddleware(app, validator=validator, scopes=["read"])
    original = http("/items", issuer.token(), state={"db": "pool"})
    await call(middleware, original)
    seen = app.scopes[0]
    assert isinstance(seen["auth"], AccessToken)
    assert seen["user"] == TokenUser(seen["auth"]) and seen["user"].is_authenticated
    assert seen["user"].identity == "user-1" == seen["user"].display_name
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


def test_starlette_sees_its_user_and_auth(issuer: LocalIssuer, clock: Any) -> None:
    """``request.user``, ``request.auth`` and ``@requires`` work as with Starlette's own
    AuthenticationMiddleware, the user pickles (sessions, task queues) without the token."""
    import pickle

    import httpx
    from starlette.applications import Starlette
    from starlette.authentication import requires
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from oauth_shield.testing import serve_asgi

    @requires("read")
    async def me(request: Request) -> JSONResponse:
        pickled = pickle.dumps(request.user)
        copy = pickle.loads(pickled)  # noqa: S301 - our own bytes
        return JSONResponse(
            {
                "user": request.user.display_name,
                "scopes": sorted(request.auth.scopes),
                "copy": copy.identity,
                "same": copy == request.user,
                "pickled": pickled.hex(),
            }
        )

    @requires("admin")
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"admin": True})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"authenticated": request.user.is_authenticated})

    app = Starlette(routes=[Route("/me", me), Route("/admin", admin), Route("/health", health)])
    validator = TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport(), clock=clock
    )
    middleware = BearerAuthMiddleware(app, validator=validator, public=["/health"])
    token = issuer.token(scope="read")
    with serve_asgi(middleware) as url, httpx.Client(base_url=url) as client:
        auth = {"Authorization": f"Bearer {token}"}
        seen = client.get("/me", headers=auth).json()
        pickled = bytes.fromhex(seen.pop("pickled"))
        assert seen == {"user": "user-1", "scopes": ["read"], "copy": "user-1", "same": True}
        assert all(piece.encode() not in pickled for piece in token.split("."))
        assert client.get("/admin", headers=auth).status_code == 403  # Starlette's @requires
        assert client.get("/health").json() == {"authenticated": False}
        assert client.get("/me").status_code == 401  # ours: not public


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
