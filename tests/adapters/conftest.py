"""Real servers for the adapter tests: each framework's app on loopback, against oidc-provider."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from oauth_shield.testing import serve_asgi, serve_wsgi
from tests.provider import API_AUDIENCE, OTHER_AUDIENCE, OIDCProvider

from .apps import FRAMEWORKS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/adapters/" in item.nodeid:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def as_provider() -> Iterator[OIDCProvider]:
    if not OIDCProvider.node_available():
        pytest.fail(
            "the adapter tests need Node.js for oidc-provider (./run test installs the rest)"
        )
    with OIDCProvider() as provider:
        yield provider


def app_options(provider: OIDCProvider, **extra: Any) -> dict[str, Any]:
    """The configuration every test app starts from: issuer, audience, introspection."""
    return {
        "issuer": provider.issuer,
        "audience": API_AUDIENCE,
        "client_id": "resource-server",
        "client_secret": provider.clients["resource-server"],
        "leeway": 0,  # so the 2-second token is expired by the time the tests run
        **extra,
    }


@contextlib.contextmanager
def serve(framework: str, **options: Any) -> Iterator[str]:
    """Build ``framework``'s test app with ``options`` and serve it; yields the base URL."""
    app = FRAMEWORKS[framework](**options)
    server = serve_wsgi(app) if framework == "flask" else serve_asgi(app)
    with server as url:
        yield url


@pytest.fixture(scope="session")
def servers(as_provider: OIDCProvider) -> Iterator[dict[str, str]]:
    """One long-lived server per framework, all configured alike."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(serve(name, **app_options(as_provider)))
            for name in FRAMEWORKS
        }


@pytest.fixture(scope="session")
def tokens(as_provider: OIDCProvider) -> dict[str, str]:
    """Real tokens from the provider, by kind."""
    minted = {
        "expired": as_provider.token("client-short"),
        "rs256": as_provider.token("client-rs256", scope="read write"),
        "es256": as_provider.token("client-es256", scope="read"),
        "opaque": as_provider.token("client-opaque", scope="read"),
        "other_audience": as_provider.token("client-rs256", resource=OTHER_AUDIENCE),
        "admin": as_provider.token("client-rs256", scope="read admin"),
    }
    time.sleep(2.5)  # the client-short token lives 2 s and the apps allow no leeway
    return minted
