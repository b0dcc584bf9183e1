"""Key-set import and key selection (oauth_shield._keys)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey

from oauth_shield._config import SUPPORTED_ALGORITHMS
from oauth_shield._errors import Reason
from oauth_shield._jose import b64url_decode, parse_compact
from oauth_shield._keys import MAX_KEYS, KeySet, import_key_set
from oauth_shield.testing import SigningKey, sign_compact

ALL = SUPPORTED_ALGORITHMS


@pytest.fixture(scope="module")
def rsa(signing_keys: dict[str, SigningKey]) -> SigningKey:
    return signing_keys["RS256"]


@pytest.fixture(scope="module")
def es256(signing_keys: dict[str, SigningKey]) -> SigningKey:
    return signing_keys["ES256"]


@pytest.fixture(scope="module")
def eddsa(signing_keys: dict[str, SigningKey]) -> SigningKey:
    return signing_keys["EdDSA"]


def jwk(key: SigningKey, **changes: Any) -> dict[str, Any]:
    """The key's public JWK with ``changes`` (a value of ``...`` removes the member)."""
    result = {**key.jwk, **changes}
    return {name: value for name, value in result.items() if value is not ...}


def one(entry: object, algorithms: frozenset[str] = ALL) -> KeySet:
    keys = import_key_set({"keys": [entry]}, algorithms)
    assert keys is not None
    return keys


def verifies(keys: KeySet, key: SigningKey, alg: str, kid: str | None) -> bool:
    token = sign_compact({"alg": alg}, {"sub": "x"}, key.private, alg)
    head, payload, signature = token.split(".")
    found = keys.select(kid, alg)
    assert callable(found), found
    return found(f"{head}.{payload}".encode(), b64url_decode(signature) or b"")


def test_usable_keys_are_imported(rsa: SigningKey, es256: SigningKey, eddsa: SigningKey) -> None:
    keys = import_key_set({"keys": [rsa.jwk, es256.jwk, eddsa.jwk]}, ALL)
    assert keys is not None
    assert keys.skipped == ()
    assert keys.kids == {rsa.kid, es256.kid, eddsa.kid}
    assert len(keys) == len(keys.thumbprints) == 3
    assert ECKey.import_key(es256.jwk).thumbprint() in keys.thumbprints
    for key in (rsa, es256, eddsa):
        assert verifies(keys, key, key.alg, key.kid)
        assert verifies(keys, key, key.alg, None)


# --- skipped keys ----------------------------------------------------------------------

_X25519 = OKPKey.import_key(x25519.X25519PrivateKey.generate()).as_dict(private=False)
_K256 = ECKey.import_key(ec.generate_private_key(ec.SECP256K1())).as_dict(private=False)


SKIPPED: dict[str, tuple[Any, str]] = {
    "oct": ({"kty": "oct", "k": "c2VjcmV0", "kid": "k"}, "unsupported kty"),
    "unknown-kty": ({"kty": "PQC", "kid": "k"}, "unsupported kty"),
    "missing-kty": ({"kid": "k", "n": "AQAB", "e": "AQAB"}, "unsupported kty"),
    "use-enc": (lambda k: jwk(k, use="enc"), "use is not sig"),
    "use-non-string": (lambda k: jwk(k, use=["sig"]), "use is not sig"),
    "key-ops-sign-only": (lambda k: jwk(k, key_ops=["sign"]), "key_ops lacks verify"),
    "key-ops-encrypt": (lambda k: jwk(k, key_ops=["encrypt", "wrapKey"]), "key_ops lacks verify"),
    "key-ops-string": (lambda k: jwk(k, key_ops="verify"), "key_ops lacks verify"),
    "key-ops-object": (lambda k: jwk(k, key_ops={"verify": True}), "key_ops lacks verify"),
    "alg-HS256": (lambda k: jwk(k, alg="HS256"), "no allowed algorithm fits"),
    "alg-none": (lambda k: jwk(k, alg="none"), "no allowed algorithm fits"),
    "alg-of-other-family": (lambda k: jwk(k, alg="ES256"), "no allowed algorithm fits"),
    "alg-int": (lambda k: jwk(k, alg=256), "no allowed algorithm fits"),
    "alg-list": (lambda k: jwk(k, alg=["RS256"]), "no allowed algorithm fits"),
    "kid-int": (lambda k: jwk(k, kid=7), "malformed kid"),
    "kid-empty": (lambda k: jwk(k, kid=""), "malformed kid"),
    "kid-list": (lambda k: jwk(k, kid=["a"]), "malformed kid"),
    "n-bad-base64": (lambda k: jwk(k, n="!!!!"), "malformed n"),
    "n-padded": (lambda k: jwk(k, n=k.jwk["n"] + "="), "malformed n"),
    "n-standard-alphabet": (
        lambda k: jwk(k, n=k.jwk["n"].replace("-", "+").replace("_", "/") + "+"),
        "malformed n",
    ),
    "n-int": (lambda k: jwk(k, n=12345), "malformed n"),
    "e-bad-base64": (lambda k: jwk(k, e="AQAB="), "does not import"),
    "e-one": (lambda k: jwk(k, e="AQ"), "does not import"),
    "n-missing": (lambda k: jwk(k, n=...), "malformed n"),
    "not-an-object": ("RS256", "not an object"),
    "null": (None, "not an object"),
    "list": ([{"kty": "RSA"}], "not an object"),
}


