"""Opaque tokens: a cached verdict, a miss that reaches the server, and single-flight.

The issuer is LocalIssuer served over real HTTP on loopback (uvicorn), so a miss pays a real
round trip. Rows:
- hit: the same opaque token again (both caches warm): wall time and CPU time per validation;
- miss: a new token each time, one introspection call each;
- single-flight: N concurrent validations of one new token: time for the whole batch, and
  the number of calls the server saw.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from oauth_shield import TokenValidator
from oauth_shield.testing import LocalIssuer

from .timing import Contender, measure, median_us

CLIENT_ID, SECRET = "bench-rs", "bench-secret"


def suite(*, n: int = 2000, misses: int = 200, herd: int = 500, rounds: int = 15) -> dict[str, Any]:
    issuer = LocalIssuer()
    issuer.clients[CLIENT_ID] = SECRET
    loop = asyncio.new_event_loop()
    with issuer.serve():
        validator = TokenValidator(
            issuer=issuer.issuer,
            audience=issuer.audience,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            introspection_rate=1e9,
            introspection_burst=10**9,
        )
        hot = issuer.opaque_token()
        loop.run_until_complete(validator.validate(hot))

        async def hit() -> None:
            for _ in range(n):
                await validator.validate(hot, ["read"])

        def fresh_tokens() -> None:
            pending[:] = [issuer.opaque_token() for _ in range(misses)]

        pending: list[str] = []

        async def miss() -> None:
            for token in pending:
                await validator.validate(token, ["read"])

        rows = [Contender("hit", hit, n), Contender("miss", miss, misses, prepare=fresh_tokens)]
        measure(rows, rounds=rounds, loop=loop)

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
    hit_us, miss_us = median_us(rows[0]), median_us(rows[1])
    return {
        "hit": {"us": round(hit_us, 2), "cpu_us": round(cpu_us, 2)},
        "miss": {"us": round(miss_us, 1), "x_hit": round(miss_us / hit_us, 1)},
        "single_flight": {
            "concurrent_validations": herd,
            "introspection_calls": herd_calls,
            "batch_ms": round(herd_seconds * 1000, 1),
            "vs_sequential_misses_ms": round(herd * miss_us / 1000, 1),
        },
    }
