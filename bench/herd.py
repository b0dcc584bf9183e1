"""Cold start and herd: the first requests a fresh process serves, all at once, nothing cached.

The issuer is LocalIssuer over real HTTP on loopback (uvicorn, in a thread of this process).
Each run builds a fresh validator (no warm-up) on a fresh event loop, then fires ``herd``
concurrent validations at once and records:
- ``first_ms``: time to the first validated result (the cold start under load);
- ``all_ms``: time until every validation is done, or until the ``DEADLINE`` (10 s) when
  validations are cancelled and counted ``unfinished``;
- ``failed``: validations that raised (timeouts included);
- the requests the issuer answered (``discovery``, ``jwks``, ``introspection``) and, for the
  peer that can tell, ``fetches_started`` (a fetch that never reached the issuer counts there).
``cold`` is the same with a single request: the time to the first validated request when
nothing competes with it. Times include building the contender (and what it builds lazily
on first use: an ``httpx`` client loads its CA bundle into an SSL context, 25-70 ms here,
even for the plain-http loopback issuer; urllib, under PyJWKClient, does not for http).

JWT herd: ``herd`` distinct valid RS256 tokens. Contenders (bench/peers.py says what each
checks): oauth_shield (discovery, then the key set, single-flight), and the same given the
``jwks_uri`` (no discovery, as PyJWKClient); PyJWT + PyJWKClient through
``asyncio.to_thread`` (given the ``jwks_uri``, so no discovery; its lock serialises lookups);
joserfc hand-wired (no single-flight: every waiter that finds the cache empty fetches); Authlib
resource protector through ``asyncio.to_thread`` (its documented ``get_jwks`` recipe, no lock).
Threaded peers use the loop's default executor (``min(32, cpus + 4)`` threads), as an async
app calling ``to_thread`` would.

Opaque herd: ``herd`` concurrent validations of one opaque token never seen before:
oauth_shield (single-flight: one introspection call) and Authlib's introspection validator
through ``asyncio.to_thread`` (no cache: one call per request).

Contenders run in a random order each round; the report is the median over rounds (and the
maximum of the counts). A herd that overran the deadline is not run again (it would cost a
minute a round), so its figures come from one run (``runs`` says how many).

Caveat: 1,000 concurrent requests on one ``httpx.AsyncClient`` (what the hand-wired cache
makes) spend most of their time in httpcore 1.0's connection-pool bookkeeping, which is
O(connections x queued requests) per step (encode/httpcore#1035): the event loop is starved,
connections time out before they are made, and the deadline fires late. That is the cost of a
herd without single-flight on the default HTTP client, not of joserfc itself.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from oauth_shield.testing import LocalIssuer

from .introspection import CLIENT_ID, SECRET, shield_for
from .peers import (
    SCOPE,
    AuthlibIntrospection,
    AuthlibPeer,
    JoserfcKeys,
    PyJWTPeer,
    on_thread,
)

COUNTED = {
    "discovery": "/.well-known/openid-configuration",
    "jwks": "/jwks",
    "introspection": "/introspect",
}

Check = Callable[[str], Awaitable[Any]]
#: Validations still running this long after the start are cancelled and counted unfinished
#: (a client would have given up long before).
DEADLINE = 10.0


class Arrangement(NamedTuple):
    """A fresh contender, built inside the run's event loop."""

    check: Check
    close: Callable[[], Awaitable[None]]
    attempts: Callable[[], int] | None = None  # fetches it started, when it can tell


Factory = Callable[[LocalIssuer], Arrangement]


async def _nothing() -> None:
    return None


def _shield(issuer: LocalIssuer, **options: Any) -> Arrangement:
    validator = shield_for(issuer, **options)
    return Arrangement(lambda token: validator.validate(token, [SCOPE]), validator.aclose)


def _shield_jwks_uri(issuer: LocalIssuer) -> Arrangement:
    """oauth_shield told the ``jwks_uri``, like PyJWKClient: no discovery round trip."""
    return _shield(issuer, jwks_uri=f"{issuer.issuer}/jwks")


def _pyjwt(issuer: LocalIssuer) -> Arrangement:
    peer = PyJWTPeer(f"{issuer.issuer}/jwks", issuer.issuer, issuer.audience, ["RS256"])
    return Arrangement(lambda token: on_thread(peer.check, token), _nothing)


def _joserfc(issuer: LocalIssuer) -> Arrangement:
    peer = JoserfcKeys(issuer.issuer, issuer.audience, ["RS256"])
    return Arrangement(peer.validate, peer.aclose, lambda: peer.attempts)


