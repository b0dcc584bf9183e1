"""Per-token cost: the signature floor, oauth_shield and its Python peers, on the same tokens.

Rows, for each algorithm (RS256, ES256, EdDSA), all with the key set already cached:
- floor: ``cryptography``'s verify of the raw signature, written as a user would write it
  (no parsing, no claims: the cost no validator can go under);
- oauth_shield fresh: a token never seen before;
- oauth_shield repeated: the same token again (its verified-token cache);
- PyJWT + PyJWKClient (loop): the peer called inline from async code, as a Flask view or an
  async app that accepts blocking the loop on a key fetch would;
- PyJWT + PyJWKClient (thread): the same through ``asyncio.to_thread``, as an async app must
  to keep PyJWKClient's blocking fetch off the loop;
- joserfc hand-wired: a competent hand-written async key cache around joserfc;
- Authlib resource protector: Authlib's RFC 9068 validator as ``ResourceProtector`` calls it
  (RS256 and ES256 only: Authlib refuses EdDSA, see bench/peers.py).

What each peer checks is written in bench/peers.py; every peer checks the signature, ``typ``,
``iss``, ``aud``, ``exp``, the RFC 9068 required claims and the scope, as oauth_shield does.
Peers keep no verified-token cache, so each has a "repeated" row too (the same token again):
it costs what a fresh one does, measured rather than assumed.

Every contender first validates every token of the run once (untimed), so no row is timed on
failures. Ratios: ``x_floor`` (row time over floor time) and, per peer, ``speedup`` (the peer's
time over oauth_shield's in the same mode, fresh against fresh and repeated against repeated;
above 1 means oauth_shield is faster), each the median of per-round ratios (bench/timing.py).
"""

from __future__ import annotations

import asyncio
import base64
import statistics
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from oauth_shield import TokenValidator
from oauth_shield.testing import LocalIssuer

from .peers import SCOPE, AuthlibPeer, JoserfcKeys, PyJWTPeer, on_thread
from .timing import Contender, measure, median_ratio, median_us

ALGORITHMS = ("RS256", "ES256", "EdDSA")
SHIELD = "oauth_shield"
#: Algorithms Authlib's RFC 9068 validator accepts (joserfc's recommended set, no EdDSA).
AUTHLIB_ALGORITHMS = frozenset({"RS256", "ES256"})

Check = Callable[[str], Any]  # validates one token; returns claims or an awaitable of them


class Peers(NamedTuple):
    """One of each peer, their key caches filled by the first token they see."""

    pyjwt: PyJWTPeer
    joserfc: JoserfcKeys
    authlib: AuthlibPeer


def _floor(issuer: LocalIssuer, alg: str, tokens: list[str]) -> Contender:
    key = next(k for k in issuer.keys if k.alg == alg).private.public_key()
    parts = []
    for token in tokens:
        signing_input, _, sig64 = token.rpartition(".")
        signature = base64.urlsafe_b64decode(sig64 + "=" * (-len(sig64) % 4))
        if isinstance(key, ec.EllipticCurvePublicKey):  # JWS carries raw R||S; the floor gets DER
            half = len(signature) // 2
            signature = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
        parts.append((signing_input.encode(), signature))

    def run() -> None:
        if isinstance(key, rsa.RSAPublicKey):
            for message, signature in parts:
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            for message, signature in parts:
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            for message, signature in parts:
                key.verify(signature, message)

    return Contender("floor", run, len(parts))


def _batch(check: Check, tokens: list[str]) -> Callable[[], Awaitable[None]]:
    """One pass: every token through ``check``, in order, on the loop."""

    async def run() -> None:
        for token in tokens:
            result = check(token)
            if isinstance(result, Awaitable):
                await result

    return run


def _arrangements(alg: str, validator: TokenValidator, peers: Peers) -> dict[str, Check]:
    """Each contender's one-token check, by row name (oauth_shield first)."""

    def shield(token: str) -> Awaitable[Any]:
        return validator.validate(token, [SCOPE])

    pyjwt, joserfc = peers.pyjwt, peers.joserfc
    checks: dict[str, Check] = {
        SHIELD: shield,
        "PyJWT + PyJWKClient (loop)": pyjwt.check,
        "PyJWT + PyJWKClient (thread)": lambda token: on_thread(pyjwt.check, token),
        "joserfc hand-wired": joserfc.validate,
    }
    if alg in AUTHLIB_ALGORITHMS:
        checks["Authlib resource protector"] = peers.authlib.check
    return checks


