"""The worker examples: a token in each message, checked by the same core, outside any web app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from examples.worker import ThreadPoolWorker, asyncio_worker
from oauth_shield.testing import LocalIssuer


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalIssuer]:
    issuer = LocalIssuer()  # real clock, real HTTP: the workers configure themselves from env
    with issuer.serve():
        monkeypatch.setenv("OAUTH_SHIELD_ISSUER", issuer.issuer)
        monkeypatch.setenv("OAUTH_SHIELD_AUDIENCE", issuer.audience)
        yield issuer


def messages(issuer: LocalIssuer) -> list[dict[str, str]]:
    return [
        {"task": "a", "token": issuer.token(scope="read write", sub="alice")},
        {"task": "b", "token": issuer.token(scope="read", sub="bob")},  # lacks write
        {"task": "c", "token": "garbage"},
        {"task": "d", "token": issuer.token(scope="write", sub="carol", exp=1)},  # expired
        {"task": "e", "token": issuer.token(alg="ES256", scope="write", sub="dave")},
    ]


EXPECTED = [
    "a: run for alice",
    "b: refused (insufficient_scope)",
    "c: refused (invalid_token)",
    "d: refused (invalid_token)",
    "e: run for dave",
]


async def test_an_asyncio_worker(served: LocalIssuer) -> None:
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for message in [*messages(served), {"task": "stop", "token": ""}]:
        queue.put_nowait(message)
    assert await asyncio_worker(queue) == EXPECTED
    assert served.requests["/jwks"] == 1


def test_a_thread_pool_worker(served: LocalIssuer) -> None:
    worker = ThreadPoolWorker()
    try:
        for _ in range(3):  # batch after batch: one validator for the worker's life
            assert worker.run(messages(served) * 20) == EXPECTED * 20
    finally:
        worker.close()
    assert served.requests["/jwks"] == 1  # eight threads, three batches, one fetch