@pytest.mark.parametrize(("entry", "why"), SKIPPED.values(), ids=SKIPPED.keys())
def test_skipped_with_a_reason(entry: Any, why: str, rsa: SigningKey) -> None:
    keys = one(entry(rsa) if callable(entry) else entry)
    assert keys.index == {}
    assert len(keys) == 0
    assert [reason for _, reason in keys.skipped] == [why]


@pytest.mark.parametrize(
    ("entry", "algorithms", "why"),
    [
        (lambda k: jwk(k, y=k.jwk["x"]), ALL, "does not import"),
        (lambda k: jwk(k, crv="P-384", alg=...), ALL, "does not import"),
        (lambda k: jwk(k, crv="P-192"), ALL, "no allowed algorithm fits"),
        (lambda k: _K256, ALL, "no allowed algorithm fits"),
        (lambda k: jwk(k), frozenset({"ES384", "RS256"}), "no allowed algorithm fits"),
        (lambda k: jwk(k, alg="ES384"), ALL, "no allowed algorithm fits"),
        (lambda k: _X25519, ALL, "no allowed algorithm fits"),
        (lambda k: {**_X25519, "alg": "EdDSA"}, ALL, "no allowed algorithm fits"),
    ],
    ids=["point-not-on-curve", "curve-of-other-size", "unknown-curve", "secp256k1",
         "curve-not-allowlisted", "alg-for-other-curve", "x25519", "x25519-claiming-eddsa"],
)  # fmt: skip
def test_ec_and_okp_keys_skipped(
    entry: Any, algorithms: frozenset[str], why: str, es256: SigningKey
) -> None:
    keys = one(entry(es256), algorithms)
    assert keys.index == {}
    assert [reason for _, reason in keys.skipped] == [why]


@pytest.fixture(scope="module")
def small_rsa() -> SigningKey:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return SigningKey("RS256", kid="small", bits=1024)


def test_rsa_under_2048_bits_is_skipped(small_rsa: SigningKey) -> None:
    assert one(small_rsa.jwk).skipped == (("small", "RSA key under 2048 bits"),)


def test_import_of_a_small_rsa_key_emits_no_warning(small_rsa: SigningKey) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert one(small_rsa.jwk).skipped == (("small", "RSA key under 2048 bits"),)


@pytest.mark.parametrize("changes", [{"kty": ["EC"]}, {"crv": ["P-256"]}, {"kty": {"EC": 1}}])
def test_unhashable_members_are_skipped_not_raised(
    changes: dict[str, Any], es256: SigningKey
) -> None:
    keys = import_key_set({"keys": [jwk(es256, **changes), jwk(es256, kid="good")]}, ALL)
    assert keys is not None
    assert keys.kids == {"good"}
    assert len(keys.skipped) == 1


def test_skipped_keys_do_not_spoil_the_others(rsa: SigningKey, es256: SigningKey) -> None:
    entries = [{"kty": "oct", "k": "AAAA", "kid": rsa.kid}, "junk", jwk(rsa, use="enc"), es256.jwk]
    keys = import_key_set({"keys": entries}, ALL)
    assert keys is not None
    assert keys.kids == {es256.kid}
    assert [kid for kid, _ in keys.skipped] == [rsa.kid, None, rsa.kid]
    assert keys.select(rsa.kid, "RS256") is Reason.UNKNOWN_KID


@pytest.mark.parametrize(
    "document",
    [{}, {"keys": None}, {"keys": {"kty": "RSA"}}, {"keys": "[]"}, {"keys": [{}] * (MAX_KEYS + 1)}],
    ids=["missing", "null", "object", "string", "too-many"],
)
def test_unusable_documents(document: dict[str, Any]) -> None:
    assert import_key_set(document, ALL) is None


def test_max_keys_is_allowed(es256: SigningKey) -> None:
    keys = import_key_set({"keys": [jwk(es256, kid=f"k{i}") for i in range(MAX_KEYS)]}, ALL)
    assert keys is not None
    assert len(keys.kids) == MAX_KEYS


def test_private_members_are_not_imported() -> None:
    key = SigningKey("ES256", kid="p")
    private_jwk = {**ECKey.import_key(key.private).as_dict(private=True), "kid": "p"}
    assert "d" in private_jwk
    keys = one(private_jwk)
    assert verifies(keys, key, "ES256", "p")
    found = keys.select("p", "ES256")
    held = [cell.cell_contents for cell in getattr(found, "__closure__", None) or ()]
    assert any(isinstance(item, ec.EllipticCurvePublicKey) for item in held)
    assert not any(isinstance(item, ec.EllipticCurvePrivateKey) for item in held)


