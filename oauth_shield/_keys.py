"""An immutable snapshot of the issuer's key set, and key selection (pure, no I/O).

Import applies every rule once per fetched set, so that selecting the key for a token is one
dictionary lookup. A key is skipped, with its reason kept for the log, when it is not an
asymmetric signature key we may use: unknown ``kty`` or ``oct``; ``use`` other than ``sig``;
``key_ops`` without ``verify``; an ``alg`` outside the allowlist; a curve that fits none of the
allowed algorithms; anything that does not import cleanly.

Also skipped, because a signature by them proves nothing or costs too much to check (SECURITY-CASES
class 14, docs/keysets.md#keys-that-are-valid-but-worthless):

- EdDSA points of small order, in any encoding: with them anyone forges a signature without a
  private key (the identity point verifies R = identity, S = 0 for every message); and the
  other encodings with y >= p, which RFC 8032 §5.1.3 / §5.2.3 does not decode;
- RSA moduli outside 2048 to 4096 bits (RFC 7518 §3.3; a larger one multiplies the cost of every
  forged token), exponents that are even or outside 3 to 2^32 - 1 (BoringSSL, Go), moduli with a
  prime factor under 752 (NIST SP 800-89 §5.3.3), and moduli with the ROCA fingerprint
  (CVE-2017-15361), whose private keys can be computed from the public ones;
- EC coordinates that are not the full-length encoding of a field element (RFC 7518 §6.2.1.2);
  OpenSSL itself refuses points off the curve, and the point at infinity has no JWK.

Selection (RFC 7515 §4.1.4, RFC 8725 §3.10): the token's ``kid`` and ``alg`` pick exactly one
key. Two different keys for the same ``kid`` and ``alg`` are ambiguous and verify nothing (the
same key published twice is one key). A token without ``kid`` is accepted only when a single
key in the set fits its ``alg``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from joserfc.jwk import ECKey, OKPKey, RSAKey

from ._errors import Reason
from ._jose import Verifier, b64url_decode, make_verifier

#: A real issuer publishes a handful of keys; more is a broken or hostile key set.
MAX_KEYS = 100
#: RFC 7518 §3.3 requires 2048 bits for RS*/PS*.
MIN_RSA_BITS = 2048
#: AWS, Google and Azure KMS sign with at most 4096 bits; more only makes every forged token
#: dearer to refuse (8192 bits: 12x the check of a 2048-bit key, docs/keysets.md).
MAX_RSA_BITS = 4096
#: The largest public exponent fits in 32 bits, as in Windows CryptoAPI (BoringSSL allows 33 bits,
#: Go 31): an exponent as long as the modulus makes each check ~90x dearer.
MAX_RSA_EXPONENT = 2**32 - 1

_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_KEY_TYPES: dict[str, Any] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}
_ALGORITHMS_FOR = {
    ("RSA", None): frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    ("EC", "P-256"): frozenset({"ES256"}),
    ("EC", "P-384"): frozenset({"ES384"}),
    ("EC", "P-521"): frozenset({"ES512"}),
    ("OKP", "Ed25519"): frozenset({"EdDSA", "Ed25519"}),
    ("OKP", "Ed448"): frozenset({"EdDSA", "Ed448"}),
}


@dataclass(frozen=True, slots=True)
class KeySet:
    """Usable verification keys, indexed by ``(kid, alg)``; safe to share across threads."""

    index: Mapping[tuple[str | None, str], Verifier | Reason]
    kids: frozenset[str]
    thumbprints: frozenset[str]
    skipped: tuple[tuple[object, str], ...] = ()

    def select(self, kid: str | None, alg: str) -> Verifier | Reason:
        """The verifier for a token's ``kid`` and ``alg``, or why there is none."""
        found = self.index.get((kid, alg))
        if found is not None:
            return found
        if kid is not None and kid in self.kids:
            return Reason.KEY_MISMATCH
        return Reason.UNKNOWN_KID

    def __len__(self) -> int:
        return len(self.thumbprints)


