"""An immutable snapshot of the issuer's key set, and key selection (pure, no I/O).

Import applies every rule once per fetched set, so that selecting the key for a token is one
dictionary lookup. A key is skipped, with its reason kept for the log, when it is not an
asymmetric signature key we may use: unknown ``kty`` or ``oct``; ``use`` other than ``sig``;
``key_ops`` without ``verify``; an ``alg`` outside the allowlist; RSA under 2048 bits; a curve
that fits none of the allowed algorithms; anything that does not import cleanly.

Also skipped: RSA moduli with the ROCA fingerprint (CVE-2017-15361): their private keys can be
computed from the public ones, so a signature by them proves nothing.

Selection (RFC 7515 §4.1.4, RFC 8725 §3.10): the token's ``kid`` and ``alg`` pick exactly one
key. Two different keys for the same ``kid`` and ``alg`` are ambiguous and verify nothing (the
same key published twice is one key). A token without ``kid`` is accepted only when a single
key in the set fits its ``alg``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from joserfc.jwk import ECKey, OKPKey, RSAKey

from ._errors import Reason
from ._jose import Verifier, b64url_decode, make_verifier

#: A real issuer publishes a handful of keys; more is a broken or hostile key set.
MAX_KEYS = 100
#: RFC 7518 §3.3 requires 2048 bits for RS*/PS*.
MIN_RSA_BITS = 2048

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
    if kty == "RSA":  # judged before joserfc sees the key (it warns about small ones)
        modulus = b64url_decode(public["n"]) if isinstance(public.get("n"), str) else None
        if modulus is None:
            return "malformed n"
        if int.from_bytes(modulus, "big").bit_length() < MIN_RSA_BITS:
            return "RSA key under 2048 bits"
        if has_roca_fingerprint(int.from_bytes(modulus, "big")):
            return "RSA key with the ROCA fingerprint (CVE-2017-15361)"
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


def _subgroup_mask(prime: int, generator: int = 65537) -> int:
    """Bitmask of the residues that powers of ``generator`` take modulo ``prime``."""
    mask, value = 0, 1
    while not mask >> value & 1:
        mask |= 1 << value
        value = value * generator % prime
    return mask


# ROCA primes are k * M + (65537^a mod M) with M a primorial, so every such modulus lies in the
# subgroup generated by 65537 modulo each small prime of M (Nemec et al., CCS 2017).
_ROCA_PRIMES = [p for p in range(3, 168) if all(p % d for d in range(2, int(p**0.5) + 1))]
_ROCA_MASKS = [(p, _subgroup_mask(p)) for p in _ROCA_PRIMES]


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
