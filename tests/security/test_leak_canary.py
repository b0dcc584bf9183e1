"""The leak canary: every path, unique canary tokens and secrets, every logger at DEBUG, and
metrics, tracing (every validation, the subject recorded) and an event listener switched on.

Run 1 installs the redaction filter: no canary may appear in any log record (whoever wrote it),
response, exception or cache entry. Run 2 does not: the library's own log records, its
responses, exceptions and caches must still be clean, and the positive control shows that a
server access log does leak a query-string token without the filter, so the scan can see one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import flask_oauth_shield
import httpx
import pytest
import quart_oauth_shield
from flask import Flask
from quart import Quart

from oauth_shield import AuthError, SyncTokenValidator, TokenValidator, events
from oauth_shield import logging as shield_logging
from oauth_shield.apikeys import APIKeyStore, new_key
from oauth_shield.asgi import BearerAuthMiddleware
from oauth_shield.downstream import ClientCredentialsAuth, DownstreamAuthError, TokenExchanger
from oauth_shield.testing import LocalIssuer, SigningKey, loopback_socket, serve_asgi, serve_wsgi
from tests.conftest import answer_lifespan
from tests.telemetry import recorded

pytestmark = pytest.mark.integration

AUDIENCE = "https://api.canary.test"
LOGGERS = (
    "",
    "oauth_shield",
    "httpx",
    "httpcore",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "quart",
    "flask",
    "werkzeug",
)


def canary(kind: str) -> str:
    return f"cnry{kind}{secrets.token_hex(12)}"


@dataclass
class Canaries:
    rs_secret: str = field(default_factory=lambda: canary("rssecret"))
    service_secret: str = field(default_factory=lambda: canary("svcsecret"))
    wrong_secret: str = field(default_factory=lambda: canary("wrongsecret"))
    email: str = field(default_factory=lambda: canary("email") + "@example.com")
    field_key: str = field(default_factory=lambda: canary("fieldkey"))
    internal_id: str = field(default_factory=lambda: canary("internal"))
    inactive: str = field(default_factory=lambda: canary("inactive"))
    tokens: list[str] = field(default_factory=list)

    def all(self, issuer: LocalIssuer) -> list[str]:
        values = [
            self.rs_secret,
            self.service_secret,
            self.wrong_secret,
            self.email,
            self.field_key,
            self.internal_id,
            self.inactive,
            *self.tokens,
            *issuer.minted,
            *issuer.opaque,
        ]
        pieces = [
            piece for value in values for piece in (value, *value.split(".")) if len(piece) >= 12
        ]
        return sorted(set(pieces))


class Capture(logging.Handler):
    """Everything a log record can show: message, exception text and extra fields."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        self.lines.append((record.name, f"{self.format(record)} {extras!r}"))


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


@dataclass
class Evidence:
    logs: list[tuple[str, str]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)  # responses, exceptions, caches

    def add_error(self, error: BaseException) -> None:
        chain: list[BaseException] = []
        while error is not None and error not in chain:
            chain.append(error)
            error = error.__cause__ or error.__context__  # type: ignore[assignment]
        for item in chain:
            self.said.append(f"{item!s} {item!r}")
            if isinstance(item, AuthError):
                self.said.append(item.www_authenticate("api") + repr(item.body()))

    def add_response(self, response: httpx.Response) -> None:
        self.said.append(
            f"{response.status_code} {response.headers.multi_items()!r} {response.text}"
        )


@contextlib.contextmanager
def capturing() -> Iterator[Capture]:
    capture = Capture()
    previous = {name: logging.getLogger(name).level for name in LOGGERS}
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).addHandler(capture)
    try:
        yield capture
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(capture)
            logging.getLogger(name).setLevel(previous[name])


