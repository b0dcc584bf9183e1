"""Signature verifiers built by oauth_shield._jose.make_verifier: their own signatures verify,
degenerate and malformed ones never do, and nothing raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield._jose import b64url_decode, make_verifier
from oauth_shield.testing import SigningKey, sign_compact

# Group orders n (SEC 2, RFC 8032).
ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "secp521r1": int(
        "01" + "FF" * 32 + "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409", 16
    ),
}
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
ALGS += ["EdDSA", "Ed25519", "Ed448"]
_EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@pytest.fixture(scope="module")
def private_keys(signing_keys: dict[str, SigningKey]) -> dict[str, Any]:
    rsa_key = signing_keys["RS256"].private
    keys: dict[str, Any] = {alg: rsa_key for alg in ALGS if alg[:2] in ("RS", "PS")}
    keys |= {alg: ec.generate_private_key(curve()) for alg, curve in _EC_CURVES.items()}
    keys |= {"EdDSA": signing_keys["EdDSA"].private, "Ed25519": signing_keys["EdDSA"].private}
    keys["Ed448"] = ed448.Ed448PrivateKey.generate()
    return keys


@pytest.fixture(scope="module")
def signed(private_keys: dict[str, Any]) -> dict[str, tuple[bytes, bytes]]:
    """alg -> (signing input, signature) of a token signed with that algorithm."""
    result = {}
    for alg, key in private_keys.items():
        token = sign_compact({"alg": alg}, {"sub": "user-1"}, key, alg)
        head, payload, signature = token.split(".")
        decoded = b64url_decode(signature)
        assert decoded is not None
        result[alg] = (f"{head}.{payload}".encode(), decoded)
    return result


def verifier_for(alg: str, private_keys: dict[str, Any]) -> Callable[[bytes, bytes], bool]:
    verify = make_verifier(alg, private_keys[alg].public_key())
    assert verify is not None
    return verify


@pytest.mark.parametrize("alg", ALGS)
def test_verifies_its_own_signature(
    alg: str, private_keys: dict[str, Any], signed: dict[str, tuple[bytes, bytes]]
) -> None:
    verify = verifier_for(alg, private_keys)
    message, signature = signed[alg]
    assert verify(message, signature) is True
    assert verify(message + b"x", signature) is False
    assert verify(message, signature[:-1] + bytes([signature[-1] ^ 1])) is False


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES512", "EdDSA"])
def test_signature_of_another_algorithm_does_not_verify(
    alg: str, private_keys: dict[str, Any], signed: dict[str, tuple[bytes, bytes]]
) -> None:
    verify = verifier_for(alg, private_keys)
    message = signed[alg][0]
    for other, (_, signature) in signed.items():
        if private_keys[other] is not private_keys[alg] or other[:2] != alg[:2]:
            assert verify(message, signature) is False, other


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_curve_orders_are_right(
    alg: str, private_keys: dict[str, Any], signed: dict[str, tuple[bytes, bytes]]
) -> None:
    # (r, n - s) is the other valid ECDSA signature (malleability; harmless here): it verifies
    # only with the true n, which checks the constants the degenerate cases below rely on.
    message, signature = signed[alg]
    size = len(signature) // 2
    n = ORDERS[private_keys[alg].curve.name]
    r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    assert verifier_for(alg, private_keys)(message, _raw(r, n - s, size)) is True


# --- degenerate signatures ------------------------------------------------------------------

Mutation = Callable[[bytes, Any], bytes]


def _raw(r: int, s: int, size: int) -> bytes:
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _ec(pick: Callable[[int, int, int], tuple[int, int]]) -> Mutation:
    def mutate(signature: bytes, key: Any) -> bytes:
        size = len(signature) // 2
        r, s = (int.from_bytes(half, "big") for half in (signature[:size], signature[size:]))
        return _raw(*pick(r, s, ORDERS[key.curve.name]), size)

    return mutate


def _rsa_value(pick: Callable[[int], int]) -> Mutation:
    def mutate(signature: bytes, key: Any) -> bytes:
        return pick(key.public_numbers().n).to_bytes(len(signature), "big")

    return mutate


GENERIC: dict[str, Mutation] = {
    "empty": lambda sig, key: b"",
    "one-byte": lambda sig, key: sig[:1],
    "truncated": lambda sig, key: sig[:-1],
    "extended": lambda sig, key: sig + b"\x00",
    "leading-zero": lambda sig, key: b"\x00" + sig,
    "doubled": lambda sig, key: sig + sig,
    "all-zero": lambda sig, key: bytes(len(sig)),
    "all-ones": lambda sig, key: b"\xff" * len(sig),
}
ECDSA: dict[str, Mutation] = {
    "r=0": _ec(lambda r, s, n: (0, s)),
    "s=0": _ec(lambda r, s, n: (r, 0)),
    "r=0,s=0 (psychic)": _ec(lambda r, s, n: (0, 0)),
    "r=n": _ec(lambda r, s, n: (n, s)),
    "s=n": _ec(lambda r, s, n: (r, n)),
    "r=n,s=n": _ec(lambda r, s, n: (n, n)),
    "r=1,s=1": _ec(lambda r, s, n: (1, 1)),
    "r=n-1,s=n-1": _ec(lambda r, s, n: (n - 1, n - 1)),
    "swapped": _ec(lambda r, s, n: (s, r)),
    "der": lambda sig, key: encode_dss_signature(
        int.from_bytes(sig[: len(sig) // 2], "big"), int.from_bytes(sig[len(sig) // 2 :], "big")
    ),
}
RSA: dict[str, Mutation] = {
    "value-0": _rsa_value(lambda n: 0),
    "value-1": _rsa_value(lambda n: 1),
    "value-n-1": _rsa_value(lambda n: n - 1),
    "value-n": _rsa_value(lambda n: n),
    "value-n+1": _rsa_value(lambda n: n + 1),
}
EDDSA: dict[str, Mutation] = {
    # S + L is the same scalar mod L: a malleable, non-canonical encoding (RFC 8032 §5.1.7).
    "s-plus-order": lambda sig, key: (
        sig[:32] + (int.from_bytes(sig[32:], "little") + ED25519_ORDER).to_bytes(32, "little")
    ),
}


def _family(alg: str) -> dict[str, Mutation]:
    if alg.startswith("ES"):
        return ECDSA
    if alg[:2] in ("RS", "PS"):
        return RSA
    return EDDSA if alg in ("EdDSA", "Ed25519") else {}


DEGENERATE = [(alg, name) for alg in ALGS for name in (*GENERIC, *_family(alg))]


@pytest.mark.parametrize(("alg", "case"), DEGENERATE, ids=[f"{a}-{c}" for a, c in DEGENERATE])
def test_degenerate_signature_is_refused(
    alg: str, case: str, private_keys: dict[str, Any], signed: dict[str, tuple[bytes, bytes]]
) -> None:
    verify = verifier_for(alg, private_keys)
    message, signature = signed[alg]
    mutate = GENERIC.get(case) or _family(alg)[case]
    bad = mutate(signature, private_keys[alg].public_key())
    assert bad != signature
    assert verify(message, bad) is False


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA", "Ed448"])
def test_verifier_never_raises(alg: str, private_keys: dict[str, Any]) -> None:
    verify = verifier_for(alg, private_keys)

    @given(st.binary(), st.binary(max_size=300))
    def check(message: bytes, signature: bytes) -> None:
        assert verify(message, signature) is False

    check()


# --- keys and algorithms that do not fit ------------------------------------------------


@pytest.fixture(scope="module")
def other_keys(private_keys: dict[str, Any]) -> dict[str, Any]:
    return {
        "rsa": private_keys["RS256"].public_key(),
        "rsa-private": private_keys["RS256"],
        "p256": private_keys["ES256"].public_key(),
        "p256-private": private_keys["ES256"],
        "p384": private_keys["ES384"].public_key(),
        "p521": private_keys["ES512"].public_key(),
        "secp256k1": ec.generate_private_key(ec.SECP256K1()).public_key(),
        "ed25519": private_keys["EdDSA"].public_key(),
        "ed448": private_keys["Ed448"].public_key(),
        "bytes": b"-----BEGIN PUBLIC KEY-----",
        "none": None,
    }


MISMATCHES = [
    ("rsa", "ES256"), ("rsa", "EdDSA"), ("rsa", "HS256"), ("rsa", "none"), ("rsa", "RS1"),
    ("rsa-private", "RS256"), ("p256", "ES384"), ("p256", "ES512"), ("p384", "ES256"),
    ("p521", "ES384"), ("p256", "RS256"), ("p256", "PS256"), ("p256", "EdDSA"),
    ("p256-private", "ES256"), ("secp256k1", "ES256"), ("secp256k1", "ES256K"),
    ("ed25519", "RS256"), ("ed25519", "ES256"), ("ed25519", "Ed448"), ("ed448", "Ed25519"),
    ("ed448", "RS256"), ("bytes", "HS256"), ("bytes", "RS256"), ("none", "RS256"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "alg"), MISMATCHES, ids=[f"{k}-{a}" for k, a in MISMATCHES])
def test_key_and_algorithm_that_do_not_fit(key: str, alg: str, other_keys: dict[str, Any]) -> None:
    assert make_verifier(alg, other_keys[key]) is None
