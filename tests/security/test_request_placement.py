"""Class 11, where the request lands (RFC 9112 §3.2, ASGI ``root_path``): authentication is
decided on the path the application routes on, whatever form the request target takes and
wherever the application is mounted. Every case runs over real servers (uvicorn with h11
and with httptools, hypercorn, gunicorn) with request targets sent byte for byte.

The invariant: a token without scope ``admin`` never reaches the ``/admin`` handler, and no
request without a token reaches a protected one, under any server, mount or target form.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oauth_shield.testing import LocalIssuer
from tests.servers import gunicorn_server, hypercorn_server, raw_request, uvicorn_server

from .placement_apps import (
    PUBLIC_RULES,
    RULES,
    mounted,
    protected,
    quart_extension_app,
)

pytestmark = pytest.mark.integration

AUDIENCE = "https://api.placement.test"

#: Request targets that a framework may route to /admin, written relative to the app.
ADMIN_TARGETS = [
    "/admin",
    "/admin/",
    "/admin?x=1",
    "/%61dmin",
    "//admin",
    "///admin",
    "/items//../admin",
    "http://{host}/admin",
    "HTTP://{host}/admin",
    "http://{host}//admin",
]
#: Dot segments: no client sends them (RFC 3986 §5.2.4), so the middleware refuses them.
DOT_TARGETS = ["/items/../admin", "/items/%2e%2e/admin", "/items%2F..%2Fadmin", "/./admin"]


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    local = LocalIssuer("http://placeholder", AUDIENCE)
    with local.serve():
        yield local


@pytest.fixture(scope="module")
def tokens(issuer: LocalIssuer) -> dict[str, str]:
    return {
        "read": issuer.token(scope="read"),
        "admin": issuer.token(scope="read admin"),
    }


def options(issuer: LocalIssuer) -> dict[str, Any]:
    return {"issuer": issuer.issuer, "audience": AUDIENCE}


Server = Callable[..., contextlib.AbstractContextManager[str]]
SERVERS: dict[str, Server] = {
    "uvicorn-h11": lambda app, root_path="": uvicorn_server(app, http="h11", root_path=root_path),
    "uvicorn-httptools": lambda app, root_path="": uvicorn_server(
        app, http="httptools", root_path=root_path
    ),
    "hypercorn": lambda app, root_path="": hypercorn_server(app, root_path=root_path),
}


def targets(base: str, host: str, templates: list[str]) -> list[str]:
    """``templates`` under ``base`` (a mount prefix), origin- and absolute-form alike."""
    result = []
    for template in templates:
        if template.startswith("/"):
            result.append(base + template)
        else:
            scheme, rest = template.split("{host}")
            result.append(scheme + "{host}" + base + rest)
    return [target.replace("{host}", host) for target in result]


def assert_admin_is_guarded(url: str, base: str, tokens: dict[str, str]) -> None:
    host = url.removeprefix("http://")
    bearer = {"Authorization": f"Bearer {tokens['read']}"}
    # Controls: the routes are reachable as intended, so "never ADMIN" below means something.
    assert raw_request(url, base + "/items", bearer) == (200, b"ITEMS")
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert raw_request(url, base + "/admin", admin) == (200, b"ADMIN")
    assert raw_request(url, base + "/items")[0] == 401
    for target in targets(base, host, ADMIN_TARGETS):
        for headers in (bearer, {}):
            status, body = raw_request(url, target, headers)
            assert body not in (b"ADMIN", b"ITEMS"), (target, headers.keys(), status)
            assert status in (400, 401, 403, 404, 307, 308), (target, status)
    for target in targets(base, host, DOT_TARGETS):
        assert raw_request(url, target, bearer)[0] == 400, target


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("framework", ["starlette", "quart"])
def test_unmounted(
    server: str, framework: str, issuer: LocalIssuer, tokens: dict[str, str]
) -> None:
    with SERVERS[server](protected(framework, options(issuer), RULES)) as url:
        assert_admin_is_guarded(url, "", tokens)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("framework", ["starlette", "quart"])
def test_mounted_by_a_dispatcher(
    server: str, framework: str, issuer: LocalIssuer, tokens: dict[str, str]
) -> None:
    app = mounted(protected(framework, options(issuer), RULES))
    with SERVERS[server](app) as url:
        assert_admin_is_guarded(url, "/api", tokens)


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("framework", ["starlette", "quart"])
def test_behind_a_root_path(
    server: str, framework: str, issuer: LocalIssuer, tokens: dict[str, str]
) -> None:
    app = protected(framework, options(issuer), RULES)
    with SERVERS[server](app, root_path="/api") as url:
        # uvicorn prefixes the path with root_path itself (a proxy stripped it); hypercorn
        # does not, so there the client sends the prefix. Quart under hypercorn routes only
        # prefixed paths, Starlette both: both forms must be guarded.
        bases = ["/api", ""] if server == "hypercorn" else [""]
        if server == "hypercorn" and framework == "quart":
            bases = ["/api"]
        for base in bases:
            assert_admin_is_guarded(url, base, tokens)
        if server == "hypercorn" and framework == "quart":
            bearer = {"Authorization": f"Bearer {tokens['read']}"}
            for target in targets("", url.removeprefix("http://"), ADMIN_TARGETS):
                assert raw_request(url, target, bearer)[1] != b"ADMIN", target


@pytest.mark.parametrize("server", SERVERS)
def test_public_paths_cannot_carry_a_request_elsewhere(
    server: str, issuer: LocalIssuer, tokens: dict[str, str]
) -> None:
    app = protected("quart", options(issuer), PUBLIC_RULES)
    with SERVERS[server](app) as url:
        host = url.removeprefix("http://")
        assert raw_request(url, "/health") == (200, b"PUBLIC")
        assert raw_request(url, "/public/x") == (200, b"PUBLIC")
        for target in ["/public//admin", "/health//admin", "http://{host}/public/../admin"]:
            status, body = raw_request(url, target.replace("{host}", host))
            assert body not in (b"ADMIN", b"ITEMS") and status in (400, 401, 404, 308), target
        for target in ["/public/../admin", "/health/../admin", "/public/%2e%2e/admin"]:
            assert raw_request(url, target)[0] == 400, target


@pytest.mark.parametrize("server", SERVERS)
def test_the_quart_extension_decides_on_the_route_itself(
    server: str, issuer: LocalIssuer, tokens: dict[str, str]
) -> None:
    with SERVERS[server](quart_extension_app(options(issuer))) as url:
        host = url.removeprefix("http://")
        bearer = {"Authorization": f"Bearer {tokens['read']}"}
        assert raw_request(url, "/items", bearer) == (200, b"ITEMS")
        for target in targets("", host, ADMIN_TARGETS + DOT_TARGETS):
            assert raw_request(url, target, bearer)[1] != b"ADMIN", target


@pytest.mark.slow
@pytest.mark.parametrize(
    ("framework", "worker", "mount"),
    [
        ("quart", "uvicorn.workers.UvicornH11Worker", ""),
        ("starlette", "uvicorn.workers.UvicornH11Worker", "1"),
        ("flask-extension", "sync", ""),
    ],
)
def test_under_gunicorn(
    framework: str, worker: str, mount: str, issuer: LocalIssuer, tokens: dict[str, str]
) -> None:
    env = {
        "PLACEMENT_FRAMEWORK": framework,
        "PLACEMENT_ISSUER": issuer.issuer,
        "PLACEMENT_AUDIENCE": AUDIENCE,
        "PLACEMENT_MOUNTED": mount,
    }
    with gunicorn_server(
        "tests.security.placement_apps:gunicorn_app", env=env, worker=worker
    ) as url:
        base = "/api" if mount else ""
        if framework == "flask-extension":
            bearer = {"Authorization": f"Bearer {tokens['read']}"}
            assert raw_request(url, "/items", bearer) == (200, b"ITEMS")
            for target in targets("", url.removeprefix("http://"), ADMIN_TARGETS):
                assert raw_request(url, target, bearer)[1] != b"ADMIN", target
        else:
            assert_admin_is_guarded(url, base, tokens)
