"""MCP servers (the ``mcp`` SDK's and fastmcp's) under uvicorn, against oidc-provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.provider import OIDCProvider


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/mcp/" in item.nodeid:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def as_provider() -> Iterator[OIDCProvider]:
    if not OIDCProvider.node_available():
        pytest.fail("the MCP tests need Node.js for oidc-provider (./run test installs the rest)")
    with OIDCProvider() as provider:
        yield provider