def apps(issuer: LocalIssuer, keys: APIKeyStore, c: Canaries) -> dict[str, Any]:
    options = {
        "issuer": issuer.issuer,
        "audience": AUDIENCE,
        "client_id": "resource-server",
        "client_secret": c.rs_secret,
        "allow_query_token": True,
    }
    quart_app = Quart("canary-quart")
    quart_shield = quart_oauth_shield.Shield(quart_app, api_keys=keys, **options)
    flask_app = Flask("canary-flask")
    flask_shield = flask_oauth_shield.Shield(flask_app, api_keys=keys, **options)

    @quart_app.get("/items")
    @quart_shield.require("read", api_keys=True)
    async def quart_items() -> dict[str, Any]:
        return {"sub": quart_oauth_shield.current_token.subject}

    @flask_app.get("/items")
    @flask_shield.require("read", api_keys=True)
    def flask_items() -> dict[str, Any]:
        return {"sub": flask_oauth_shield.current_token.subject}

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "lifespan"
        ):  # a real app: the middleware closes its validator at shutdown
            await answer_lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    validator = TokenValidator(**{k: v for k, v in options.items() if k != "allow_query_token"})
    middleware = BearerAuthMiddleware(
        plain, validator=validator, scopes=["read"], api_keys=keys, allow_query=True
    )
    return {"quart": quart_app, "flask": flask_app, "asgi": middleware}


async def exercise(issuer: LocalIssuer, c: Canaries, evidence: Evidence) -> None:
    """Every path once. Tokens and secrets minted here are canaries."""
    key, stored = new_key(["read"])
    c.tokens.append(key)
    keys = APIKeyStore([stored])
    stranger = SigningKey("RS256", kid="stranger")
    valid, expired = issuer.token(scope="read"), issuer.token(scope="read", exp=1)
    tampered = valid[:-6] + "AAAAAA"
    wrong_audience = issuer.token(aud="https://elsewhere.test")
    unknown_kid = stranger.sign(
        {"alg": "RS256", "typ": "at+jwt", "kid": "stranger"}, issuer.claims()
    )
    opaque = issuer.opaque_token(email=c.email, api_key=c.field_key, internal_id=c.internal_id)
    c.tokens += [valid, expired, tampered, wrong_audience, unknown_kid, opaque, c.inactive]
    base = {
        "issuer": issuer.issuer,
        "audience": AUDIENCE,
        "client_id": "resource-server",
        "client_secret": c.rs_secret,
    }

    async def attempt(validator: TokenValidator, token: str) -> None:
        try:
            access = await validator.validate(token, ["read"])
            evidence.said.append(f"{access!r} {dict(access.claims)!r}")
        except AuthError as error:
            evidence.add_error(error)

    async with TokenValidator(**base) as validator:
        for token in (
            valid,
            valid,
            expired,
            tampered,
            wrong_audience,
            unknown_kid,
            opaque,
            opaque,
            c.inactive,
        ):
            await attempt(validator, token)
        evidence.said.append(
            repr(validator._verified.items()) + repr(validator._introspector.cached())
        )  # type: ignore[union-attr]
    # Every way introspection can fail.
    async with TokenValidator(**{**base, "client_secret": c.wrong_secret}) as wrong:
        await attempt(wrong, issuer.opaque_token())
    for answer in (
        httpx.Response(500, text=c.field_key),
        httpx.Response(200, text=f"<html>{c.email}</html>"),
        httpx.Response(200, text='{"active": true, "x": ' + "[" * 80 + "]" * 80 + "}"),
    ):
        issuer.fault = lambda request, answer=answer: (
            answer if request.url.path == "/introspect" else None
        )
        async with TokenValidator(**base) as failing:
            await attempt(failing, issuer.opaque_token())
    issuer.fault = None
    # The authorization server down: key set and introspection unreachable.
    with loopback_socket() as dead:
        down = {**base, "issuer": f"http://127.0.0.1:{dead.getsockname()[1]}", "http_timeout": 0.5}
        async with TokenValidator(**down) as outage:
            for token in (valid, opaque):
                await attempt(outage, token)
    # The sync facade.
    with SyncTokenValidator(**base) as sync:
        for token in (valid, tampered, opaque):
            try:
                sync.validate(token)
            except AuthError as error:
                evidence.add_error(error)
    # Downstream calls: the service's own token, and the caller's exchanged.
    await downstream_calls(issuer, c, valid, evidence)
    # Every adapter over real HTTP, access logs on.
    frameworks = apps(issuer, keys, c)
    requests = [
        {"headers": {"Authorization": f"Bearer {valid}"}},
        {"headers": {"Authorization": f"Bearer {tampered}"}},
        {"headers": {"Authorization": f"Bearer {opaque}"}},
        {"headers": {"Authorization": f"Bearer {c.inactive}"}},
        {"headers": {"X-API-Key": key}},
        {"headers": {"X-API-Key": key[:-3] + "zzz"}},
        {"headers": {"X-API-Key": key, "Authorization": f"Bearer {valid}"}},
        {"params": {"access_token": valid}},
        {"headers": {"Authorization": f"Basic {c.wrong_secret}"}},
    ]
    for name, app in frameworks.items():
        server = serve_wsgi(app) if name == "flask" else serve_asgi(app, log_level="debug")
        with server as url:
            async with httpx.AsyncClient(base_url=url) as client:
                for request in requests:
                    evidence.add_response(await client.get("/items", **request))


