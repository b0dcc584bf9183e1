"""Fixtures for the integration suite: a real ``oidc-provider`` (tests/provider) on loopback.

One provider serves the whole session; every test starts with its request counters at zero
and no faults. Tests that stop, restart or rotate a provider take ``fresh_provider``, their
own instance, so they cannot disturb the others.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.provider import OIDCProvider

HERE = Path(__file__).resolve().parent

NODE_MISSING = (
    "the integration suite needs Node.js >= 18 on PATH (tests/provider runs oidc-provider); "
    "CI has it, so this is a failure, not a skip. Install Node or deselect with "
    "`-m 'not integration'`."
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder ``integration`` (the hook sees the whole session)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def provider() -> Iterator[OIDCProvider]:
    """The shared provider. Never stop, restart or rotate it: use ``fresh_provider``."""
    if not OIDCProvider.node_available():
        pytest.fail(NODE_MISSING, pytrace=False)
    op = _start_provider()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(autouse=True)
def _clean_provider(provider: OIDCProvider, _spare_providers: _Spares) -> Iterator[None]:
    """Each test sees zero request counts and no faults, and leaves no faults behind."""
    provider.clear_faults()
    provider.reset_stats()
    yield
    provider.clear_faults()


class _Spares:
    """Private providers started ahead of need on background threads: node takes about a
    second to start, which every test that stops, restarts or rotates would otherwise pay.
    No more are started than the session's tests will take."""

    DEPTH = 2

    def __init__(self, needed: int) -> None:
        self._pool = ThreadPoolExecutor(self.DEPTH, thread_name_prefix="oidc-provider-spare")
        self._ready: deque[Future[OIDCProvider]] = deque()
        self._unstarted = needed
        for _ in range(self.DEPTH):
            self._start_one()

    def _start_one(self) -> None:
        if self._unstarted > 0:
            self._unstarted -= 1
            self._ready.append(self._pool.submit(_start_provider))

    def take(self) -> OIDCProvider:
        self._start_one()
        return self._ready.popleft().result() if self._ready else _start_provider()

    def close(self) -> None:
        for spare in self._ready:
            with contextlib.suppress(Exception):
                spare.result().stop()
        self._pool.shutdown()


def _start_provider() -> OIDCProvider:
    op = OIDCProvider()
    op.start()
    return op


@pytest.fixture(scope="session")
def _spare_providers(request: pytest.FixtureRequest) -> Iterator[_Spares]:
    needed = sum(
        ("fresh_provider" in names) + 2 * ("fresh_pair" in names)
        for names in (getattr(item, "fixturenames", ()) for item in request.session.items)
    )
    spares = _Spares(needed)
    try:
        yield spares
    finally:
        spares.close()


@pytest.fixture
def fresh_provider(_spare_providers: _Spares) -> Iterator[OIDCProvider]:
    """A provider of the test's own, for stopping, restarting and rotating keys."""
    op = _spare_providers.take()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def fresh_pair(_spare_providers: _Spares) -> Iterator[tuple[OIDCProvider, OIDCProvider]]:
    """Two providers of the test's own: two issuers, each with its own keys."""
    first = _spare_providers.take()
    try:
        second = _spare_providers.take()
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


class ShiftedClock:
    """The real clocks plus offsets a test can grow: tokens from the provider carry real
    ``iat``/``exp``, while cooldowns, backoffs and TTLs can be skipped without sleeping."""

    def __init__(self) -> None:
        self.wall_offset = 0.0
        self.monotonic_offset = 0.0
        self._frozen: tuple[float, float] | None = None

    def time(self) -> float:
        base = time.time() if self._frozen is None else self._frozen[0]
        return base + self.wall_offset

    def monotonic(self) -> float:
        base = time.monotonic() if self._frozen is None else self._frozen[1]
        return base + self.monotonic_offset

    def freeze(self) -> None:
        """Stop the real clocks from moving: only advance() moves them from now on, so a
        slow step of the test (a busy machine) cannot carry a timer past its deadline."""
        self._frozen = (time.time(), time.monotonic())

    def advance(self, seconds: float) -> None:
        """Both clocks, as real time passing would move them."""
        self.wall_offset += seconds
        self.monotonic_offset += seconds

    def advance_monotonic(self, seconds: float) -> None:
        """Timers only: tokens minted from now on are not yet expired by the wall clock."""
        self.monotonic_offset += seconds


@pytest.fixture
def shifted_clock() -> ShiftedClock:
    return ShiftedClock()


# --- token helpers -----------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(segment: str) -> dict[str, Any]:
    """Decode a JWS header or payload segment (our own decoding, not the library's)."""
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(decoded, dict)
    return decoded


def header_of(token: str) -> dict[str, Any]:
    return b64url_json(token.split(".")[0])


def claims_of(token: str) -> dict[str, Any]:
    return b64url_json(token.split(".")[1])


def with_header(token: str, **changes: Any) -> str:
    """``token`` with header parameters changed, payload and signature kept (so unverifiable)."""
    header = header_of(token) | changes
    _, payload, signature = token.split(".")
    return f"{b64url(json.dumps(header).encode())}.{payload}.{signature}"


def mint(
    provider: OIDCProvider, count: int, client_id: str = "client-rs256", **kw: Any
) -> list[str]:
    """``count`` distinct tokens from the provider, fetched on a few threads."""
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda _: provider.token(client_id, **kw), range(count)))
    assert len(set(tokens)) == count
    return tokens
