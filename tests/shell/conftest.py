"""A transport that can hold, slow down or break the issuer, and counts what reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from oauth_shield import TokenValidator
from oauth_shield.testing import LocalIssuer
from tests.conftest import ValidatorFactory


class GatedTransport(httpx.AsyncBaseTransport):
    """The issuer's handler behind a gate: requests wait while it is closed."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self.open = asyncio.Event()
        self.open.set()
        self.delay = 0.0
        self.failure: Callable[[httpx.Request], httpx.Response] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.open.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:  # a failure handler counts what it answers
            return self.failure(request)
        return self.issuer.handle(request)

    def go_down(self) -> None:
        """Connections are refused from now on."""

        def refuse(request: httpx.Request) -> httpx.Response:
            self.issuer.requests[request.url.path] += 1
            raise httpx.ConnectError("connection refused", request=request)

        self.failure = refuse

    def come_back(self) -> None:
        self.failure = None


@pytest.fixture
def gate(issuer: LocalIssuer) -> GatedTransport:
    return GatedTransport(issuer)


@pytest.fixture
def gated(make_validator: ValidatorFactory, gate: GatedTransport) -> ValidatorFactory:
    """Validators whose every request goes through ``gate``."""

    def make(**overrides: object) -> TokenValidator:
        return make_validator(transport=gate, **overrides)

    return make


def jwks_fetches(issuer: LocalIssuer) -> int:
    return issuer.requests["/jwks"]


async def settle() -> None:
    """Let background tasks (refresh-ahead) run to completion."""
    for _ in range(20):
        await asyncio.sleep(0)