async def downstream_calls(
    issuer: LocalIssuer, c: Canaries, caller: str, evidence: Evidence
) -> None:
    async def echo(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    endpoint = f"{issuer.issuer}/token"
    own = ClientCredentialsAuth(
        token_endpoint=endpoint, client_id="service", client_secret=c.service_secret
    )
    exchanger = TokenExchanger(
        token_endpoint=endpoint,
        client_id="service",
        client_secret=c.service_secret,
        audience="https://orders.canary.test",
    )
    wrong = ClientCredentialsAuth(
        token_endpoint=endpoint, client_id="service", client_secret=c.wrong_secret
    )
    with serve_asgi(echo, log_level="debug") as url:
        for auth in (own, exchanger.auth(caller), wrong):
            async with httpx.AsyncClient(auth=auth) as client:
                try:
                    evidence.add_response(await client.get(f"{url}/orders"))
                except DownstreamAuthError as error:
                    evidence.add_error(error)
        with httpx.Client(auth=own) as client:
            evidence.add_response(client.get(f"{url}/orders"))
    evidence.said.append(repr(own) + repr(exchanger) + repr(exchanger._cache.items()))


@contextlib.contextmanager
def observed(evidence: Evidence) -> Iterator[None]:
    """Metrics, spans and events on for every validator; afterwards everything they hold (span
    names, attributes, statuses and events, metric names and attributes, event fields) joins
    what must hold no canary."""
    told: list[events.Event] = []
    unsubscribe = events.subscribe(told.append)
    try:
        with recorded(trace_all=True, record_subject=True) as seen:
            yield
            spans, metrics = seen.spans(), seen.metrics()
    finally:
        unsubscribe()
    evidence.said += [repr(event) for event in told]
    for span in spans:
        inside = [(event.name, dict(event.attributes or {})) for event in span.events]
        evidence.said.append(
            f"{span.name} {dict(span.attributes or {})!r} {span.status.description} {inside!r}"
        )
    evidence.said += [f"{name} {unit} {points!r}" for name, (unit, points) in metrics.items()]
    # The positive control: there was something to scan.
    kinds = {event.kind for event in told}
    assert {"token_refused", "key_set_fetched", "introspection_called"} <= kinds
    assert {"oauth_shield.validate", "oauth_shield.jwks.fetch", "GET", "POST"} <= {
        span.name for span in spans
    }
    assert {"oauth_shield.validations", "oauth_shield.introspection.calls"} <= set(metrics)


@pytest.fixture
def world() -> Iterator[tuple[LocalIssuer, Canaries]]:
    c = Canaries()
    issuer = LocalIssuer(audience=AUDIENCE)
    issuer.clients.update({"resource-server": c.rs_secret, "service": c.service_secret})
    with issuer.serve():
        yield issuer, c


def found(canaries: list[str], texts: list[str]) -> set[str]:
    blob = "\n".join(texts)
    return {value for value in canaries if value in blob}


def test_with_the_filter_installed_no_canary_appears_anywhere(
    world: tuple[LocalIssuer, Canaries],
) -> None:
    issuer, c = world
    evidence = Evidence()
    with capturing() as capture:
        shield_logging.install(secrets=[c.rs_secret, c.service_secret, c.wrong_secret])
        try:
            with observed(evidence):
                asyncio.run(exercise(issuer, c, evidence))
        finally:
            shield_logging.uninstall()
    canaries = c.all(issuer)
    assert len(capture.lines) > 200  # every logger really was at DEBUG
    assert any(name == "uvicorn.access" for name, _ in capture.lines)
    assert found(canaries, [text for _, text in capture.lines]) == set()
    assert found(canaries, evidence.said) == set()


def test_without_the_filter_the_library_itself_leaks_nothing(
    world: tuple[LocalIssuer, Canaries],
) -> None:
    issuer, c = world
    evidence = Evidence()
    with capturing() as capture, observed(evidence):
        asyncio.run(exercise(issuer, c, evidence))
    canaries = c.all(issuer)
    ours = [
        text
        for name, text in capture.lines
        if name.startswith(("oauth_shield", "quart_oauth", "flask_oauth"))
    ]
    assert len(ours) > 50
    assert found(canaries, ours) == set()
    assert found(canaries, evidence.said) == set()
    # The positive control: uvicorn's own access log wrote the query-string token. The scan sees
    # leaks when there are some; with the filter installed (the test above) it saw none.
    access = [text for name, text in capture.lines if name == "uvicorn.access"]
    assert found(canaries, access)


# --- real servers, with their own logging set-up and access logs on ---------------------------

SERVED = """
import logging
import sys

from oauth_shield import logging as shield_logging

shield_logging.install(secrets=[{secret!r}])


def wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("refused " + environ["HTTP_AUTHORIZATION"])
    start_response("401 Unauthorized", [("Content-Type", "text/plain")])
    return [b"no"]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    logging.getLogger("uvicorn.error").info("request headers %s", scope["headers"])
    if scope["path"] == "/boom":
        raise RuntimeError("refused " + headers[b"authorization"].decode())
    await send({{"type": "http.response.start", "status": 401, "headers": []}})
    await send({{"type": "http.response.body", "body": b"no"}})


if __name__ == "__main__":  # uvicorn with its default LOGGING_CONFIG: Access/DefaultFormatter
    import uvicorn

    uvicorn.run("served:asgi", port=int(sys.argv[1]), log_level="debug", access_log=True)
"""


def free_port() -> int:
    with contextlib.closing(loopback_socket()) as sock:
        return int(sock.getsockname()[1])


def serve_and_call(command: list[str], port: int, cwd: str, token: str, secret: str) -> str:
    """Start a server process, send a request with a query token and an Authorization header
    and one that fails, stop it, and return everything it wrote."""
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/ready", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        assert httpx.get(f"{url}/items?access_token={token}", headers=headers).status_code == 401
        response = httpx.get(f"{url}/boom?x={secret}", headers=headers)
        assert response.status_code == 500
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    return output


@pytest.fixture
def served(tmp_path: Any) -> tuple[str, str, str]:
    token, secret = LocalIssuer().token(), canary("served")
    (tmp_path / "served.py").write_text(SERVED.format(secret=secret))
    return str(tmp_path), token, secret


def pieces_shown(output: str, *values: str) -> set[str]:
    return {
        value[i : i + 8]
        for value in values
        for i in range(len(value) - 7)
        if value[i : i + 8] in output
    }


def test_uvicorn_access_and_error_logs_are_written_and_masked(
    served: tuple[str, str, str],
) -> None:
    cwd, token, secret = served
    port = free_port()
    output = serve_and_call(["served.py", str(port)], port, cwd, token, secret)
    assert "Logging error" not in output
    # The access lines are there, through uvicorn's AccessFormatter, the token masked.
    assert f'"GET /items?access_token={shield_logging.mask(token)} HTTP/1.1" 401' in output
    assert f'"GET /boom?x={shield_logging.mask(secret)} HTTP/1.1" 500' in output
    assert "(b'authorization', b'Bearer [redacted:" in output  # the app's own debug line
    assert "Exception in ASGI application" in output and "RuntimeError: refused Bearer" in output
    assert pieces_shown(output, token, secret) == set()


def test_gunicorn_access_and_error_logs_are_written_and_masked(
    served: tuple[str, str, str],
) -> None:
    cwd, token, secret = served
    port = free_port()
    command = ["-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    command += ["--access-logfile", "-", "--error-logfile", "-", "--log-level", "debug"]
    command += ["--no-control-socket"]  # gunicorn 23+ would share one under ~/.gunicorn
    command += ["--access-logformat", '%(h)s "%(r)s" %(s)s "%({authorization}i)s"', "served:wsgi"]
    output = serve_and_call(command, port, cwd, token, secret)
    assert "Logging error" not in output
    masked = shield_logging.mask(token)
    assert f'"GET /items?access_token={masked} HTTP/1.1" 401 "Bearer {masked}"' in output
    # "Error handling request <uri>" (gunicorn < 23 names no method)
    assert f" /boom?x={shield_logging.mask(secret)}\n" in output
    assert "Error handling request " in output
    assert "RuntimeError: refused Bearer [redacted:" in output
    assert pieces_shown(output, token, secret) == set()
