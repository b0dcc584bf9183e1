"""A DPoP proof replayed to another worker process is refused: two uvicorn workers share one
real redis-server, which holds the replay store (one ``SET NX PXAT`` per proof).

Each proof is sent eight times at once, on eight connections, so the copies land on both
workers; with a per-process store, the worker that did not see the first copy would accept
one more. Exactly one copy of each proof is accepted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from oauth_shield.testing import DPoPKey
from tests.dpop import DPoPClient
from tests.provider import OIDCProvider
from tests.redis_server import RedisServer

from .test_multiprocess import Workers, uvicorn_workers

PROOFS = 12
COPIES = 8

pytestmark = pytest.mark.slow


@pytest.fixture
def two_workers(provider: OIDCProvider, redis: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    """Two uvicorn workers serving tests/integration/multiprocess_app.py with DPoP on, ready
    once both have answered."""
    key = DPoPKey("ES256")
    token = provider.dpop_token(key)["access_token"]
    pids: set[object] = set()

    def both_answer(url: str) -> bool:
        answer = httpx.get(f"{url}/whoami", auth=DPoPClient(key, token), timeout=1)
        if answer.status_code == 200:
            pids.add(answer.json()["pid"])
        return len(pids) == 2

    env = {**provider.shared_api_env(redis.url), "OAUTH_SHIELD_DPOP": "allowed"}
    with uvicorn_workers(2, env, tmp_path / "workers.log", both_answer) as running:
        yield running


async def test_a_proof_replayed_to_another_worker_is_refused(
    two_workers: Workers, provider: OIDCProvider, redis: RedisServer
) -> None:
    key = DPoPKey("ES256")
    token = provider.dpop_token(key)["access_token"]
    url = f"{two_workers.url}/whoami"
    proofs = [key.proof("GET", url, access_token=token) for _ in range(PROOFS)]

    async def send(proof: str) -> tuple[int, str]:
        # A connection of its own, so the copies of one proof spread over the workers.
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
            response = await client.get(url, headers=headers)
            return response.status_code, response.text

    copies = [proof for proof in proofs for _ in range(COPIES)]
    results = await asyncio.gather(*(send(proof) for proof in copies))
    accepted = {copies[i] for i, (status, _) in enumerate(results) if status == 200}
    statuses = [status for status, _ in results]
    assert statuses.count(200) == PROOFS, statuses  # one copy of each proof, no more
    assert accepted == set(proofs)
    assert statuses.count(401) == PROOFS * (COPIES - 1)
    assert all('"invalid_dpop_proof"' in text for status, text in results if status == 401)
    stored = redis.command("KEYS", "*:dpop:*").decode("latin-1")
    assert stored.count(":dpop:") >= PROOFS + 2  # and the start-up probes' proofs
    assert token not in stored
