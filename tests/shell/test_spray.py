"""A spray of distinct tokens, valid and not, JWT and opaque, concurrently: every cache stays
within its limit, nothing is left in flight, and memory stops growing once the caches are full."""

from __future__ import annotations

import asyncio
import gc
import secrets
import tracemalloc
from collections.abc import Iterator

from oauth_shield import AuthError, TokenValidator
from oauth_shield._validator import MAX_KNOWN_HEADERS
from oauth_shield.testing import LocalIssuer
from tests.conftest import ValidatorFactory

CACHE_SIZE = 200
BATCH = 250


def spray(issuer: LocalIssuer, count: int) -> Iterator[str]:
    """``count`` distinct tokens of every kind a scan or an attack would send."""
    for i in range(count):
        kind = i % 6
        if kind == 0:
            yield issuer.token(alg="EdDSA", sub=f"user-{i}")  # valid
        elif kind == 1:  # validly shaped, an unknown kid
            yield issuer.token(alg="EdDSA", sub=f"user-{i}", header={"kid": secrets.token_hex(8)})
        elif kind == 2:  # a signature that does not match
            head, payload, _ = issuer.token(alg="EdDSA", sub=f"user-{i}").split(".")
            yield f"{head}.{payload}.{secrets.token_urlsafe(64)}"
        elif kind == 3:
            yield issuer.opaque_token(sub=f"user-{i}")  # active
        elif kind == 4:
            yield secrets.token_urlsafe(32)  # opaque, never issued
        else:
            yield secrets.token_hex(40) + "$%"  # not even a b64token


async def run(validator: TokenValidator, tokens: list[str]) -> int:
    async def one(token: str) -> bool:
        try:
            await validator.validate(token)
        except AuthError:
            return False
        return True

    accepted = 0
    for start in range(0, len(tokens), BATCH):
        accepted += sum(await asyncio.gather(*(one(t) for t in tokens[start : start + BATCH])))
    return accepted


async def test_a_spray_of_distinct_tokens_stays_within_bounds(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    issuer.clients["resource-server"] = "rs-secret"
    validator = make_validator(
        client_id="resource-server",
        client_secret="rs-secret",
        verified_cache_size=CACHE_SIZE,
        introspection_cache_size=CACHE_SIZE,
        introspection_rate=1e6,  # let every miss through: this test is about memory
        introspection_burst=10**6,
    )
    warm_up, measured = list(spray(issuer, 3_000)), list(spray(issuer, 6_000))
    tracemalloc.start()
    try:
        assert await run(validator, warm_up) == 1_000  # the caches fill up
        gc.collect()
        full = tracemalloc.get_traced_memory()[0]
        assert await run(validator, measured) == 2_000
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - full
    finally:
        tracemalloc.stop()

    introspector = validator._introspector
    assert introspector is not None
    assert len(validator._verified) <= CACHE_SIZE
    assert len(introspector._positive) <= CACHE_SIZE and len(introspector._negative) <= CACHE_SIZE
    assert len(validator._known_headers) <= MAX_KNOWN_HEADERS
    assert len(introspector._flight) == 0
    assert issuer.requests["/jwks"] <= 2  # random kids: one refetch per cooldown at most
    assert grown < 64 * 1024, f"{grown} bytes more after 6,000 more tokens"