def test_rsa_private_members_are_ignored(rsa: SigningKey) -> None:
    keys = one(jwk(rsa, d="AAAA", p="AAAA", q="AAAA", dp="!", dq="!", qi="!"))
    assert verifies(keys, rsa, "RS256", rsa.kid)


# --- selection --------------------------------------------------------------------------


def test_selection_by_kid_and_alg(rsa: SigningKey, es256: SigningKey) -> None:
    keys = import_key_set({"keys": [jwk(rsa, alg=...), es256.jwk]}, ALL)
    assert keys is not None
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        assert verifies(keys, rsa, alg, rsa.kid)
    assert keys.select("nope", "RS256") is Reason.UNKNOWN_KID
    assert keys.select(es256.kid, "ES384") is Reason.KEY_MISMATCH
    assert keys.select(es256.kid, "RS256") is Reason.KEY_MISMATCH
    assert keys.select(rsa.kid, "ES256") is Reason.KEY_MISMATCH


def test_declared_alg_restricts_the_key(rsa: SigningKey) -> None:
    keys = one(jwk(rsa, alg="PS256"))
    assert verifies(keys, rsa, "PS256", rsa.kid)
    for alg in ("RS256", "PS384", "PS512"):
        assert keys.select(rsa.kid, alg) is Reason.KEY_MISMATCH


def test_allowlist_restricts_the_key(rsa: SigningKey) -> None:
    keys = one(jwk(rsa, alg=...), frozenset({"PS256", "ES256"}))
    assert set(keys.index) == {(rsa.kid, "PS256"), (None, "PS256")}


def test_okp_key_serves_both_eddsa_names(eddsa: SigningKey) -> None:
    keys = one(jwk(eddsa, alg=...))
    assert verifies(keys, eddsa, "EdDSA", eddsa.kid)
    assert verifies(keys, eddsa, "Ed25519", eddsa.kid)
    assert keys.select(eddsa.kid, "Ed448") is Reason.KEY_MISMATCH


def test_duplicate_kid_and_alg_is_ambiguous(rsa: SigningKey, es256: SigningKey) -> None:
    twin = SigningKey("ES256", kid=es256.kid)
    keys = import_key_set({"keys": [es256.jwk, twin.jwk, rsa.jwk]}, ALL)
    assert keys is not None
    assert keys.select(es256.kid, "ES256") is Reason.AMBIGUOUS_KEY
    assert keys.select(None, "ES256") is Reason.AMBIGUOUS_KEY
    assert verifies(keys, rsa, "RS256", rsa.kid)


def test_same_kid_for_different_algorithms_is_not_ambiguous(
    rsa: SigningKey, es256: SigningKey
) -> None:
    keys = import_key_set({"keys": [jwk(rsa, kid="shared"), jwk(es256, kid="shared")]}, ALL)
    assert keys is not None
    assert verifies(keys, rsa, "RS256", "shared")
    assert verifies(keys, es256, "ES256", "shared")


def test_skipped_twin_is_not_ambiguous(es256: SigningKey) -> None:
    twin = SigningKey("ES256", kid=es256.kid)
    keys = import_key_set({"keys": [es256.jwk, jwk(twin, use="enc")]}, ALL)
    assert keys is not None
    assert verifies(keys, es256, "ES256", es256.kid)


def test_token_without_kid(rsa: SigningKey, es256: SigningKey) -> None:
    keys = import_key_set({"keys": [rsa.jwk, es256.jwk, jwk(SigningKey("ES256"), kid=...)]}, ALL)
    assert keys is not None
    assert verifies(keys, rsa, "RS256", None)  # the only key that fits RS256
    assert keys.select(None, "ES256") is Reason.AMBIGUOUS_KEY  # two keys fit ES256
    assert keys.select(None, "PS384") is Reason.UNKNOWN_KID  # rsa.jwk declares RS256 only


def test_kidless_key_is_found_only_without_kid(es256: SigningKey) -> None:
    keys = one(jwk(es256, kid=...))
    assert keys.kids == frozenset()
    assert verifies(keys, es256, "ES256", None)
    assert keys.select("any", "ES256") is Reason.UNKNOWN_KID


def test_embedded_jwk_is_never_trusted(es256: SigningKey) -> None:
    # RFC 8725 §3.10: an attacker signs with its own key and embeds it in the header.
    attacker = SigningKey("ES256", kid=es256.kid)
    header = {"alg": "ES256", "kid": es256.kid, "jwk": attacker.jwk, "jku": "https://evil.test"}
    token = sign_compact(header, {"sub": "admin"}, attacker.private, "ES256")
    jws = parse_compact(token, ALL)
    assert jws is not None
    verify = one(es256.jwk).select(jws.header.kid, jws.header.alg)
    assert callable(verify)
    assert verify(jws.signing_input, jws.signature) is False


def test_the_same_key_published_twice_is_one_key(signing_keys: dict[str, SigningKey]) -> None:
    key = signing_keys["ES256"]
    keys = import_key_set({"keys": [key.jwk, dict(key.jwk)]}, frozenset({"ES256"}))
    assert keys is not None
    assert callable(keys.select(key.kid, "ES256"))
    assert callable(keys.select(None, "ES256"))