def _authlib(issuer: LocalIssuer) -> Arrangement:
    peer = AuthlibPeer(issuer.issuer, issuer.audience)
    return Arrangement(lambda token: on_thread(peer.check, token), _nothing)


def _authlib_introspection(issuer: LocalIssuer) -> Arrangement:
    peer = AuthlibIntrospection(f"{issuer.issuer}/introspect", CLIENT_ID, SECRET)

    async def close() -> None:
        peer.close()

    return Arrangement(lambda token: on_thread(peer.check, token), close)


JWT_CONTENDERS: dict[str, Factory] = {
    "oauth_shield": _shield,
    "oauth_shield (jwks_uri given)": _shield_jwks_uri,
    "PyJWT + PyJWKClient (thread)": _pyjwt,
    "joserfc hand-wired": _joserfc,
    "Authlib resource protector (thread)": _authlib,
}
OPAQUE_CONTENDERS: dict[str, Factory] = {
    "oauth_shield": _shield,
    "Authlib introspection (thread)": _authlib_introspection,
}


async def _stampede(issuer: LocalIssuer, factory: Factory, tokens: list[str]) -> dict[str, Any]:
    """One cold run: a fresh contender, every token validated concurrently.

    The clock starts before the contender is built: a cold start includes its construction
    (and whatever it does lazily on first use, such as making its HTTP client).
    """
    before = {name: issuer.requests[path] for name, path in COUNTED.items()}
    started = time.perf_counter()
    contender = factory(issuer)

    async def one(token: str) -> float:
        await contender.check(token)
        return time.perf_counter()

    tasks = [asyncio.ensure_future(one(token)) for token in tokens]
    await asyncio.wait(tasks, timeout=DEADLINE)
    finished = time.perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await contender.close()
    done = [task.result() for task in tasks if not task.cancelled() and not task.exception()]
    unfinished = sum(task.cancelled() for task in tasks)
    result = {
        "first_ms": (min(done) - started) * 1000 if done else None,
        "all_ms": (finished - started) * 1000,
        "failed": len(tasks) - len(done) - unfinished,
        "unfinished": unfinished,
    } | {name: issuer.requests[path] - before[name] for name, path in COUNTED.items()}
    if contender.attempts is not None:
        result["fetches_started"] = contender.attempts()
    return result


def _run(issuer: LocalIssuer, factory: Factory, tokens: list[str]) -> dict[str, Any]:
    """A fresh event loop (and default executor) per run: nothing warm carries over."""
    return asyncio.run(_stampede(issuer, factory, tokens))


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in ("first_ms", "all_ms"):
        values = [run[key] for run in runs if run[key] is not None]
        result[key] = round(statistics.median(values), 1) if values else None
    for key in ("failed", "unfinished", *COUNTED, "fetches_started"):
        if key in runs[0]:
            result[key] = max(run[key] for run in runs)
    return result


def _contest(
    issuer: LocalIssuer,
    contenders: dict[str, Factory],
    make_tokens: Callable[[], list[str]],
    rounds: int,
    rng: random.Random,
) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"herd": [], "cold": []} for name in contenders
    }
    for _ in range(rounds):
        order = list(contenders)
        rng.shuffle(order)
        for name in order:
            tokens = make_tokens()
            herds = runs[name]["herd"]
            if not herds or herds[-1]["all_ms"] < DEADLINE * 1000:  # an overrun is not repeated
                herds.append(_run(issuer, contenders[name], tokens))
            runs[name]["cold"].append(_run(issuer, contenders[name], tokens[:1]))
    return {
        name: {kind: _summary(values) | {"runs": len(values)} for kind, values in by_kind.items()}
        for name, by_kind in runs.items()
    }


def suite(*, herd: int = 1000, rounds: int = 5) -> dict[str, Any]:
    issuer = LocalIssuer(algorithms=("RS256",))
    issuer.clients[CLIENT_ID] = SECRET
    rng = random.Random(3)
    with issuer.serve():
        jwts = [
            issuer.token(scope="read", sub=f"user-{i}", exp=int(time.time()) + 3600)
            for i in range(herd)
        ]

        def opaque() -> list[str]:
            return [issuer.opaque_token(scope="read")] * herd

        return {
            "herd": herd,
            "executor_threads": min(32, (os.cpu_count() or 1) + 4),
            "jwt": _contest(issuer, JWT_CONTENDERS, lambda: jwts, rounds, rng),
            "opaque": _contest(issuer, OPAQUE_CONTENDERS, opaque, rounds, rng),
        }
