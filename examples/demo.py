"""The end-to-end demo behind ``./run demo``.

Starts a real authorization server on loopback (oidc-provider when Node is available, else
oauth_shield's own LocalIssuer), serves the example APIs (Quart under uvicorn, Flask under the
standard library's threaded WSGI server, Starlette behind the ASGI middleware), sends each of
them the same requests with real tokens, prints what they answered, and stops everything.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oauth_shield.testing import LocalIssuer, serve_asgi, serve_wsgi  # noqa: E402

AUDIENCE = "https://api.example.test"
OTHER_AUDIENCE = "https://other.example.test"


@dataclass
class AuthorizationServer:
    """What the demo needs from an issuer, whichever one runs."""

    name: str
    issuer: str
    secret: str  # the API's own credentials, for introspection
    token: Callable[..., str]


@contextlib.contextmanager
def authorization_server() -> Iterator[AuthorizationServer]:
    from tests.provider import OIDCProvider

    if OIDCProvider.node_available():
        with OIDCProvider() as provider:
            secret = provider.clients["resource-server"]
            yield AuthorizationServer(
                "oidc-provider (Node)", provider.issuer, secret, provider.token
            )
        return
    local = LocalIssuer(audience=AUDIENCE)
    local.clients["resource-server"] = "demo-secret"
    with local.serve():

        def token(
            client_id: str = "client-rs256", *, resource: str = AUDIENCE, scope: str = "read"
        ) -> str:
            lifetime = 2 if client_id == "client-short" else 3600
            claims = {"aud": resource, "scope": scope, "client_id": client_id, "sub": client_id}
            claims["exp"] = int(time.time()) + lifetime
            if client_id == "client-opaque":
                return local.opaque_token(**claims)
            return local.token(alg="ES256" if client_id == "client-es256" else "RS256", **claims)

        yield AuthorizationServer(
            "LocalIssuer (embedded; Node not found)", local.issuer, "demo-secret", token
        )


def requests(server: AuthorizationServer) -> list[tuple[str, str, dict[str, str]]]:
    """(case, path, headers) for each request the demo sends."""
    short, minted = server.token("client-short"), time.monotonic()
    valid = server.token("client-rs256", scope="read write")
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    rows = [
        ("valid RS256 token", "/items", bearer(valid)),
        ("valid ES256 token", "/items", bearer(server.token("client-es256"))),
        ("opaque token (introspected)", "/items", bearer(server.token("client-opaque"))),
        ("wrong audience", "/items", bearer(server.token("client-rs256", resource=OTHER_AUDIENCE))),
        ("missing scope (admin)", "/admin/reindex", bearer(valid)),
        ("no token", "/items", {}),
        ("garbage", "/items", bearer("this-is-not-a-token")),
        ("tampered signature", "/items", bearer(valid[:-8] + "AAAAAAAA")),
        ("token in the query string too", "/items?access_token=" + valid, bearer(valid)),
    ]
    time.sleep(max(0.0, minted + 3.1 - time.monotonic()))  # expired: 2 s of life, 1 s of skew
    rows.insert(3, ("expired token", "/items", bearer(short)))
    return rows


@contextlib.contextmanager
def example_apps(server: AuthorizationServer) -> Iterator[dict[str, str]]:
    """Configure the example apps from the environment, as one would deploy them, and serve."""
    os.environ.update(
        {
            "OAUTH_SHIELD_ISSUER": server.issuer,
            "OAUTH_SHIELD_AUDIENCE": AUDIENCE,
            "OAUTH_SHIELD_CLIENT_ID": "resource-server",
            "OAUTH_SHIELD_CLIENT_SECRET": server.secret,
            "OAUTH_SHIELD_LEEWAY": "1",
        }
    )
    apps = {
        name: importlib.import_module(f"examples.{name}_app").app
        for name in ("quart", "flask", "asgi")
    }
    with contextlib.ExitStack() as stack:
        yield {
            "Quart (uvicorn)": stack.enter_context(serve_asgi(apps["quart"])),
            "Flask (wsgiref)": stack.enter_context(serve_wsgi(apps["flask"])),
            "Starlette + ASGI middleware": stack.enter_context(serve_asgi(apps["asgi"])),
        }


def main() -> None:
    with authorization_server() as server:
        print(f"authorization server: {server.name} at {server.issuer}")
        cases = requests(server)
        with example_apps(server) as urls:
            answers: dict[str, dict[str, tuple[int, str]]] = {}
            for name, url in urls.items():
                with httpx.Client(base_url=url) as client:
                    for case, path, headers in cases:
                        method = "POST" if path.startswith("/admin") else "GET"
                        response = client.request(method, path, headers=headers)
                        challenge = response.headers.get("www-authenticate", "-")
                        answers.setdefault(case, {})[name] = (response.status_code, challenge)
    print_table(list(urls), answers)


def print_table(frameworks: list[str], answers: dict[str, dict[str, tuple[int, str]]]) -> None:
    width = max(len(case) for case in answers)
    print()
    print(f"{'request':<{width}}  " + "  ".join(f"{name:<{len(name)}}" for name in frameworks))
    for case, by_framework in answers.items():
        statuses = "  ".join(f"{by_framework[name][0]:<{len(name)}}" for name in frameworks)
        print(f"{case:<{width}}  {statuses}")
    print("\nWWW-Authenticate (the same from all three):")
    for case, by_framework in answers.items():
        challenges = {challenge for _, challenge in by_framework.values()}
        shown = challenges.pop() if len(challenges) == 1 else " | ".join(sorted(challenges))
        print(f"  {case:<{width}}  {shown}")


if __name__ == "__main__":
    main()
