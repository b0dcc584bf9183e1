"""SECURITY-CASES class 14: keys that are valid but worthless, end to end.

A key set is input from the network like any other. Each case publishes a hostile key beside the
issuer's real ones, then presents a token that the key verifies: a forgery that anyone can make
without any private key (EdDSA points of small order), or a genuine signature that costs many
times a normal one to check (RSA keys with a huge modulus or exponent). The key must be skipped
when the set is imported, with its reason logged at DEBUG, so that the token's ``kid`` is unknown.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa

from oauth_shield import Reason
from oauth_shield.testing import LocalIssuer, SigningKey, b64url, sign_compact
from tests.conftest import log_text
from tests.edwards import ED448, ED25519, Curve

from .conftest import Hostile, unsigned

SMALL_ORDER = "EdDSA key of small order: anyone can forge its signatures"
VECTORS = Path(__file__).parent.parent / "vectors"


def skip_logged(caplog: pytest.LogCaptureFixture, kid: str, why: str) -> bool:
    return f"skipped a key (kid {kid!r}): {why}" in log_text(caplog)


# --- EdDSA points of small order ----------------------------------------------------------

_PUBLIC = {"Ed25519": ed25519.Ed25519PublicKey, "Ed448": ed448.Ed448PublicKey}


def forge(curve: Curve, key: bytes, issuer: LocalIssuer, kid: str) -> str | None:
    """A token for ``sub: admin`` that the public key ``key`` verifies, made without any private
    key: R is a point of small order and S = 0. With A of order h, [S]B = R + [k]A holds when
    [k]A = -R, that is for about one message in h for each R; a few ``jti`` values suffice."""
    public: Any = _PUBLIC[curve.name].from_public_bytes(key)
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
    for attempt in range(64):
        claims = issuer.claims(sub="admin", scope="read admin", jti=f"forged-{attempt}")
        signing_input = unsigned(header, claims)[:-1].encode()
        for point in curve.torsion:
            signature = curve.encode(point) + bytes(curve.size)
            try:
                public.verify(signature, signing_input)
            except InvalidSignature:
                continue
            return unsigned(header, claims, signature)
    return None


# Every encoding of the eight edwards25519 points of small order forges with OpenSSL's verifier.
# Of the edwards448 ones, OpenSSL happens to refuse to decode those with x = 0 (the identity and
# the point of order 2), so only the two points of order 4 forge there; tests/core/test_keys.py
# shows that every encoding of every such point is skipped all the same.
FORGEABLE = [("Ed25519", key) for key in sorted(ED25519.small_order_encodings)]
FORGEABLE += [("Ed448", ED448.encode(point)) for point in sorted(ED448.torsion) if point[0]]
_CURVES = {"Ed25519": ED25519, "Ed448": ED448}


@pytest.mark.parametrize(
    ("crv", "key"),
    FORGEABLE,
    ids=[f"{crv}-{key.hex()[:8]}..{key.hex()[-4:]}" for crv, key in FORGEABLE],
)
async def test_small_order_eddsa_key_forges_nothing(
    hostile: Hostile,
    issuer: LocalIssuer,
    all_logs: pytest.LogCaptureFixture,
    crv: str,
    key: bytes,
) -> None:
    kid = "small-order"
    issuer.published.append({"kty": "OKP", "crv": crv, "x": b64url(key), "kid": kid, "use": "sig"})
    token = forge(_CURVES[crv], key, issuer, kid)
    assert token is not None, "OpenSSL refuses this forgery now: drop the key from FORGEABLE"
    await hostile(token, Reason.UNKNOWN_KID)
    assert skip_logged(all_logs, kid, SMALL_ORDER)


async def test_the_identity_point_signs_every_message_with_one_signature(
    hostile: Hostile, issuer: LocalIssuer
) -> None:
    # The placeholder most likely to be published by mistake: the identity point 0100..00. With
    # it, R = identity and S = 0 (all zeros but one byte) verify for every message.
    identity = ED25519.encode((0, 1))
    issuer.published.append({"kty": "OKP", "crv": "Ed25519", "x": b64url(identity), "kid": "id"})
    signature = identity + bytes(32)
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": "id"}
    for sub in ("admin", "root", "anyone"):
        token = unsigned(header, issuer.claims(sub=sub, scope="read admin"), signature)
        public = ed25519.Ed25519PublicKey.from_public_bytes(identity)
        public.verify(signature, token.rsplit(".", 1)[0].encode())  # the library alone: forged
        await hostile(token, Reason.UNKNOWN_KID)


# --- RSA keys that cost many times a normal one ---------------------------------------------


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    as_bytes = lambda value: value.to_bytes((value.bit_length() + 7) // 8, "big")  # noqa: E731
    return {"kty": "RSA", "n": b64url(as_bytes(numbers.n)), "e": b64url(as_bytes(numbers.e)),
            "kid": kid, "alg": "RS256", "use": "sig"}  # fmt: skip


@pytest.fixture(scope="module")
def rsa_8192() -> rsa.RSAPrivateKey:
    """A genuine 8192-bit key (tests/vectors/keys/PROVENANCE.md): generating one takes seconds."""
    pem = (VECTORS / "keys" / "rsa-8192-test-only.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def huge_exponent(signing_keys: dict[str, SigningKey]) -> rsa.RSAPrivateKey:
    """A genuine 2048-bit key whose public exponent has 2041 bits, from the primes of the
    session's RS256 key: any e prime to lambda(n) makes a working key pair."""
    private = signing_keys["RS256"].private
    assert isinstance(private, rsa.RSAPrivateKey)
    p, q = private.private_numbers().p, private.private_numbers().q
    lam = math.lcm(p - 1, q - 1)
    e = (1 << 2040) + 1
    while math.gcd(e, lam) != 1:
        e += 2
    d = pow(e, -1, lam)
    public = rsa.RSAPublicNumbers(e, p * q)
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), public)
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


@pytest.mark.parametrize(
    ("which", "why"),
    [("rsa_8192", "RSA key over 4096 bits"),
     ("huge_exponent", "RSA exponent not odd or not from 3 to 2^32 - 1")],
    ids=["modulus-8192-bits", "exponent-2041-bits"],
)  # fmt: skip
async def test_costly_rsa_key_is_skipped(
    hostile: Hostile,
    issuer: LocalIssuer,
    all_logs: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    which: str,
    why: str,
) -> None:
    key: rsa.RSAPrivateKey = request.getfixturevalue(which)
    issuer.published.append(rsa_jwk(key, which))
    header = {"alg": "RS256", "typ": "at+jwt", "kid": which}
    token = sign_compact(header, issuer.claims(), key, "RS256")
    await hostile(token, Reason.UNKNOWN_KID)  # a genuine signature, by a key we refuse to use
    assert skip_logged(all_logs, which, why)
