"""Several issuers through the shared tier on a real redis-server: validators configured with
the same two issuers (as several processes would be) fetch each issuer's metadata and key set
once between them, each under its own issuer's namespace."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from oauth_shield import TokenValidator
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock
from tests.redis_server import RedisServer

OTHER = "https://b.test"


@pytest.fixture
def other(clock: FrozenClock, issuer: LocalIssuer) -> LocalIssuer:
    return LocalIssuer(OTHER, issuer.audience, algorithms=("ES256",), clock=clock.time)


@pytest.fixture
async def make(
    issuer: LocalIssuer, other: LocalIssuer, clock: FrozenClock, redis: RedisServer
) -> AsyncIterator[Any]:
    by_host = {httpx.URL(i.issuer).host: i for i in (issuer, other)}
    transport = httpx.MockTransport(lambda request: by_host[request.url.host].handle(request))
    made: list[TokenValidator] = []

    def validator() -> TokenValidator:
        made.append(
            created := TokenValidator(
                issuer=[issuer.issuer, OTHER],
                audience=issuer.audience,
                clock=clock,
                transport=transport,
                redis_url=redis.url,
                cache_secret="shared-cache-secret",
            )
        )
        return created

    yield validator
    for created in made:
        await created.aclose()


def namespace(issuer: str) -> str:
    return "oauth_shield:" + hashlib.sha256(issuer.encode()).hexdigest()[:16]


async def test_each_issuers_key_set_is_fetched_once_for_every_process(
    make: Any, issuer: LocalIssuer, other: LocalIssuer, redis: RedisServer
) -> None:
    for _ in range(4):  # four processes, each seeing tokens of both issuers
        validator = make()
        await validator.validate(issuer.token())
        await validator.validate(other.token())
    for served in (issuer, other):
        assert (served.requests["/jwks"], served.requests["/.well-known/openid-configuration"]) == (
            1,
            1,
        )
    reply = redis.command("KEYS", "*").split(b"\r\n")
    keys = {line.decode() for line in reply[2::2] if line}
    assert {f"{namespace(name)}:{kind}" for name in (issuer.issuer, OTHER)
            for kind in ("jwks", "metadata")} <= keys  # fmt: skip
