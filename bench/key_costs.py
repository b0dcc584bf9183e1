"""What one forged token costs to refuse, by the shape of the key it names (docs/keysets.md).

``.venv/bin/python -m bench.key_costs`` prints, for each key shape, the CPU time of one signature
check of a forged token through ``oauth_shield._jose.make_verifier`` (the verifier the validator
uses) and its ratio to a valid RS256 token with a 2048-bit key. CPU time of this process, best of
seven runs: on a shared machine, waiting for a core is not part of a check's cost.

A modulus need not be a product of two primes to cost what it costs: the RSA cases use random
odd numbers of the given length, and random signatures below them. Forged ECDSA and EdDSA
signatures are in range (a genuine signature over another message), so that no check stops early.
Not a test: nothing here asserts, and its numbers move with the machine and OpenSSL.
"""

from __future__ import annotations

import secrets
import time
import timeit
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from oauth_shield._jose import make_verifier

MESSAGE = b"eyJhbGciOiJSUzI1NiJ9." + b"x" * 300
Check = Callable[[], object]


def _odd(bits: int) -> int:
    return secrets.randbits(bits) | 1 << (bits - 1) | 1


def _rsa(bits: int, e: int = 65537) -> Check:
    n = _odd(bits)
    verify = make_verifier("RS256", rsa.RSAPublicNumbers(e, n).public_key())
    assert verify is not None
    signature = secrets.randbelow(n).to_bytes((bits + 7) // 8, "big")
    return lambda: verify(MESSAGE, signature)


def _valid_rsa() -> Check:
    key = rsa.generate_private_key(65537, 2048)
    verify = make_verifier("RS256", key.public_key())
    assert verify is not None
    signature = key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    return lambda: verify(MESSAGE, signature)


def _ecdsa(curve: ec.EllipticCurve, alg: str, hash_alg: hashes.HashAlgorithm) -> Check:
    key = ec.generate_private_key(curve)
    verify = make_verifier(alg, key.public_key())
    assert verify is not None
    size = (curve.key_size + 7) // 8
    r, s = decode_dss_signature(key.sign(b"another message", ec.ECDSA(hash_alg)))
    signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return lambda: verify(MESSAGE, signature)


def _eddsa(key: ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey, alg: str) -> Check:
    verify = make_verifier(alg, key.public_key())
    assert verify is not None
    signature = key.sign(b"another message")
    return lambda: verify(MESSAGE, signature)


def _cost(check: Check, number: int) -> float:
    runs = timeit.repeat(check, number=number, repeat=7, timer=time.process_time)
    return min(runs) / number


def main() -> None:
    cases: list[tuple[str, Check, int]] = [
        ("RS256, 2048 bits, e = 65537, valid (the unit)", _valid_rsa(), 2000),
        ("RS256, 2048 bits, e = 65537", _rsa(2048), 2000),
        ("RS256, 3072 bits", _rsa(3072), 1000),
        ("RS256, 4096 bits", _rsa(4096), 1000),
        ("RS256, 8192 bits", _rsa(8192), 200),
        ("RS256, 16384 bits", _rsa(16384), 50),
        ("RS256, 2048 bits, e = 2^32 - 1", _rsa(2048, 2**32 - 1), 1000),
        ("RS256, 4096 bits, e = 2^32 - 1", _rsa(4096, 2**32 - 1), 500),
        ("RS256, 8192 bits, e = 2^32 - 1", _rsa(8192, 2**32 - 1), 100),
        ("RS256, 4096 bits, e = 2^64 - 1", _rsa(4096, 2**64 - 1), 300),
        ("RS256, 2048 bits, e of 2047 bits", _rsa(2048, _odd(2047)), 50),
        ("RS256, 3072 bits, e of 3071 bits", _rsa(3072, _odd(3071)), 20),
        ("ES256", _ecdsa(ec.SECP256R1(), "ES256", hashes.SHA256()), 1000),
        ("ES384", _ecdsa(ec.SECP384R1(), "ES384", hashes.SHA384()), 300),
        ("ES512", _ecdsa(ec.SECP521R1(), "ES512", hashes.SHA512()), 300),
        ("EdDSA, Ed25519", _eddsa(ed25519.Ed25519PrivateKey.generate(), "Ed25519"), 1000),
        ("EdDSA, Ed448", _eddsa(ed448.Ed448PrivateKey.generate(), "Ed448"), 500),
    ]
    unit = 0.0
    for name, check, number in cases:
        cost = _cost(check, number)
        unit = unit or cost
        print(f"| {name} | {cost * 1e6:,.0f} µs | {cost / unit:.1f}x |")


if __name__ == "__main__":
    main()
