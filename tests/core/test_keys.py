"""Key-set import and key selection (oauth_shield._keys)."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey

from oauth_shield._config import SUPPORTED_ALGORITHMS
from oauth_shield._errors import Reason
from oauth_shield._jose import b64url_decode, parse_compact
from oauth_shield._keys import MAX_KEYS, KeySet, import_key_set
from oauth_shield.testing import SigningKey, b64url, sign_compact
from tests.edwards import ED448, ED25519, Curve

ALL = SUPPORTED_ALGORITHMS
VECTORS = Path(__file__).parent.parent / "vectors"
# Reasons for skipping a key (the values of KeySet.skipped, logged at DEBUG).
SMALL_ORDER = "EdDSA key of small order: anyone can forge its signatures"
NOT_CANONICAL = "EdDSA key not canonically encoded (RFC 8032 §5.1.3, §5.2.3)"
EXPONENT = "RSA exponent not odd or not from 3 to 2^32 - 1"
SMALL_FACTOR = "RSA modulus with a prime factor under 752 (NIST SP 800-89 §5.3.3)"
EC_COORDINATES = "EC coordinates not canonical (RFC 7518 §6.2.1.2, §6.2.1.3)"


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
    "e-bad-base64": (lambda k: jwk(k, e="AQAB="), "malformed e"),
    "e-one": (lambda k: jwk(k, e="AQ"), EXPONENT),
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
        (lambda k: jwk(k, crv="P-384", alg=...), ALL, EC_COORDINATES),
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


# --- keys that are valid but worthless (SECURITY-CASES class 14) ---------------------------

#: The 14 encodings of the eight edwards25519 points of small order, as C2SP/CCTV lists them
#: (ed25519/README.md): the eight points, then the six other encodings (x = -0 or y >= p).
CCTV_SMALL_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
]


def okp(curve: Curve, data: bytes | str, **extra: Any) -> dict[str, Any]:
    x = b64url(data) if isinstance(data, bytes) else data
    return {"kty": "OKP", "crv": curve.name, "x": x, "kid": "k", **extra}


def why_skipped(entry: object) -> str | None:
    keys = one(entry)
    assert len(keys.skipped) + len(keys) == 1
    return keys.skipped[0][1] if keys.skipped else None


def test_the_model_finds_the_small_order_points_cctv_lists() -> None:
    assert sorted(key.hex() for key in ED25519.small_order_encodings) == sorted(CCTV_SMALL_ORDER)
    assert len(ED25519.torsion) == 8
    p = ED448.p
    assert ED448.torsion == {(0, 1), (0, p - 1), (1, 0), (p - 1, 0)}
    # y + k p for every k that fits in 455 bits, and either sign bit when x = 0.
    assert len(ED448.small_order_encodings) == 2 * 129 + 2 * 129 + 2 * 128


@pytest.mark.parametrize("data", sorted(ED25519.small_order_encodings), ids=lambda data: data.hex())
def test_every_ed25519_small_order_encoding_is_skipped(data: bytes) -> None:
    assert why_skipped(okp(ED25519, data)) == SMALL_ORDER


def test_every_ed448_small_order_encoding_is_skipped() -> None:
    for data in sorted(ED448.small_order_encodings):  # 772 of them: one loop, not 772 tests
        assert why_skipped(okp(ED448, data)) == SMALL_ORDER, data.hex()


@pytest.mark.parametrize("alg", [None, "EdDSA", "Ed25519"])
def test_the_all_zero_placeholder_is_skipped_whatever_it_declares(alg: str | None) -> None:
    entry = okp(ED25519, bytes(32), use="sig", key_ops=["verify"], **({"alg": alg} if alg else {}))
    assert why_skipped(entry) == SMALL_ORDER


def test_cctv_keys_are_skipped_exactly_when_of_small_order() -> None:
    # Keys with a small-order component and a prime-order one ("low_order_component_A" alone)
    # are imported: no blocklist can find them, and they let no one forge (only their owner's
    # signatures become unreliable). libsodium and ed25519-dalek's verify_strict do the same.
    entries = json.loads((VECTORS / "cctv" / "ed25519_public_keys.json").read_text())
    assert len(entries) == 22
    for entry in entries:
        expected = SMALL_ORDER if "low_order_A" in entry["flags"] else None
        assert why_skipped(okp(ED25519, bytes.fromhex(entry["key"]))) == expected, entry


@pytest.mark.parametrize("curve", [ED25519, ED448], ids=["Ed25519", "Ed448"])
def test_wycheproof_eddsa_keys_import_and_verify_as_labelled(curve: Curve) -> None:
    vectors = json.loads((VECTORS / "wycheproof" / f"{curve.name.lower()}_test.json").read_text())
    seen = 0
    for group in vectors["testGroups"]:
        keys = one(okp(curve, bytes.fromhex(group["publicKey"]["pk"])))
        verify = keys.select("k", curve.name)
        assert callable(verify), group["publicKey"]["pk"]
        for test in group["tests"]:
            result = verify(bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))
            assert result is (test["result"] == "valid"), test["tcId"]
            seen += 1
    assert seen == vectors["numberOfTests"]


def first_y(curve: Curve, *, on_curve: bool, start: int = 2) -> int:
    y = start
    while (curve.x_for(y) is not None) is not on_curve or curve.is_small_order(encode_y(curve, y)):
        y += 1
    return y


def encode_y(curve: Curve, y: int, sign: int = 0) -> bytes:
    return (y | sign << curve.sign_bit).to_bytes(curve.size, "little")


@pytest.mark.parametrize("curve", [ED25519, ED448], ids=["Ed25519", "Ed448"])
def test_non_canonical_encodings_are_skipped(curve: Curve) -> None:
    good = first_y(curve, on_curve=True)
    assert why_skipped(okp(curve, encode_y(curve, good))) is None
    assert why_skipped(okp(curve, encode_y(curve, good + curve.p))) == NOT_CANONICAL
    assert why_skipped(okp(curve, encode_y(curve, curve.p - 2) + b"\0")) == "malformed x"
    assert why_skipped(okp(curve, encode_y(curve, good)[:-1])) == "malformed x"


@pytest.mark.parametrize("curve", [ED25519, ED448], ids=["Ed25519", "Ed448"])
def test_a_key_off_the_curve_is_imported_but_verifies_nothing(curve: Curve) -> None:
    # Left to OpenSSL, which cannot decode it: worthless, but harmless and cheap to refuse a
    # token with, while finding it at import would cost a modular power per key.
    data = encode_y(curve, first_y(curve, on_curve=False))
    verify = one(okp(curve, data)).select("k", curve.name)
    assert callable(verify)
    for signature in (bytes(2 * curve.size), curve.encode((0, 1)) + bytes(curve.size)):
        assert verify(b"any message", signature) is False


def test_ed448_bits_above_y_make_an_encoding_non_canonical() -> None:
    # RFC 8032 §5.2.3: bits 448 to 454 belong to y, which must then be below p. A decoder that
    # ignored them would read the identity here.
    assert why_skipped(okp(ED448, (1).to_bytes(56, "little") + b"\x01")) == NOT_CANONICAL


@pytest.mark.parametrize(
    "x", [None, 7, ["AAAA"], "", "A" * 43 + "=", "+" * 43, "AAAA.AAAA"],
    ids=["missing", "int", "list", "empty", "padded", "standard-alphabet", "dot"],
)  # fmt: skip
def test_malformed_x(x: object) -> None:
    entry = {name: value for name, value in okp(ED25519, "", x=x).items() if value is not None}
    assert why_skipped(entry) == "malformed x"


def expected_verdict(curve: Curve, data: bytes) -> str:
    """What import must say of ``data``, worked out with the model alone."""
    if len(data) != curve.size:
        return "refused"
    if curve.is_small_order(data):
        return "small order"
    y = int.from_bytes(data, "little") & ((1 << curve.sign_bit) - 1)
    # Off the curve is imported (and verifies nothing): see the test above.
    return "usable" if y < curve.p else "refused"


def _near(curve: Curve) -> st.SearchStrategy[bytes]:
    """Encodings next to those of small order: y + k p + delta, either sign."""
    torsion_y = sorted(y for _, y in curve.torsion)
    top = 1 << curve.sign_bit

    def near(y: int, k: int, delta: int, sign: int) -> bytes:
        return encode_y(curve, (y + k * curve.p + delta) % top, sign)

    return st.builds(
        near, st.sampled_from(torsion_y), st.integers(0, 128), st.integers(-3, 3), st.integers(0, 1)
    )


@pytest.mark.parametrize("curve", [ED25519, ED448], ids=["Ed25519", "Ed448"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_import_agrees_with_the_model_on_any_encoding(curve: Curve, data: st.DataObject) -> None:
    encoding = data.draw(
        st.one_of(
            st.binary(min_size=curve.size, max_size=curve.size),
            st.sampled_from(sorted(curve.small_order_encodings)),
            _near(curve),
            st.binary(max_size=curve.size + 2),
        )
    )
    keys = import_key_set({"keys": [okp(curve, encoding)]}, ALL)  # never raises
    assert keys is not None
    verdict = expected_verdict(curve, encoding)
    if verdict == "usable":
        assert keys.skipped == () and callable(keys.select("k", curve.name))
    else:
        assert keys.index == {}
        assert verdict != "small order" or keys.skipped == (("k", SMALL_ORDER),)


@settings(max_examples=200, deadline=None)
@given(x=st.text(max_size=80), crv=st.sampled_from(["Ed25519", "Ed448", "X25519", "ed25519"]))
def test_import_never_raises_on_any_okp_text(x: str, crv: str) -> None:
    keys = import_key_set({"keys": [{"kty": "OKP", "crv": crv, "x": x}]}, ALL)
    assert keys is not None


# RSA: bounds on the modulus and the exponent, and moduli no generator of RSA keys makes.

_SMALL_PRIMES = [p for p in range(2, 752) if all(p % d for d in range(2, int(p**0.5) + 1))]


def modulus(bits: int, seed: int = 0) -> int:
    """An odd number of ``bits`` bits with no prime factor under 752: import takes it for a
    modulus (it need not be a product of two primes for the bounds to be exercised)."""
    rng = random.Random(f"{bits}-{seed}")
    while True:
        n = rng.getrandbits(bits) | 1 << (bits - 1) | 1
        if all(n % p for p in _SMALL_PRIMES):
            return n


def rsa_entry(n: int, e: int = 65537, **extra: Any) -> dict[str, Any]:
    to_b64 = lambda value: b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))  # noqa: E731
    return {"kty": "RSA", "n": to_b64(n), "e": to_b64(e), "kid": "k", **extra}


@pytest.mark.parametrize(
    ("bits", "why"),
    [(2048, None), (3072, None), (4096, None), (4097, "RSA key over 4096 bits"),
     (8192, "RSA key over 4096 bits"), (16384, "RSA key over 4096 bits")],
)  # fmt: skip
def test_modulus_bounds(bits: int, why: str | None) -> None:
    assert why_skipped(rsa_entry(modulus(bits))) == why


@pytest.mark.parametrize(
    ("e", "why"),
    [(3, None), (17, None), (65537, None), (2**32 - 1, None),
     (0, EXPONENT), (1, EXPONENT), (2, EXPONENT), (65536, EXPONENT), (2**32 + 1, EXPONENT),
     (2**64 - 1, EXPONENT), (2**2047 + 1, EXPONENT)],
    ids=["3", "17", "65537", "2^32-1", "0", "1", "2", "65536", "2^32+1", "2^64-1", "2^2047+1"],
)  # fmt: skip
def test_exponent_bounds(e: int, why: str | None) -> None:
    assert why_skipped(rsa_entry(modulus(2048), e)) == why


@pytest.mark.parametrize("e", [None, 65537, "AQAB=", "", "AQ AB", ["AQAB"]])
def test_malformed_exponent(e: object) -> None:
    entry = rsa_entry(modulus(2048))
    entry.pop("e")
    if e is not None:
        entry["e"] = e
    assert why_skipped(entry) == "malformed e"


@pytest.mark.parametrize("factor", [2, 3, 5, 743, 751])
def test_modulus_with_a_small_factor(factor: int) -> None:
    n = factor * modulus(2048 - factor.bit_length() + 1)
    assert n.bit_length() >= 2048
    assert why_skipped(rsa_entry(n)) == SMALL_FACTOR


def test_a_factor_of_757_is_not_looked_for() -> None:
    # The bound is NIST's (SP 800-89 §5.3.3, "no factors less than 752"): a cheap filter for
    # broken generators, not a factoring attempt.
    assert why_skipped(rsa_entry(757 * modulus(2039))) is None


def test_a_real_key_at_the_exponent_bound_verifies(rsa: SigningKey) -> None:
    keys = one(rsa.jwk)
    assert verifies(keys, rsa, "RS256", rsa.kid)
    assert rsa.private.public_key().public_numbers().e == 65537  # type: ignore[union-attr]


# EC: OpenSSL refuses points off the curve; the encoding of a point on it is ours to check.

_P = {
    "P-256": 2**256 - 2**224 + 2**192 + 2**96 - 1,
    "P-384": 2**384 - 2**128 - 2**96 + 2**32 - 1,
    "P-521": 2**521 - 1,
}
_B = {
    "P-256": 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    "P-384": int(
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a"
        "c656398d8a2ed19d2a85c8edd3ec2aef", 16,
    ),
    "P-521": int(
        "0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef1"
        "09e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b50"
        "3f00", 16,
    ),
}  # fmt: skip
_SIZE = {"P-256": 32, "P-384": 48, "P-521": 66}


def small_x_point(crv: str) -> tuple[int, int]:
    """A point of the curve with a small x (y^2 = x^3 - 3x + b; p = 3 mod 4 on all three)."""
    p, b = _P[crv], _B[crv]
    for x in range(1, 100):
        u = (x**3 - 3 * x + b) % p
        y = pow(u, (p + 1) // 4, p)
        if y * y % p == u:
            return x, y
    raise AssertionError("no point")


def ec_entry(crv: str, x: bytes, y: bytes) -> dict[str, Any]:
    return {"kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y), "kid": "k"}


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521"])
def test_ec_coordinates_must_be_canonical(crv: str) -> None:
    x, y = small_x_point(crv)
    size, p = _SIZE[crv], _P[crv]
    full = lambda value: value.to_bytes(size, "big")  # noqa: E731
    assert why_skipped(ec_entry(crv, full(x), full(y))) is None
    assert why_skipped(ec_entry(crv, full(x)[1:], full(y))) == EC_COORDINATES  # short
    assert why_skipped(ec_entry(crv, b"\0" + full(x), full(y))) == EC_COORDINATES  # long
    assert why_skipped(ec_entry(crv, full(x + p), full(y))) == EC_COORDINATES  # x >= p
    assert why_skipped(ec_entry(crv, full(x), full(p - y))) is None  # the other point
    assert why_skipped(ec_entry(crv, full(x), full(y + 1))) == "does not import"  # off the curve
    assert why_skipped(ec_entry(crv, full(0), full(0))) == "does not import"  # not a point


def test_p521_y_plus_p_is_refused(es256: SigningKey) -> None:
    # On P-521, y + p still fits in 66 bytes for every y; OpenSSL reduces it and imports the
    # same point under another RFC 7638 thumbprint.
    numbers = ec.generate_private_key(ec.SECP521R1()).public_key().public_numbers()
    y = numbers.y + _P["P-521"]
    entry = ec_entry("P-521", numbers.x.to_bytes(66, "big"), y.to_bytes(66, "big"))
    assert why_skipped(entry) == EC_COORDINATES
