"""Four uvicorn worker processes sharing one Redis. All four warm their key set at the same
moment on start-up, then concurrent load arrives carrying opaque tokens none has seen: the
authorization server sees one metadata fetch, one key-set fetch and one introspection per
opaque token in total, however the requests spread over the workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from oauth_shield.testing import loopback_socket
from tests.provider import OIDCProvider
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
OPAQUE_TOKENS = 5
REQUESTS = 600

pytestmark = pytest.mark.slow


class Workers:
    """The running server: its URL, and what its workers wrote to stderr so far."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self._log = log

    def said(self) -> str:
        return self._log.read_text(errors="replace")


@contextlib.contextmanager
def uvicorn_workers(
    count: int, env: dict[str, str], log: Path, ready: Callable[[str], bool]
) -> Iterator[Workers]:
    """``uvicorn --workers <count>`` serving tests/integration/multiprocess_app.py, up once
    ``ready(url)`` says so; stopped afterwards, and its stderr free of tracebacks."""
    with loopback_socket() as probe:
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "uvicorn", "tests.integration.multiprocess_app:app",
        "--workers", str(count), "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with log.open("wb") as stderr:
        server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stderr=stderr)
    running = Workers(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if ready(running.url):
                    break
            except httpx.TransportError:
                if server.poll() is not None:
                    raise RuntimeError(f"uvicorn did not start: {running.said()}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not get ready: {running.said()}")
            time.sleep(0.02)
        yield running
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert "Traceback" not in running.said(), running.said()


@pytest.fixture
def workers(provider: OIDCProvider, redis: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    """Four workers; up as soon as one answers: the others may still be starting."""

    def answers(url: str) -> bool:
        httpx.get(f"{url}/whoami", timeout=1)
        return True

    env = provider.shared_api_env(redis.url)
    with uvicorn_workers(WORKERS, env, tmp_path / "workers.log", answers) as running:
        yield running


async def test_cold_workers_under_load_fetch_once_between_them(
    workers: Workers, provider: OIDCProvider
) -> None:
    tokens = {
        "client-rs256": provider.token("client-rs256"),
        "client-es256": provider.token("client-es256"),
        **{f"opaque-{i}": provider.token("client-opaque") for i in range(OPAQUE_TOKENS)},
    }
    order = random.Random(7).choices(list(tokens), k=REQUESTS)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=workers.url, limits=limits, timeout=30) as client:

        async def call(name: str) -> tuple[int, object]:
            bearer = {"Authorization": f"Bearer {tokens[name]}"}
            response = await client.get("/whoami", headers=bearer)
            return response.status_code, response.json().get("pid")

        results = await asyncio.gather(*(call(name) for name in order))
    assert Counter(status for status, _ in results) == {200: REQUESTS}
    assert len({pid for _, pid in results}) >= 2, "the load never reached a second worker"
    stats = provider.stats()
    fetches = (stats["discovery"], stats["jwks"], stats["introspection"])
    assert fetches == (1, 1, OPAQUE_TOKENS), workers.said()