def import_key_set(document: Mapping[str, Any], algorithms: frozenset[str]) -> KeySet | None:
    """Build a :class:`KeySet` from a JWKS document, or ``None`` if the document is unusable."""
    entries = document.get("keys")
    if not isinstance(entries, list) or len(entries) > MAX_KEYS:
        return None
    # slot -> {thumbprint: verifier}: the same key twice is one candidate, not two.
    candidates: defaultdict[tuple[str | None, str], dict[str, Verifier]] = defaultdict(dict)
    kids: set[str] = set()
    thumbprints: set[str] = set()
    skipped: list[tuple[object, str]] = []
    for jwk in entries:
        try:
            imported = _import_key(jwk, algorithms)
        except Exception:  # one hostile entry must never cost us the rest of the set
            imported = "malformed"
        if isinstance(imported, str):
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            skipped.append((kid if isinstance(kid, str) else None, imported))
            continue
        kid, thumbprint, verifiers = imported
        thumbprints.add(thumbprint)
        if kid is not None:
            kids.add(kid)
        for alg, verifier in verifiers.items():
            if kid is not None:
                candidates[kid, alg][thumbprint] = verifier
            candidates[None, alg][thumbprint] = verifier
    index: dict[tuple[str | None, str], Verifier | Reason] = {
        slot: next(iter(found.values())) if len(found) == 1 else Reason.AMBIGUOUS_KEY
        for slot, found in candidates.items()
    }
    return KeySet(index, frozenset(kids), frozenset(thumbprints), tuple(skipped))


def _import_key(
    jwk: object, algorithms: frozenset[str]
) -> tuple[str | None, str, dict[str, Verifier]] | str:
    """``(kid, thumbprint, verifiers by alg)`` for a usable key, else why it was skipped."""
    if not isinstance(jwk, dict):
        return "not an object"
    kty = jwk.get("kty")
    if type(kty) is not str or kty not in _KEY_TYPES:
        return "unsupported kty"
    if jwk.get("use", "sig") != "sig":
        return "use is not sig"
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return "key_ops lacks verify"
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        return "malformed kid"
    usable = algorithms & _ALGORITHMS_FOR.get(
        (kty, None if kty == "RSA" else jwk.get("crv")), _NONE
    )
    declared = jwk.get("alg")
    if declared is not None:
        usable &= {declared} if isinstance(declared, str) else _NONE
    if not usable:
        return "no allowed algorithm fits"
    public = {"kty": kty} | {name: jwk[name] for name in _PUBLIC_MEMBERS[kty] if name in jwk}
    # Judged before joserfc sees the key: it warns about small RSA keys, and neither it nor
    # OpenSSL refuses the worthless ones.
    flaw = _FLAWS[kty](public)
    if flaw is not None:
        return flaw
    try:
        key = _KEY_TYPES[kty].import_key(public)
        native = key.public_key
        thumbprint = key.thumbprint()
    except Exception:  # a hostile key set can make any importer raise anything
        return "does not import"
    verifiers = {alg: v for alg in usable if (v := make_verifier(alg, native)) is not None}
    if not verifiers:
        return "no allowed algorithm fits"
    return kid, thumbprint, verifiers


_NONE: frozenset[str] = frozenset()


def _decoded(value: object) -> bytes | None:
    """A member's canonical base64url octets, or ``None`` (empty, malformed, not a string)."""
    return (b64url_decode(value) or None) if isinstance(value, str) else None


def _primes_below(limit: int) -> list[int]:
    return [p for p in range(2, limit) if all(p % d for d in range(2, math.isqrt(p) + 1))]


# NIST SP 800-89 §5.3.3 (partial public-key validation): "no factors less than 752". One gcd
# finds them all; real RSA moduli are products of two primes of over 1000 bits each.
_SMALL_PRIMES_PRODUCT = math.prod(_primes_below(752))


def _rsa_flaw(public: dict[str, Any]) -> str | None:
    """Why an RSA public key must not be used, or ``None``."""
    raw_n, raw_e = _decoded(public.get("n")), _decoded(public.get("e"))
    if raw_n is None:
        return "malformed n"
    if raw_e is None:
        return "malformed e"
    modulus, exponent = int.from_bytes(raw_n, "big"), int.from_bytes(raw_e, "big")
    if modulus.bit_length() < MIN_RSA_BITS:
        return "RSA key under 2048 bits"
    if modulus.bit_length() > MAX_RSA_BITS:
        return "RSA key over 4096 bits"
    # e must be odd to be prime to phi(n) (Go, BoringSSL, AWS-LC); the bound caps the cost of
    # the public operation, which grows with the length of e.
    if not 3 <= exponent <= MAX_RSA_EXPONENT or not exponent & 1:
        return "RSA exponent not odd or not from 3 to 2^32 - 1"
    if math.gcd(modulus, _SMALL_PRIMES_PRODUCT) != 1:
        return "RSA modulus with a prime factor under 752 (NIST SP 800-89 §5.3.3)"
    if has_roca_fingerprint(modulus):
        return "RSA key with the ROCA fingerprint (CVE-2017-15361)"
    return None


# Coordinate length in bytes and field prime of each curve (SEC 2 §2.4-2.6; FIPS 186-5).
_EC_FIELDS = {
    "P-256": (32, 2**256 - 2**224 + 2**192 + 2**96 - 1),
    "P-384": (48, 2**384 - 2**128 - 2**96 + 2**32 - 1),
    "P-521": (66, 2**521 - 1),
}


