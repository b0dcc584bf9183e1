"""Fixtures shared by every test layer: a frozen clock, signing keys, an in-memory issuer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from oauth_shield import AuthError, Reason, TokenValidator
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.redis_server import RedisServer

ISSUER = "https://issuer.test"
AUDIENCE = "https://api.test"
NOW = 1_800_000_000.0


class FrozenClock:
    """Wall and monotonic time that only move when a test says so."""

    def __init__(self, wall: float = NOW, mono: float = 10_000.0) -> None:
        self.wall = wall
        self.mono = mono

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    """One key per algorithm, generated once (RSA key generation is slow)."""
    return {alg: SigningKey(alg, kid=f"{alg.lower()}-key") for alg in ("RS256", "ES256", "EdDSA")}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def issuer(signing_keys: dict[str, SigningKey], clock: FrozenClock) -> LocalIssuer:
    return LocalIssuer(ISSUER, AUDIENCE, keys=list(signing_keys.values()), clock=clock.time)


ValidatorFactory = Callable[..., TokenValidator]


@pytest.fixture
async def make_validator(
    issuer: LocalIssuer, clock: FrozenClock
) -> AsyncIterator[ValidatorFactory]:
    """Build validators wired to the in-memory issuer; all are closed after the test."""
    made: list[TokenValidator] = []

    def make(**overrides: Any) -> TokenValidator:
        options: dict[str, Any] = {
            "issuer": issuer.issuer,
            "audience": issuer.audience,
            "transport": issuer.transport(),
            "clock": clock,
        }
        options.update(overrides)
        validator = TokenValidator(**options)
        made.append(validator)
        return validator

    yield make
    for validator in made:
        await validator.aclose()


@pytest.fixture
def validator(make_validator: ValidatorFactory) -> TokenValidator:
    return make_validator()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger at DEBUG, including httpx and httpcore."""
    caplog.set_level(logging.DEBUG)
    for name in ("oauth_shield", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the records say: messages, arguments and exception text."""
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_text:
            parts.append(record.exc_text)
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


def secret_pieces(token: str) -> list[str]:
    """Substrings of a token that must never be seen anywhere: the whole token and each part."""
    return [piece for piece in (token, *token.split(".")) if len(piece) >= 8]


async def refused(
    validator: TokenValidator,
    token: Any,
    reason: Reason | None = None,
    *,
    scopes: Any = None,
    caplog: pytest.LogCaptureFixture | None = None,
    requester: str | None = None,
) -> AuthError:
    """Validate ``token``, expect an ``AuthError`` (with ``reason``), and check it says nothing
    of the token."""
    by = {} if requester is None else {"requester": requester}
    with pytest.raises(AuthError) as caught:
        await validator.validate(token, scopes, **by)
    error = caught.value
    if reason is not None:
        assert error.reason is reason, f"expected {reason}, got {error.reason}"
    if isinstance(token, str):
        said = " ".join((str(error), repr(error), error.www_authenticate("api"), str(error.body())))
        said += log_text(caplog) if caplog is not None else ""
        for piece in secret_pieces(token):
            assert piece not in said
    return error


async def answer_lifespan(receive: Any, send: Any) -> None:
    """What a real ASGI app does with a lifespan scope: start, then stop when told."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


#: The shared cache secret of ``shared_validators``, and the client they introspect as.
SHARED_CACHE_SECRET = "shared-cache-secret-0123"
SHARED_CLIENT = ("resource-server", "rs-secret")


@pytest.fixture
async def shared_validators(
    issuer: LocalIssuer, clock: FrozenClock, redis: RedisServer
) -> AsyncIterator[ValidatorFactory]:
    """Validators sharing the test's Redis, as separate processes would; closed afterwards."""
    issuer.clients[SHARED_CLIENT[0]] = SHARED_CLIENT[1]
    made: list[TokenValidator] = []

    def make(transport: Any = None, **options: Any) -> TokenValidator:
        settings = {
            "issuer": issuer.issuer,
            "audience": issuer.audience,
            "clock": clock,
            "transport": transport or issuer.transport(),
            "redis_url": redis.url,
            "cache_secret": SHARED_CACHE_SECRET,
            "client_id": SHARED_CLIENT[0],
            "client_secret": SHARED_CLIENT[1],
            **options,
        }
        made.append(created := TokenValidator(**settings))
        return created

    yield make
    for created in made:
        await created.aclose()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the session (./run test installs it when missing)."""
    if not RedisServer.available():
        pytest.fail("redis-server is needed (./run test installs it with apt-get)")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, emptied, and running again if a test stopped it."""
    if not redis_server.ping():
        redis_server.start()
    redis_server.flush()
    yield redis_server
    if not redis_server.ping():
        redis_server.start()