async def _accept_all(checks: dict[str, Check], tokens: list[str], issuer: LocalIssuer) -> None:
    """Every contender accepts every token of the run, with the claims that were minted."""
    for name, check in checks.items():
        for token in tokens:
            result = check(token)
            if isinstance(result, Awaitable):
                result = await result
            subject = result.subject if name == SHIELD else result["sub"]
            if subject != issuer.minted[token]["sub"]:
                raise SystemExit(f"{name} returned the wrong subject for a valid token")


def _rows(
    alg: str, tokens: list[str], issuer: LocalIssuer, checks: dict[str, Check], clear: Any
) -> list[Contender]:
    rows = [_floor(issuer, alg, tokens)]
    repeated = [tokens[0]] * len(tokens)
    for name, check in checks.items():
        prepare = clear if name == SHIELD else (lambda: None)
        rows.append(Contender(f"{name} fresh", _batch(check, tokens), len(tokens), prepare))
        rows.append(Contender(f"{name} repeated", _batch(check, repeated), len(tokens)))
    return rows


def _report(rows: list[Contender], peers: list[str]) -> dict[str, Any]:
    by_name = {row.name: row for row in rows}
    floor = rows[0]
    result: dict[str, Any] = {
        "rows": {
            row.name: {
                "us": round(median_us(row), 2),
                "x_floor": round(median_ratio(row, floor), 3),
            }
            for row in rows
        },
        "speedup": {
            peer: {
                mode: round(median_ratio(by_name[f"{peer} {mode}"], by_name[f"{SHIELD} {mode}"]), 3)
                for mode in ("fresh", "repeated")
            }
            for peer in peers
        },
    }
    best = {}
    for mode in ("fresh", "repeated"):
        name = min(peers, key=lambda peer: result["speedup"][peer][mode])
        best[mode] = {"peer": name, "speedup": result["speedup"][name][mode]}
    result["best_peer"] = best
    result["ahead_of_every_peer"] = all(entry["speedup"] > 1 for entry in best.values())
    return result


def suite(
    *, algorithms: tuple[str, ...] = ALGORITHMS, n: int = 400, rounds: int = 15
) -> dict[str, Any]:
    issuer = LocalIssuer(algorithms=ALGORITHMS)
    results: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    with issuer.serve():
        validator = TokenValidator(
            issuer=issuer.issuer, audience=issuer.audience, algorithms=ALGORITHMS
        )
        peers = Peers(
            PyJWTPeer(f"{issuer.issuer}/jwks", issuer.issuer, issuer.audience, ALGORITHMS),
            JoserfcKeys(issuer.issuer, issuer.audience, ALGORITHMS),
            AuthlibPeer(issuer.issuer, issuer.audience),
        )
        for alg in algorithms:
            tokens = [issuer.token(alg=alg, scope="read write", sub=f"user-{i}") for i in range(n)]
            checks = _arrangements(alg, validator, peers)
            loop.run_until_complete(_accept_all(checks, tokens, issuer))  # also fills key caches
            rows = _rows(alg, tokens, issuer, checks, validator._verified.clear)
            measure(rows, rounds=rounds, loop=loop)
            results[alg] = _report(rows, [name for name in checks if name != SHIELD])
            if alg not in AUTHLIB_ALGORITHMS:
                results[alg]["skipped"] = {
                    "Authlib resource protector": "refuses the algorithm (joserfc's default set)"
                }
        loop.run_until_complete(validator.aclose())
        loop.run_until_complete(peers.joserfc.aclose())
    loop.close()
    results["summary"] = {
        "ahead_of_every_peer": all(results[alg]["ahead_of_every_peer"] for alg in algorithms),
        "min_speedup": min(
            entry["speedup"] for alg in algorithms for entry in results[alg]["best_peer"].values()
        ),
        "median_shield_fresh_x_floor": statistics.median(
            results[alg]["rows"][f"{SHIELD} fresh"]["x_floor"] for alg in algorithms
        ),
    }
    return results