def _ec_flaw(public: dict[str, Any]) -> str | None:
    """RFC 7518 §6.2.1.2-3: each coordinate is the full-length octet string of a field element.

    OpenSSL reads a shorter, longer or unreduced coordinate as the same point, so the same key
    could appear under several thumbprints; whether the point is on the curve, OpenSSL checks.
    """
    size, prime = _EC_FIELDS[public["crv"]]
    for name in ("x", "y"):
        raw = _decoded(public.get(name))
        if raw is None or len(raw) != size or int.from_bytes(raw, "big") >= prime:
            return "EC coordinates not canonical (RFC 7518 §6.2.1.2, §6.2.1.3)"
    return None


class _Edwards(NamedTuple):
    """The field and the encoding of an RFC 8032 curve, and its points of small order."""

    p: int
    size: int
    small_order_y: frozenset[int]
    """The y of every point of small order; each stands for both signs of x."""


_P25519 = 2**255 - 19
_P448 = 2**448 - 2**224 - 1
# The y of two of the four points of order 8 (the other two have p - _Y8), as C2SP/CCTV
# ed25519/README.md lists it; tests/edwards.py derives every point of small order afresh.
_Y8 = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
# y = 1 is the identity, y = p - 1 the point of order 2, y = 0 the two of order 4.
_EDWARDS = {
    "Ed25519": _Edwards(_P25519, 32, frozenset({1, _P25519 - 1, 0, _Y8, _P25519 - _Y8})),
    "Ed448": _Edwards(_P448, 57, frozenset({1, _P448 - 1, 0})),
}


def _okp_flaw(public: dict[str, Any]) -> str | None:
    """Why an EdDSA public key must not be used, or ``None`` (RFC 8032 §5.1.3, §5.2.3)."""
    curve = _EDWARDS[public["crv"]]
    raw = _decoded(public.get("x"))
    if raw is None or len(raw) != curve.size:
        return "malformed x"
    y = int.from_bytes(raw, "little") & ~(1 << (8 * curve.size - 1))  # the top bit: x's sign
    # Modulo p, as a lenient decoder reads y (OpenSSL's, for Ed25519): with A of small order,
    # [S]B = R + [k]A holds for S = 0 and some R of small order, whatever the message.
    if y % curve.p in curve.small_order_y:
        return "EdDSA key of small order: anyone can forge its signatures"
    if y >= curve.p:
        return "EdDSA key not canonically encoded (RFC 8032 §5.1.3, §5.2.3)"
    # A y with no x on the curve is left to OpenSSL, which fails to decode it and so verifies
    # nothing with it, cheaply. Finding it here would take Euler's criterion, one modular power
    # in Python: 8x (Ed25519) to 34x (Ed448) the cost of importing the key.
    return None


_FLAWS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "RSA": _rsa_flaw,
    "EC": _ec_flaw,
    "OKP": _okp_flaw,
}


def _subgroup_mask(prime: int, generator: int = 65537) -> int:
    """Bitmask of the residues that powers of ``generator`` take modulo ``prime``."""
    mask, value = 0, 1
    while not mask >> value & 1:
        mask |= 1 << value
        value = value * generator % prime
    return mask


# ROCA primes are k * M + (65537^a mod M) with M a primorial, so every such modulus lies in the
# subgroup generated by 65537 modulo each small prime of M (Nemec et al., CCS 2017).
_ROCA_MASKS = [(p, _subgroup_mask(p)) for p in _primes_below(168)[1:]]


def has_roca_fingerprint(modulus: int) -> bool:
    """Whether an RSA modulus was made by the flawed Infineon generator (CVE-2017-15361)."""
    return all(mask >> (modulus % prime) & 1 for prime, mask in _ROCA_MASKS)


# --- one key that arrives with a request -----------------------------------------------


class ImportedKey(NamedTuple):
    """A usable public key: its ``kid``, RFC 7638 SHA-256 thumbprint and verifiers by ``alg``."""

    kid: str | None
    thumbprint: str
    verifiers: dict[str, Verifier]


def import_public_jwk(jwk: object, algorithms: frozenset[str]) -> ImportedKey | str:
    """Import one JWK by exactly the rules of the issuer's key set, or say why it is refused.

    For keys that come from anyone, such as the ``jwk`` of a DPoP proof (RFC 9449 §4.2): they
    get every check a key set entry gets (kty, ``use``, ``key_ops``, ``alg``, curve, key size,
    known-weak keys), because both paths run the one function that holds those rules.
    """
    try:
        imported = _import_key(jwk, algorithms)
    except Exception:  # a hostile key can make any importer raise anything
        return "malformed"
    return imported if isinstance(imported, str) else ImportedKey(*imported)
