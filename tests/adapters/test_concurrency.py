"""A cold start under concurrent load, through each stack over real HTTP: one key-set fetch."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.provider import OIDCProvider

from .apps import FRAMEWORKS
from .conftest import app_options, serve


@pytest.fixture(scope="module")
def fresh_tokens(as_provider: OIDCProvider) -> list[str]:
    return [as_provider.token("client-rs256" if i % 2 else "client-es256") for i in range(200)]


@pytest.mark.parametrize("framework", list(FRAMEWORKS))
async def test_200_concurrent_requests_on_a_cold_cache_make_one_key_set_fetch(
    as_provider: OIDCProvider, fresh_tokens: list[str], framework: str
) -> None:
    as_provider.reset_stats()  # before the server starts: Quart's warm-up fetch counts too
    with serve(framework, **app_options(as_provider)) as url:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.get("/items", headers={"Authorization": f"Bearer {t}"})
                    for t in fresh_tokens
                )
            )
    assert [r.status_code for r in responses] == [200] * len(fresh_tokens)
    stats = as_provider.stats()
    assert (stats["jwks"], stats["discovery"]) == (1, 1)
