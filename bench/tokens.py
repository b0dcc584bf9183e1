"""Per-token cost: the signature floor, oauth_shield and its Python peers, on the same tokens.

Rows, for each algorithm:
- floor: ``cryptography``'s verify of the raw signature, written as a user would write it;
- oauth_shield fresh: a token never seen before, the key set already cached;
- oauth_shield repeated: the same token again (the verified-token cache);
- PyJWT + PyJWKClient: ``get_signing_key_from_jwt`` then ``jwt.decode``, called on the loop.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from oauth_shield import TokenValidator
from oauth_shield.testing import LocalIssuer

from .timing import Contender, measure, median_ratio, median_us

_HASH = {"RS256": hashes.SHA256, "ES256": hashes.SHA256}


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


def _contenders(
    alg: str,
    tokens: list[str],
    issuer: LocalIssuer,
    validator: TokenValidator,
    jwks: pyjwt.PyJWKClient,
) -> list[Contender]:
    n = len(tokens)

    async def fresh() -> None:
        for token in tokens:
            await validator.validate(token, ["read"])

    async def repeated() -> None:
        token = tokens[0]
        for _ in range(n):
            await validator.validate(token, ["read"])

    async def pyjwt_decode() -> None:
        for token in tokens:
            key = jwks.get_signing_key_from_jwt(token)
            claims = pyjwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=issuer.audience,
                issuer=issuer.issuer,
                options={"require": ["exp", "iat", "sub", "jti"]},
            )
            assert "read" in claims["scope"].split()

    return [
        _floor(issuer, alg, tokens),
        Contender("oauth_shield fresh", fresh, n, prepare=validator._verified.clear),
        Contender("oauth_shield repeated", repeated, n),
        Contender("PyJWT + PyJWKClient", pyjwt_decode, n),
    ]


def suite(
    *, algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA"), n: int = 400, rounds: int = 15
) -> dict[str, Any]:
    issuer = LocalIssuer(algorithms=("RS256", "ES256", "EdDSA"))
    results: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    with issuer.serve():
        validator = TokenValidator(
            issuer=issuer.issuer, audience=issuer.audience, algorithms=("RS256", "ES256", "EdDSA")
        )
        jwks = pyjwt.PyJWKClient(f"{issuer.issuer}/jwks")
        for alg in algorithms:
            tokens = [issuer.token(alg=alg, scope="read write", sub=f"user-{i}") for i in range(n)]
            loop.run_until_complete(validator.validate(tokens[0]))  # key set now cached
            jwks.get_signing_key_from_jwt(tokens[0])
            rows = _contenders(alg, tokens, issuer, validator, jwks)
            measure(rows, rounds=rounds, loop=loop)
            results[alg] = {
                row.name: {
                    "us": round(median_us(row), 2),
                    "x_floor": round(median_ratio(row, rows[0]), 3),
                }
                for row in rows
            }
        loop.run_until_complete(validator.aclose())
    loop.close()
    return results
