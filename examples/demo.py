"""The end-to-end demo behind ``./run demo``.

Starts a real authorization server on loopback (oidc-provider when Node is available, else
oauth_shield's own LocalIssuer), obtains real tokens from it, sends each case to every target
and prints what each answered. Then stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oauth_shield import AuthError, TokenValidator  # noqa: E402
from oauth_shield.testing import LocalIssuer  # noqa: E402

AUDIENCE = "https://api.example.test"


@dataclass
class AuthorizationServer:
    """What the demo needs from an issuer, whichever one runs."""

    name: str
    issuer: str
    token: Callable[..., str]


@contextlib.contextmanager
def authorization_server() -> Iterator[AuthorizationServer]:
    from tests.provider import OIDCProvider

    if OIDCProvider.node_available():
        with OIDCProvider() as provider:
            yield AuthorizationServer("oidc-provider (Node)", provider.issuer, provider.token)
        return
    local = LocalIssuer(audience=AUDIENCE)
    with local.serve():

        def token(
            client_id: str = "client-rs256", *, resource: str = AUDIENCE, scope: str = "read"
        ) -> str:
            alg = "ES256" if client_id == "client-es256" else "RS256"
            lifetime = 2 if client_id == "client-short" else 3600
            now = int(time.time())
            return local.token(
                alg=alg, aud=resource, scope=scope, exp=now + lifetime, client_id=client_id
            )

        yield AuthorizationServer("LocalIssuer (embedded, Node not found)", local.issuer, token)


@dataclass
class Case:
    name: str
    token: str | None
    scopes: tuple[str, ...] = ("read",)


def cases(server: AuthorizationServer) -> list[Case]:
    short = server.token("client-short")
    valid = server.token("client-rs256", scope="read write")
    rows = [
        Case("valid RS256 token", valid),
        Case("valid ES256 token", server.token("client-es256")),
        Case("opaque token (no introspection yet)", server.token("client-opaque")),
        Case("wrong audience", server.token("client-rs256", resource="https://other.example.test")),
        Case("missing scope (needs admin)", valid, ("admin",)),
        Case("garbage", "not-a-token"),
        Case("tampered payload", valid[:-8] + "AAAAAAAA"),
    ]
    time.sleep(3)  # let the 2-second token expire (the demo validators allow 1 s of leeway)
    rows.insert(3, Case("expired token", short))
    return rows


Target = Callable[[Case], Awaitable[str]]


def validator_target(validator: TokenValidator) -> Target:
    async def check(case: Case) -> str:
        try:
            token = await validator.validate(case.token or "", case.scopes)
        except AuthError as error:
            return f"{error.status_code} {error.error or '-'} ({error.reason})"
        return f"200 ok (sub={token.subject}, scopes={' '.join(sorted(token.scopes))})"

    return check


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n{'-' * len(title)}")
    for name, outcome in rows:
        print(f"  {name:<{width}}  {outcome}")


async def main() -> None:
    with authorization_server() as server:
        print(f"authorization server: {server.name} at {server.issuer}")
        async with TokenValidator(issuer=server.issuer, audience=AUDIENCE, leeway=1) as validator:
            check = validator_target(validator)
            table = [(case.name, await check(case)) for case in cases(server)]
        print_table("TokenValidator.validate()", table)


if __name__ == "__main__":
    asyncio.run(main())
