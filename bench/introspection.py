"""Opaque tokens: a cached verdict, a miss that reaches the server, single-flight, and a peer.

The issuer is LocalIssuer served over real HTTP on loopback (uvicorn, in a thread of this
process), so a miss pays a real round trip. Rows:
- hit: the same opaque token again (both caches warm): wall time and CPU time per validation;
- miss: a new token each time, one introspection call each;
- miss floor: the same POST made with a bare ``httpx.AsyncClient`` (no checks, no cache): the
  transport's share of a miss;
- single-flight: N concurrent validations of one new token: time for the whole batch, and
  the number of calls the server saw;
- peers: Authlib's RFC 7662 validator (bench/peers.py) on the same hot token, called inline
  (a Flask view; no thread hop, its best case) and through ``asyncio.to_thread`` (what an
  async app must do with a blocking client). It caches nothing, so every validation is a
  round trip, like oauth_shield's miss, and it checks less (``active`` and the scope only).

``speedup`` (under hit and under miss) is each peer's time over oauth_shield's, the median of
per-round ratios; above 1, oauth_shield is faster. Caveat for the miss ratio: the issuer runs
in this process, so every round trip also pays for the server's share of the interpreter, and
an ``httpx.AsyncClient`` round trip between two event loops of one process costs more than a
blocking ``httpx.Client`` one (about 2.9 against 2.1 ms measured here).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from oauth_shield import TokenValidator
from oauth_shield.testing import LocalIssuer

from .peers import SCOPE, AuthlibIntrospection, on_thread
from .timing import Contender, measure, median_ratio, median_us

CLIENT_ID, SECRET = "bench-rs", "bench-secret"
INLINE, THREAD = "Authlib introspection (inline)", "Authlib introspection (thread)"


def shield_for(issuer: LocalIssuer, **options: Any) -> TokenValidator:
    """oauth_shield as the benchmarks configure it against ``issuer``: this resource server's
    credentials (registered at the issuer), and no introspection rate limit, because the
    benchmarks measure the cost of a validation, not the limiter."""
    issuer.clients[CLIENT_ID] = SECRET
    return TokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        introspection_rate=1e9,
        introspection_burst=10**9,
        **options,
    )


def _peer_rows(peer: AuthlibIntrospection, token: str, count: int) -> list[Contender]:
    def inline() -> None:
        for _ in range(count):
            peer.check(token)

    async def thread() -> None:
        for _ in range(count):
            await on_thread(peer.check, token)

    return [Contender(INLINE, inline, count), Contender(THREAD, thread, count)]


def suite(*, n: int = 2000, misses: int = 200, herd: int = 500, rounds: int = 15) -> dict[str, Any]:
    issuer = LocalIssuer()
    loop = asyncio.new_event_loop()
    with issuer.serve():
        validator = shield_for(issuer)
        hot = issuer.opaque_token()
        loop.run_until_complete(validator.validate(hot))
        peer = AuthlibIntrospection(f"{issuer.issuer}/introspect", CLIENT_ID, SECRET)
        if peer.check(hot)["sub"] != issuer.opaque[hot]["sub"]:  # it accepts the token
            raise SystemExit("the Authlib introspection peer refused a valid token")

        async def hit() -> None:
            for _ in range(n):
                await validator.validate(hot, [SCOPE])

        def fresh_tokens() -> None:
            pending[:] = [issuer.opaque_token() for _ in range(misses)]

        pending: list[str] = []

        async def miss() -> None:
            for token in pending:
                await validator.validate(token, [SCOPE])

        bare = httpx.AsyncClient(auth=(CLIENT_ID, SECRET))

        async def miss_floor() -> None:
            for _ in range(misses):
                answer = await bare.post(f"{issuer.issuer}/introspect", data={"token": hot})
                answer.raise_for_status().json()

        rows = [
            Contender("hit", hit, n),
            Contender("miss", miss, misses, prepare=fresh_tokens),
            Contender("miss floor", miss_floor, misses),
            *_peer_rows(peer, hot, misses),
        ]
        measure(rows, rounds=rounds, loop=loop)
        peer.close()
        loop.run_until_complete(bare.aclose())

        cpu_started = time.process_time()
        loop.run_until_complete(hit())
        cpu_us = (time.process_time() - cpu_started) / n * 1e6

        herd_token = issuer.opaque_token()
        calls_before = issuer.requests["/introspect"]

        async def stampede() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(validator.validate(herd_token) for _ in range(herd)))
            return time.perf_counter() - started

        herd_seconds = loop.run_until_complete(stampede())
        herd_calls = issuer.requests["/introspect"] - calls_before
        loop.run_until_complete(validator.aclose())
    loop.close()
    hit_row, miss_row, floor, peers = rows[0], rows[1], rows[2], rows[3:]
    hit_us, miss_us = median_us(hit_row), median_us(miss_row)
    return {
        "hit": {
            "us": round(hit_us, 2),
            "cpu_us": round(cpu_us, 2),
            "speedup": {p.name: round(median_ratio(p, hit_row), 1) for p in peers},
        },
        "miss": {
            "us": round(miss_us, 1),
            "x_hit": round(miss_us / hit_us, 1),
            "floor_us": round(median_us(floor), 1),
            "x_floor": round(median_ratio(miss_row, floor), 3),
            "speedup": {p.name: round(median_ratio(p, miss_row), 3) for p in peers},
        },
        "peers": {p.name: {"us": round(median_us(p), 1)} for p in peers},
        "single_flight": {
            "concurrent_validations": herd,
            "introspection_calls": herd_calls,
            "batch_ms": round(herd_seconds * 1000, 1),
            "vs_sequential_misses_ms": round(herd * miss_us / 1000, 1),
        },
    }
