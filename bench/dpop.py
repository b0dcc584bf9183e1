"""DPoP (RFC 9449): what a request with a DPoP-bound token costs, against its signature floor.

Rows (ES256 tokens bound to an ES256 client key; the key set and the client's key known):
- floor, token + proof: ``cryptography``'s verify of the token's signature and of the proof's,
  nothing else (what no validator can go under for a fresh DPoP request);
- floor, proof: the proof's signature alone (the floor of a request with a known token);
- oauth_shield fresh: a token never seen before and a new proof (parsing, claims, the proof's
  rules, the binding, the per-process replay store);
- oauth_shield steady: a known token (its verified-token cache) and a new proof: the common
  case, a client calling the API again with the token it holds.

Between passes the verified-token cache (fresh row) and the replay store (both rows) are
cleared, so that the same proofs can be used again. Ratios are medians of per-round ratios
(bench/timing.py): fresh over the token + proof floor, steady over the proof floor.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from oauth_shield import DPoPRequest, TokenValidator
from oauth_shield.testing import DPoPKey, LocalIssuer

from .timing import Contender, measure, median_ratio, median_us

URL = "https://api.example.com/items"
#: Proofs are made once, before the rounds: a window that outlasts the run.
WINDOW = 300.0


def _der(signature: bytes) -> bytes:
    half = len(signature) // 2
    return encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )


def _parts(jws: str) -> tuple[bytes, bytes]:
    signing_input, _, sig64 = jws.rpartition(".")
    return signing_input.encode(), _der(base64.urlsafe_b64decode(sig64 + "=" * (-len(sig64) % 4)))


def _floor(name: str, pairs: list[tuple[Any, list[str]]], ops: int) -> Contender:
    """Verify every JWS of each list with its key, as a user would write it."""
    checks = [(key, [_parts(jws) for jws in items]) for key, items in pairs]

    def run() -> None:
        for key, items in checks:
            for message, signature in items:
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))

    return Contender(name, run, ops)


def _batch(
    validator: TokenValidator, work: list[tuple[str, DPoPRequest]]
) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        for token, presented in work:
            await validator.validate(token, "read", dpop=presented)

    return run


def suite(*, n: int = 300, rounds: int = 15) -> dict[str, Any]:
    issuer = LocalIssuer(algorithms=("ES256",))
    key = DPoPKey("ES256")
    loop = asyncio.new_event_loop()
    with issuer.serve():
        validator = TokenValidator(
            issuer=issuer.issuer,
            audience=issuer.audience,
            dpop="allowed",
            dpop_iat_window=WINDOW,
            dpop_replay_cache_size=10 * n,
        )
        tokens = [issuer.dpop_token(key, sub=f"user-{i}", scope="read") for i in range(n)]
        fresh = [
            (t, DPoPRequest([key.proof("GET", URL, access_token=t)], "GET", URL)) for t in tokens
        ]
        known = tokens[0]
        steady = [
            (known, DPoPRequest([key.proof("GET", URL, access_token=known)], "GET", URL))
            for _ in range(n)
        ]
        memory = validator._replay_memory

        def forget_proofs() -> None:
            memory._expiry.clear()
            memory._heap.clear()

        def forget_all() -> None:
            forget_proofs()
            validator._verified.clear()

        async def accept_all() -> None:  # every request is valid; fills the key caches
            for token, presented in fresh + steady[:1]:
                found = await validator.validate(token, "read", dpop=presented)
                if found.jkt != key.jkt:
                    raise SystemExit("the bound token was accepted without its binding")

        loop.run_until_complete(accept_all())
        issuer_key = issuer.keys[0].private.public_key()
        client_key = key.private.public_key()
        rows = [
            _floor(
                "floor, token + proof",
                [(issuer_key, tokens), (client_key, [p.proofs[0] for _, p in fresh])],
                n,
            ),
            _floor("floor, proof", [(client_key, [p.proofs[0] for _, p in steady])], n),
            Contender("oauth_shield fresh", _batch(validator, fresh), n, forget_all),
            Contender("oauth_shield steady", _batch(validator, steady), n, forget_proofs),
        ]
        measure(rows, rounds=rounds, loop=loop)
        loop.run_until_complete(validator.aclose())
    loop.close()
    by_name = {row.name: row for row in rows}
    return {
        "rows": {row.name: {"us": round(median_us(row), 2)} for row in rows},
        "fresh_x_floor": round(
            median_ratio(by_name["oauth_shield fresh"], by_name["floor, token + proof"]), 3
        ),
        "steady_x_floor": round(
            median_ratio(by_name["oauth_shield steady"], by_name["floor, proof"]), 3
        ),
    }
