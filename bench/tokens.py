"""Per-token cost: the signature floor, oauth_shield and its Python peers, on the same tokens.

Rows, for each algorithm (RS256, ES256, EdDSA), all with the key set already cached:
- floor: ``cryptography``'s verify of the raw signature, written as a user would write it
  (no parsing, no claims: the cost no validator can go under);
- oauth_shield fresh: a token never seen before;
- oauth_shield repeated: the same token again (its verified-token cache);
- oauth_shield fresh, with realm_access: tokens that also carry Keycloak's
  ``realm_access: {"roles": [...]}``, default settings (what the nested object itself costs);
- oauth_shield fresh, nested scope_claims: those tokens again, granted by
  ``realm_access.roles`` (a path into the nested object) instead of ``scope``;
- oauth_shield fresh, five issuers: today's tokens, with five issuers configured (the
  token's ``iss`` selects its key set before the signature is checked);
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
#: The rows for issue 13's settings, and the row of the tokens the nested one reads.
WITH_ROLES = f"{SHIELD} fresh, with realm_access"
NESTED = f"{SHIELD} fresh, nested scope_claims"
FIVE_ISSUERS = f"{SHIELD} fresh, five issuers"
#: Each setting's row against the row of the same tokens with default settings.
SETTING_BASES = {NESTED: WITH_ROLES, FIVE_ISSUERS: f"{SHIELD} fresh"}
#: What those rows may cost over the fresh row, and the repeated row over the RS256 floor.
MAX_SETTINGS_OVERHEAD = 1.05
MAX_REPEATED_X_FLOOR = 0.15
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

    pyjwt, joserfc = peers.pyjwt, peers.joserfc
    checks: dict[str, Check] = {
        SHIELD: _shield_check(validator),
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
            subject = result.subject if name.startswith(SHIELD) else result["sub"]
            if subject != issuer.minted[token]["sub"]:
                raise SystemExit(f"{name} returned the wrong subject for a valid token")


def _rows(
    alg: str,
    tokens: dict[str, list[str]],
    issuer: LocalIssuer,
    checks: dict[str, Check],
    variants: dict[str, TokenValidator],
) -> list[Contender]:
    today = tokens[SHIELD]
    rows = [_floor(issuer, alg, today)]
    repeated = [today[0]] * len(today)
    for name, check in checks.items():
        prepare = variants[SHIELD]._verified.clear if name == SHIELD else (lambda: None)
        rows.append(Contender(f"{name} fresh", _batch(check, today), len(today), prepare))
        rows.append(Contender(f"{name} repeated", _batch(check, repeated), len(today)))
    for name, variant in variants.items():
        if name != SHIELD:
            batch = _batch(_shield_check(variant), tokens[name])
            rows.append(Contender(name, batch, len(today), variant._verified.clear))
    return rows


def _shield_check(validator: TokenValidator) -> Check:
    def check(token: str) -> Awaitable[Any]:
        return validator.validate(token, [SCOPE])

    return check


def _variants(issuer: LocalIssuer) -> dict[str, TokenValidator]:
    """oauth_shield as configured by default, and with each of issue 13's settings."""
    base = {"issuer": issuer.issuer, "audience": issuer.audience, "algorithms": ALGORITHMS}
    others = [f"https://issuer-{n}.example" for n in range(4)]
    return {
        SHIELD: TokenValidator(**base),
        WITH_ROLES: TokenValidator(**base),
        NESTED: TokenValidator(**base, scope_claims=[("realm_access", "roles")]),
        FIVE_ISSUERS: TokenValidator(
            **{**base, "issuer": [*others[:2], issuer.issuer, *others[2:]]}
        ),
    }


def _report(rows: list[Contender], peers: list[str]) -> dict[str, Any]:
    by_name = {row.name: row for row in rows}
    floor = rows[0]
    fresh = by_name[f"{SHIELD} fresh"]
    result: dict[str, Any] = {
        # What each setting costs: its row over the same tokens' row with default settings.
        "settings_overhead": {
            name: round(median_ratio(by_name[name], by_name[base]), 3)
            for name, base in SETTING_BASES.items()
        },
        # Its row over today's fresh row (the nested row's tokens carry one more object).
        "over_todays_fresh": {
            name: round(median_ratio(by_name[name], fresh), 3) for name in SETTING_BASES
        },
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
        peers = Peers(
            PyJWTPeer(f"{issuer.issuer}/jwks", issuer.issuer, issuer.audience, ALGORITHMS),
            JoserfcKeys(issuer.issuer, issuer.audience, ALGORITHMS),
            AuthlibPeer(issuer.issuer, issuer.audience),
        )
        variants = _variants(issuer)
        validator = variants[SHIELD]
        for alg in algorithms:
            today = [issuer.token(alg=alg, scope="read write", sub=f"user-{i}") for i in range(n)]
            # Keycloak-like: the same grant in realm_access.roles too (scope stays, so that
            # default settings accept them as well).
            roles = {"roles": ["read", "write"]}
            keycloak = [
                issuer.token(alg=alg, scope="read write", sub=f"user-{i}", realm_access=roles)
                for i in range(n)
            ]
            tokens = {SHIELD: today, WITH_ROLES: keycloak, NESTED: keycloak, FIVE_ISSUERS: today}
            checks = _arrangements(alg, validator, peers)
            loop.run_until_complete(_accept_all(checks, today, issuer))  # also fills key caches
            for name, variant in variants.items():
                only = {name: _shield_check(variant)}
                loop.run_until_complete(_accept_all(only, tokens[name], issuer))
            rows = _rows(alg, tokens, issuer, checks, variants)
            measure(rows, rounds=rounds, loop=loop)
            results[alg] = _report(rows, [name for name in checks if name != SHIELD])
            if alg not in AUTHLIB_ALGORITHMS:
                results[alg]["skipped"] = {
                    "Authlib resource protector": "refuses the algorithm (joserfc's default set)"
                }
        for variant in variants.values():
            loop.run_until_complete(variant.aclose())
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
        "max_settings_overhead": max(
            ratio for alg in algorithms for ratio in results[alg]["settings_overhead"].values()
        ),
        "max_over_todays_fresh": max(
            ratio for alg in algorithms for ratio in results[alg]["over_todays_fresh"].values()
        ),
    }
    summary = results["summary"]
    summary["settings_within_bound"] = summary["max_settings_overhead"] <= MAX_SETTINGS_OVERHEAD
    if "RS256" in algorithms:
        repeated = results["RS256"]["rows"][f"{SHIELD} repeated"]["x_floor"]
        summary["rs256_repeated_x_floor"] = repeated
        summary["repeated_within_bound"] = repeated < MAX_REPEATED_X_FLOOR
    return results
