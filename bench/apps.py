"""The benchmark's APIs: one view, served three times: unprotected, by oauth_shield, by a peer.

FastAPI's third route is not a peer but oauth_shield's ASGI middleware in front of the same
view, so that the ``Security`` dependency is compared with the middleware in one run.

Configured from OAUTH_SHIELD_* variables like the examples. Served by bench/throughput.py (and
bench/resilience.py, which uses ``quart_timed``). With ``BENCH_OTEL=1`` in the environment,
every validator of the process is instrumented through OpenTelemetry (``oauth_shield.otel``)
with the SDK's meter and tracer providers and exporters that drop what they get: the cost of
the measuring itself, not of a collector.

``/peer`` is the same view protected by the best peer arrangement of bench/tokens.py: the
hand-written joserfc key cache (bench/peers.py), written as a competent user would write it for
each framework: a decorator that reads the bearer token, validates it (async on Quart,
blocking on Flask), keeps the claims on ``g``, and answers 401 with ``WWW-Authenticate`` when
the token is refused, 403 when it lacks the scope, or 503 when the issuer cannot be reached.
It reads the same issuer and audience as the shield and discovers the key set lazily, on the
first request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import flask
import flask_oauth_shield  # type: ignore[import-untyped,unused-ignore]
import httpx
import quart
import quart_oauth_shield  # type: ignore[import-untyped,unused-ignore]
from fastapi import FastAPI, Request, Security
from fastapi.security import SecurityScopes
from flask import Flask
from joserfc.errors import JoseError
from quart import Quart

from bench.peers import SCOPE, InsufficientScopeError, JoserfcKeys, PeerError
from bench.telemetry import instrument_if_asked
from oauth_shield import AccessToken, TokenValidator
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.fastapi import FastAPIShield

CONFIG = {k: v for k, v in os.environ.items() if k.startswith("OAUTH_SHIELD_")}
instrument_if_asked(os.environ)  # before the shields build their validators
BODY = {"items": ["a", "b", "c"]}
ISSUER = CONFIG.get("OAUTH_SHIELD_ISSUER", "")
AUDIENCE = CONFIG.get("OAUTH_SHIELD_AUDIENCE", "")
ALGORITHMS = ("RS256", "ES256", "EdDSA")
REFUSED = ({"error": "invalid_token"}, 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
FORBIDDEN = (
    {"error": "insufficient_scope"},
    403,
    {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{SCOPE}"'},
)
UNAVAILABLE = ({"error": "temporarily_unavailable"}, 503)
Items = dict[str, list[str]]


def _bearer(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def quart_peer_required(view: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """The peer's guard for a Quart view: joserfc with the async hand-written key cache."""

    @wraps(view)
    async def guarded() -> Any:
        token = _bearer(quart.request.headers.get("Authorization"))
        if token is None:
            return REFUSED
        try:
            quart.g.claims = await quart_keys.validate(token)
        except InsufficientScopeError:
            return FORBIDDEN
        except (JoseError, PeerError, ValueError):
            return REFUSED
        except httpx.HTTPError:
            return UNAVAILABLE
        return await view()

    return guarded


def flask_peer_required(view: Callable[[], Any]) -> Callable[[], Any]:
    """The peer's guard for a Flask view: joserfc with the blocking hand-written key cache."""

    @wraps(view)
    def guarded() -> Any:
        token = _bearer(flask.request.headers.get("Authorization"))
        if token is None:
            return REFUSED
        try:
            flask.g.claims = flask_keys.validate_sync(token)
        except InsufficientScopeError:
            return FORBIDDEN
        except (JoseError, PeerError, ValueError):
            return REFUSED
        except httpx.HTTPError:
            return UNAVAILABLE
        return view()

    return guarded


quart_app = Quart("bench-quart")
quart_app.config.from_mapping(CONFIG)
quart_shield = quart_oauth_shield.Shield(quart_app)
quart_keys = JoserfcKeys(ISSUER, AUDIENCE, ALGORITHMS)


async def quart_items() -> Items:
    return BODY


async def quart_unprotected() -> Items:  # not quart_items: require() refuses a routed view
    return BODY


quart_app.add_url_rule("/unprotected", "unprotected", quart_unprotected)
quart_app.add_url_rule("/protected", "protected", quart_shield.require(SCOPE)(quart_items))
quart_app.add_url_rule("/peer", "peer", quart_peer_required(quart_items))


async def quart_timed(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
    """``quart_app`` answering with ``Server-Timing: app;dur=<ms>``, the time a request spent
    in the application: bench/resilience.py reads it to tell the server's latency apart from
    what the load generator and the machine add."""
    if scope["type"] != "http":
        return await quart_app(scope, receive, send)
    started = time.perf_counter()

    async def send_timed(message: Any) -> None:
        if message["type"] == "http.response.start":
            took = f"app;dur={(time.perf_counter() - started) * 1000:.3f}".encode()
            message = {**message, "headers": [*message["headers"], (b"server-timing", took)]}
        await send(message)

    return await quart_app(scope, receive, send_timed)


flask_app = Flask("bench-flask")
flask_app.config.from_mapping(CONFIG)
flask_shield = flask_oauth_shield.Shield(flask_app)
flask_keys = JoserfcKeys(ISSUER, AUDIENCE, ALGORITHMS)


def flask_items() -> Items:
    return BODY


def flask_unprotected() -> Items:  # not flask_items: require() refuses a routed view
    return BODY


flask_app.add_url_rule("/unprotected", "unprotected", flask_unprotected)
flask_app.add_url_rule("/protected", "protected", flask_shield.require(SCOPE)(flask_items))
flask_app.add_url_rule("/peer", "peer", flask_peer_required(flask_items))


fastapi_inner = FastAPI()
fastapi_shield = FastAPIShield()  # OAUTH_SHIELD_* from the environment
fastapi_shield.init_app(fastapi_inner)


@fastapi_inner.get("/unprotected")
async def fastapi_unprotected() -> Items:
    return BODY


@fastapi_inner.get("/protected")
async def fastapi_protected(token: AccessToken = Security(fastapi_shield, scopes=[SCOPE])) -> Items:
    return BODY


@fastapi_inner.get("/middleware")
async def fastapi_behind_middleware() -> Items:
    return BODY


async def fastapi_noop_dependency(request: Request, security_scopes: SecurityScopes) -> None:
    """What FastAPI charges for any Security dependency with the shield's signature."""


@fastapi_inner.get("/noop-dependency")
async def fastapi_noop(token: None = Security(fastapi_noop_dependency, scopes=[SCOPE])) -> Items:
    return BODY


_middleware = BearerAuthMiddleware(
    fastapi_inner, validator=TokenValidator.from_env(), scopes=[SCOPE]
)


async def fastapi_app(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
    """The FastAPI app; ``/middleware`` reaches it through ``BearerAuthMiddleware``."""
    if scope["type"] == "http" and scope["path"] == "/middleware":
        return await _middleware(scope, receive, send)
    return await fastapi_inner(scope, receive, send)
