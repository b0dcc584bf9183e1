"""Hostile DPoP proofs (RFC 9449 §4.3, §7, §11): every one is refused with an ``AuthError``,
says nothing of the proof, costs no signature check unless it gets that far, and leaves
nothing behind that could refuse the next good proof.

The classes of SECURITY-CASES.md, applied to proofs: structure and encoding (1), algorithm (2),
the key a proof brings (3, 14), signature values (4), header semantics (5), JSON (6), the
claims (7), where the request lands (11); then replay, the token's binding, and a fuzzer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, RSAKey

from oauth_shield import AuthError, InvalidTokenError, Reason
from oauth_shield import _dpop as dpop
from oauth_shield._dpop import DPoPSettings, check_binding, single_proof
from oauth_shield._errors import InvalidDPoPProofError
from oauth_shield._keys import import_key_set, import_public_jwk
from oauth_shield._replay import MemoryReplayStore
from oauth_shield._urls import request_url
from oauth_shield.testing import DPoPKey, b64url, sign_compact
from tests.conftest import NOW
from tests.dpop import TOKEN, URL, check, client_key, encode, proof, refused

Mutation = Callable[[DPoPKey], str]


@pytest.fixture(autouse=True)
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every signature check a proof costs, counted; no key remembered across tests."""
    checks: list[str] = []

    def counting_import(jwk: object, algorithms: frozenset[str]) -> Any:
        imported = import_public_jwk(jwk, algorithms)
        if isinstance(imported, str):
            return imported

        def wrap(verify: Any) -> Any:
            return lambda message, signature: checks.append("verify") or verify(message, signature)

        verifiers = {alg: wrap(verify) for alg, verify in imported.verifiers.items()}
        return imported._replace(verifiers=verifiers)

    dpop._KEYS.clear()
    monkeypatch.setattr(dpop, "import_public_jwk", counting_import)
    yield checks
    dpop._KEYS.clear()


def hostile(value: Any, reason: Reason, checks: list[str], **kw: Any) -> None:
    """Refused for ``reason``, with no signature check unless the signature is the reason,
    and a good proof is accepted right after."""
    before = len(checks)
    refused(value, reason, **kw)
    assert len(checks) - before == (reason is Reason.DPOP_BAD_SIGNATURE)
    check(proof())


def raw(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, key: DPoPKey) -> str:
    """A proof signed by ``key`` over exactly these header and payload bytes."""
    return sign_compact(header, payload, key.private, key.alg)


def header_of(key: DPoPKey, **changes: Any) -> dict[str, Any]:
    header = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk, **changes}
    return {name: value for name, value in header.items() if value is not ...}


def claims_of(**changes: Any) -> dict[str, Any]:
    claims = {
        "jti": "jti-1",
        "htm": "GET",
        "htu": URL,
        "iat": NOW,
        "ath": b64url(hashlib.sha256(TOKEN.encode()).digest()),
        **changes,
    }
    return {name: value for name, value in claims.items() if value is not ...}


# --- structure and encoding (class 1) -------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda p: p.split(".")[0], id="one-part"),
        pytest.param(lambda p: p.rsplit(".", 1)[0], id="two-parts"),
        pytest.param(lambda p: p + ".AAAA", id="four-parts"),
        pytest.param(lambda p: p + ".AAAA.AAAA", id="jwe-shape"),
        pytest.param(lambda p: "." + p.split(".", 1)[1], id="empty-header"),
        pytest.param(lambda p: p.split(".")[0] + ".." + p.split(".")[2], id="empty-payload"),
        pytest.param(lambda p: p.rsplit(".", 1)[0] + ".", id="empty-signature"),
        pytest.param(lambda p: p + "==", id="padding"),
        pytest.param(lambda p: p.replace(".", "=.", 1), id="padding-in-header"),
        pytest.param(lambda p: " " + p, id="leading-space"),
        pytest.param(lambda p: p + "\n", id="newline"),
        pytest.param(lambda p: p[:10] + "+" + p[11:], id="plus"),
        pytest.param(lambda p: p[:10] + "é" + p[11:], id="non-ascii"),
        pytest.param(lambda p: p + "A" * 9000, id="oversized"),
        pytest.param(lambda p: "", id="empty"),
        pytest.param(lambda p: "..", id="dots"),
        pytest.param(
            lambda p: json.dumps({"protected": p.split(".")[0], "signature": "x"}),
            id="json-serialization",
        ),
    ],
)
def test_structure(shape: Callable[[str], str], signature_checks: list[str]) -> None:
    hostile(shape(proof()), Reason.DPOP_MALFORMED, signature_checks)


@pytest.mark.parametrize("value", [None, 42, b"a.b.c", ["a.b.c"], {"a": 1}])
def test_not_text(value: Any, signature_checks: list[str]) -> None:
    hostile(value, Reason.DPOP_MALFORMED, signature_checks)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_non_canonical_base64_in_the_signature(signature_checks: list[str]) -> None:
    head, _, signature = proof(client_key("ES256")).rpartition(".")
    assert len(signature) == 86  # 64 bytes: the last character carries 2 bits, 4 unused
    twin = signature[:-1] + ALPHABET[ALPHABET.index(signature[-1]) + 1]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(signature + "==")
    hostile(f"{head}.{twin}", Reason.DPOP_MALFORMED, signature_checks)


# --- algorithm (class 2) ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "", "HS256", "ES384", "RS1", 1])
def test_algorithms_outside_the_allowlist(alg: Any, signature_checks: list[str]) -> None:
    key = client_key()
    hostile(
        raw(header_of(key, alg=alg), claims_of(), key),
        Reason.DPOP_UNSUPPORTED_ALGORITHM,
        signature_checks,
    )


@pytest.mark.parametrize("alg", [None, ["ES256"], {"alg": "ES256"}])
def test_missing_or_non_text_alg(alg: Any, signature_checks: list[str]) -> None:
    key = client_key()
    header = header_of(key, alg=alg if alg is not None else ...)
    hostile(raw(header, claims_of(), key), Reason.DPOP_UNSUPPORTED_ALGORITHM, signature_checks)


def test_unsigned(signature_checks: list[str]) -> None:
    key = client_key()
    unsigned = f"{encode(header_of(key, alg='none'))}.{encode(claims_of())}."
    hostile(unsigned, Reason.DPOP_UNSUPPORTED_ALGORITHM, signature_checks)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(lambda key: json.dumps(key.public_jwk).encode(), id="jwk-text"),
        pytest.param(lambda key: base64.urlsafe_b64decode(key.public_jwk["x"] + "=="), id="x"),
        pytest.param(lambda key: b"", id="empty"),
    ],
)
def test_hmac_keyed_with_the_public_key(
    secret: Callable[[DPoPKey], bytes], signature_checks: list[str]
) -> None:
    key = client_key()
    signing_input = f"{encode(header_of(key, alg='HS256'))}.{encode(claims_of())}"
    mac = hmac.new(secret(key), signing_input.encode(), hashlib.sha256).digest()
    hostile(f"{signing_input}.{b64url(mac)}", Reason.DPOP_UNSUPPORTED_ALGORITHM, signature_checks)


def test_an_algorithm_that_is_allowed_but_not_configured(signature_checks: list[str]) -> None:
    only_rsa = DPoPSettings(algorithms=["RS256"])
    hostile(proof(), Reason.DPOP_UNSUPPORTED_ALGORITHM, signature_checks, settings=only_rsa)


# --- the key a proof brings (classes 3 and 14) ------------------------------------------------


def _ec_private_jwk(key: DPoPKey) -> dict[str, Any]:
    return dict(ECKey.import_key(key.private).as_dict(private=True))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param(lambda key: ..., id="missing"),
        pytest.param(lambda key: None, id="null"),
        pytest.param(lambda key: json.dumps(key.public_jwk), id="text"),
        pytest.param(lambda key: [key.public_jwk], id="list"),
        pytest.param(lambda key: {}, id="empty"),
        pytest.param(_ec_private_jwk, id="private-key-d"),
        pytest.param(lambda key: {**key.public_jwk, "d": ""}, id="empty-d"),
        pytest.param(lambda key: {**key.public_jwk, "priv": "AAAA"}, id="priv"),
        pytest.param(lambda key: {**key.public_jwk, "x5c": ["MIIB"]}, id="x5c"),
        pytest.param(lambda key: {**key.public_jwk, "jku": "https://attacker.test/"}, id="jku"),
        pytest.param(lambda key: {"kty": "oct", "k": "c2VjcmV0"}, id="oct"),
        pytest.param(lambda key: {**key.public_jwk, "kty": "RSA"}, id="wrong-kty"),
        pytest.param(lambda key: {**key.public_jwk, "crv": "P-384"}, id="wrong-curve"),
        pytest.param(lambda key: {**key.public_jwk, "x": key.public_jwk["y"]}, id="off-curve"),
        pytest.param(lambda key: {**key.public_jwk, "x": "AAAA"}, id="short-x"),
        pytest.param(lambda key: {**key.public_jwk, "use": "enc"}, id="use-enc"),
        pytest.param(lambda key: {**key.public_jwk, "key_ops": ["encrypt"]}, id="key-ops"),
        pytest.param(lambda key: {**key.public_jwk, "alg": "ES384"}, id="other-alg"),
        pytest.param(lambda key: {**key.public_jwk, "kid": ""}, id="empty-kid"),
        pytest.param(lambda key: {**key.public_jwk, "kty": ["EC"]}, id="list-kty"),
        pytest.param(lambda key: {**key.public_jwk, "crv": {"a": 1}}, id="object-crv"),
    ],
)
def test_keys_a_proof_may_not_bring(
    jwk: Callable[[DPoPKey], Any], signature_checks: list[str]
) -> None:
    key = client_key()
    hostile(
        raw(header_of(key, jwk=jwk(key)), claims_of(), key), Reason.DPOP_BAD_KEY, signature_checks
    )


def test_a_private_rsa_key(signature_checks: list[str]) -> None:
    key = client_key("RS256")
    private = dict(RSAKey.import_key(key.private).as_dict(private=True))  # type: ignore[arg-type]
    hostile(
        raw(header_of(key, jwk=private), claims_of(), key), Reason.DPOP_BAD_KEY, signature_checks
    )


def test_a_tiny_rsa_key(signature_checks: list[str]) -> None:
    tiny = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    numbers = tiny.public_key().public_numbers()
    public = {"kty": "RSA", "n": b64url(numbers.n.to_bytes(128, "big")), "e": "AQAB"}
    header = {"typ": "dpop+jwt", "alg": "RS256", "jwk": public}
    hostile(sign_compact(header, claims_of(), tiny, "RS256"), Reason.DPOP_BAD_KEY, signature_checks)


def test_an_rsa_key_for_an_ec_algorithm(signature_checks: list[str]) -> None:
    rsa_key, ec_key = client_key("RS256"), client_key()
    header = header_of(ec_key, jwk=rsa_key.public_jwk)
    hostile(raw(header, claims_of(), ec_key), Reason.DPOP_BAD_KEY, signature_checks)


_P = 2**255 - 19
WORTHLESS = {
    # The identity point, y = 1: with it, R = identity and S = 0 verify any message.
    "ed25519-identity": {"kty": "OKP", "crv": "Ed25519", "x": b64url((1).to_bytes(32, "little"))},
    "ed25519-order-2": {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url((_P - 1).to_bytes(32, "little")),
    },
    "ed25519-non-canonical": {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url((_P + 1).to_bytes(32, "little")),
    },
    "rsa-8192-bit-modulus": {"kty": "RSA", "n": b64url(b"\xc3" * 1023 + b"\x01"), "e": "AQAB"},
    "rsa-huge-exponent": {
        "kty": "RSA",
        "n": b64url(b"\xc3" * 255 + b"\x01"),
        "e": b64url(b"\xc1" * 255 + b"\x01"),
    },
}


@pytest.mark.parametrize("name", WORTHLESS)
def test_a_proof_key_follows_the_key_set_rules(name: str, signature_checks: list[str]) -> None:
    """Keys that are valid but worthless (SECURITY-CASES class 14) are judged by the one
    function the issuer's key set uses: a proof refuses exactly the keys a key set skips."""
    jwk = WORTHLESS[name]
    alg = "RS256" if jwk["kty"] == "RSA" else "EdDSA"
    size = len(base64.urlsafe_b64decode(jwk.get("n", "") + "==")) if alg == "RS256" else 64
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": jwk}
    signature = b64url(bytes(size))
    forged = f"{encode(header)}.{encode(claims_of())}.{signature}"
    key_set = import_key_set({"keys": [jwk]}, frozenset({alg}))
    assert key_set is not None
    skipped = bool(key_set.skipped)
    hostile(
        forged,
        Reason.DPOP_BAD_KEY if skipped else Reason.DPOP_BAD_SIGNATURE,
        signature_checks,
    )


# --- signature values (class 4) -------------------------------------------------------------


def test_a_tampered_payload(signature_checks: list[str]) -> None:
    head, _, signature = proof().split(".")
    other = encode(claims_of(htm="GET"))
    hostile(f"{head}.{other}.{signature}", Reason.DPOP_BAD_SIGNATURE, signature_checks)


def test_signed_by_another_key_than_the_one_it_brings(signature_checks: list[str]) -> None:
    mine, attacker = client_key(), client_key(name="attacker")
    forged = raw(header_of(mine), claims_of(), attacker)
    hostile(forged, Reason.DPOP_BAD_SIGNATURE, signature_checks)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(b"\x00" * 64, id="zeros"),
        pytest.param(b"\x00" * 32 + b"\x01" * 32, id="r-zero"),
        pytest.param(b"\xff" * 64, id="ones"),
        pytest.param(b"\x01" * 63, id="short"),
        pytest.param(b"\x01" * 65, id="long"),
        pytest.param(encode_dss_signature(1, 1), id="der"),
    ],
)
def test_degenerate_ecdsa_signatures(signature: bytes, signature_checks: list[str]) -> None:
    head, payload, _ = proof().split(".")
    hostile(f"{head}.{payload}.{b64url(signature)}", Reason.DPOP_BAD_SIGNATURE, signature_checks)


def test_a_der_signature_from_the_right_key(signature_checks: list[str]) -> None:
    key = client_key()
    head, payload, _ = proof(key).split(".")
    assert isinstance(key.private, ec.EllipticCurvePrivateKey)
    der = key.private.sign(f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    hostile(f"{head}.{payload}.{b64url(der)}", Reason.DPOP_BAD_SIGNATURE, signature_checks)


# --- header semantics (class 5) and JSON (class 6) -----------------------------------------------


@pytest.mark.parametrize("typ", [..., None, "JWT", "at+jwt", "dpop+jwt ", "dpop", ["dpop+jwt"], 1])
def test_wrong_typ(typ: Any, signature_checks: list[str]) -> None:
    key = client_key()
    hostile(
        raw(header_of(key, typ=typ), claims_of(), key), Reason.DPOP_WRONG_TYPE, signature_checks
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"]},
        {"crit": []},
        {"b64": False},
        {"zip": "DEF"},
        {"enc": "A128GCM"},
        {"cty": "JWT"},
    ],
    ids=["crit", "crit-empty", "b64", "zip", "enc", "cty"],
)
def test_header_parameters_we_cannot_honour(
    extra: dict[str, Any], signature_checks: list[str]
) -> None:
    key = client_key()
    hostile(
        raw(header_of(key, **extra), claims_of(), key),
        Reason.DPOP_UNSUPPORTED_HEADER,
        signature_checks,
    )


def _header_text(key: DPoPKey) -> str:
    return json.dumps(header_of(key))[1:-1]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            lambda key: b'{"typ":"dpop+jwt","typ":"dpop+jwt",' + _header_text(key).encode() + b"}",
            id="duplicate",
        ),
        pytest.param(
            lambda key: b'{"\\u0074yp":"x",' + _header_text(key).encode() + b"}",
            id="escaped-duplicate",
        ),
        pytest.param(lambda key: b"\xef\xbb\xbf" + json.dumps(header_of(key)).encode(), id="bom"),
        pytest.param(lambda key: json.dumps(header_of(key)).encode("utf-16"), id="utf-16"),
        pytest.param(lambda key: json.dumps(header_of(key)).encode() + b" {}", id="trailing"),
        pytest.param(lambda key: b"[" + json.dumps(header_of(key)).encode() + b"]", id="array"),
        pytest.param(lambda key: b'{"a":' * 40 + b"1" + b"}" * 40, id="deep"),
    ],
)
def test_hostile_json_in_the_header(
    text: Callable[[DPoPKey], bytes], signature_checks: list[str]
) -> None:
    key = client_key()
    hostile(raw(text(key), claims_of(), key), Reason.DPOP_MALFORMED, signature_checks)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b'{"jti":"a","jti":"b","htm":"GET"}', id="duplicate"),
        pytest.param(b'{"iat":NaN}', id="nan"),
        pytest.param(b'{"iat":1e999}', id="overflow"),
        pytest.param(b'{"jti":"\\ud800"}', id="lone-surrogate"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"null", id="null"),
        pytest.param(b"", id="empty"),
    ],
)
def test_hostile_json_in_the_payload(text: bytes, signature_checks: list[str]) -> None:
    key = client_key()
    hostile(raw(header_of(key), text, key), Reason.DPOP_MALFORMED, signature_checks)


# --- the claims (class 7) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"htm": "get"}, Reason.DPOP_METHOD_MISMATCH),  # RFC 9110 §9.1: case-sensitive
        ({"htm": "POST"}, Reason.DPOP_METHOD_MISMATCH),
        ({"htm": "GET "}, Reason.DPOP_METHOD_MISMATCH),
        ({"htm": ...}, Reason.DPOP_MALFORMED),
        ({"htm": ["GET"]}, Reason.DPOP_MALFORMED),
        ({"htu": ...}, Reason.DPOP_MALFORMED),
        ({"htu": 42}, Reason.DPOP_MALFORMED),
        ({"jti": ...}, Reason.DPOP_MALFORMED),
        ({"jti": ""}, Reason.DPOP_MALFORMED),
        ({"jti": 7}, Reason.DPOP_MALFORMED),
        ({"jti": "j" * 257}, Reason.DPOP_MALFORMED),
        ({"iat": ...}, Reason.DPOP_MALFORMED),
        ({"iat": str(int(NOW))}, Reason.DPOP_MALFORMED),
        ({"iat": True}, Reason.DPOP_MALFORMED),
        ({"iat": -1}, Reason.DPOP_MALFORMED),
        ({"iat": 10**400}, Reason.DPOP_MALFORMED),
        ({"iat": NOW - 61}, Reason.DPOP_IAT_OUT_OF_WINDOW),  # stale
        ({"iat": NOW + 61}, Reason.DPOP_IAT_OUT_OF_WINDOW),  # from the future
        ({"iat": 0}, Reason.DPOP_IAT_OUT_OF_WINDOW),
        ({"ath": ...}, Reason.DPOP_ATH_MISMATCH),
        ({"ath": b64url(hashlib.sha256(b"another token").digest())}, Reason.DPOP_ATH_MISMATCH),
        ({"ath": b64url(hashlib.sha256(TOKEN.encode()).digest()) + "="}, Reason.DPOP_ATH_MISMATCH),
        (
            {"ath": base64.b64encode(hashlib.sha256(TOKEN.encode()).digest()).decode()},
            Reason.DPOP_ATH_MISMATCH,
        ),
        ({"ath": hashlib.sha256(TOKEN.encode()).hexdigest()}, Reason.DPOP_ATH_MISMATCH),
        ({"ath": TOKEN}, Reason.DPOP_ATH_MISMATCH),
        ({"ath": ["x"]}, Reason.DPOP_ATH_MISMATCH),
    ],
)
def test_claims_that_do_not_hold(
    changes: dict[str, Any], reason: Reason, signature_checks: list[str]
) -> None:
    key = client_key()
    hostile(raw(header_of(key), claims_of(**changes), key), reason, signature_checks)


@pytest.mark.parametrize(
    "htu",
    [
        "https://API.test/Items",  # path case matters, host case does not
        "https://api.test/items/",  # trailing slash
        "https://api.test:80/items",  # http's default port on https
        "https://api.test:8443/items",
        "http://api.test/items",  # scheme
        "https://api.test/item%73%2F",  # an encoded slash is not a slash
        "https://api.test/items/../admin",  # dot segments resolve elsewhere
        "https://api.test/%2e%2e/items/x",
        "https://api.test./items",  # trailing dot
        "https://api.test.attacker.test/items",
        "https://attacker.test/items",
        "https://api.test@attacker.test/items",
        "https://attacker.test#@api.test/items",
        "https://api.test/items\n",
        "//api.test/items",
        "/items",
        "",
    ],
)
def test_htu_traps(htu: str, signature_checks: list[str]) -> None:
    key = client_key()
    hostile(
        raw(header_of(key), claims_of(htu=htu), key), Reason.DPOP_URL_MISMATCH, signature_checks
    )


@pytest.mark.parametrize(
    "htu",
    [
        "HTTPS://API.TEST/items",
        "https://api.test:443/items",
        "https://api.test/items?query=ignored#and-fragment",
        "https://api.test/%69tems",  # an unreserved character, encoded
        "https://api.test/x/../items",
        "https://api.test/./items",
    ],
)
def test_spellings_of_the_right_url_are_accepted(htu: str) -> None:
    key = client_key()
    check(raw(header_of(key), claims_of(htu=htu), key))


def test_an_attacker_host_behind_a_spoofed_forwarded_header(signature_checks: list[str]) -> None:
    """The proof names the attacker's host, and so does a forged X-Forwarded-Host; forwarded
    headers are not trusted, so the request's URL is the Host header's."""
    key = client_key()
    evil = raw(header_of(key), claims_of(htu="https://attacker.test/items"), key)
    spoofed = [("X-Forwarded-Host", "attacker.test"), ("X-Forwarded-Proto", "https")]
    placed = request_url(scheme="https", host="api.test", path=b"/items", headers=spoofed)
    assert placed == URL
    hostile(evil, Reason.DPOP_URL_MISMATCH, signature_checks, url=placed)
    settings = DPoPSettings(forwarded="x-forwarded")
    behind_proxy = settings.request_url(
        scheme="http",
        host="10.0.0.5",
        path=b"/items",
        headers=[*spoofed, ("X-Forwarded-Host", "api.test")],
    )
    assert behind_proxy == URL  # the proxy's own value, appended last, is the one trusted
    hostile(evil, Reason.DPOP_URL_MISMATCH, signature_checks, url=behind_proxy)


def test_a_request_that_cannot_be_placed(signature_checks: list[str]) -> None:
    hostile(proof(), Reason.DPOP_URL_MISMATCH, signature_checks, url=None)
    hostile(proof(), Reason.DPOP_URL_MISMATCH, signature_checks, url="not a url")


def test_a_proof_for_another_token_or_for_none(signature_checks: list[str]) -> None:
    hostile(proof(access_token="another"), Reason.DPOP_ATH_MISMATCH, signature_checks)
    hostile(proof(access_token=None), Reason.DPOP_ATH_MISMATCH, signature_checks)


# --- two proofs, replay, and the binding -----------------------------------------------------


def test_two_dpop_headers() -> None:
    for values in ([proof(), proof()], [f"{proof()}, {proof()}"], [proof(), ""]):
        with pytest.raises(InvalidDPoPProofError) as caught:
            single_proof(values)
        assert caught.value.reason is Reason.DPOP_MULTIPLE
        assert proof()[:20] not in str(caught.value)


def test_a_replayed_proof() -> None:
    store = MemoryReplayStore()
    made = proof()
    first = check(made)
    assert store.check(first.replay_key, first.expires_at, NOW)
    # The same proof, a second later, to this worker: refused by the store.
    again = check(made, now=NOW + 1)
    assert not store.check(again.replay_key, again.expires_at, NOW + 1)
    # The same jti in a fresh proof by the same key is the same replay.
    same_jti = check(
        proof(jti=json.loads(base64.urlsafe_b64decode(made.split(".")[1] + "=="))["jti"])
    )
    assert not store.check(same_jti.replay_key, same_jti.expires_at, NOW + 2)
    # Once outside the window, check_proof refuses it anyway.
    refused(made, Reason.DPOP_IAT_OUT_OF_WINDOW, now=first.expires_at + 0.001)


def test_the_thumbprint_of_another_key() -> None:
    accepted = check(proof(client_key(name="attacker")))
    with pytest.raises(InvalidTokenError) as caught:
        check_binding(accepted, client_key().jkt)
    assert caught.value.reason is Reason.DPOP_KEY_MISMATCH
    assert caught.value.error == "invalid_token"


def test_a_proof_on_a_plain_bearer_token() -> None:
    with pytest.raises(InvalidTokenError) as caught:
        check_binding(check(proof()), None)
    assert caught.value.reason is Reason.DPOP_NOT_BOUND


# --- the fuzzer --------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(data=st.data())
def test_mutated_proofs_are_refused_with_an_auth_error(data: st.DataObject) -> None:
    """Any change to a valid proof's text is refused, and only with an AuthError."""
    good = proof(client_key(data.draw(st.sampled_from(["ES256", "EdDSA"]))))
    index = data.draw(st.integers(0, len(good) - 1))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]))
    char = data.draw(st.characters(codec="utf-8") | st.sampled_from("A_-.=+/ "))
    if kind == "replace":
        mutated = good[:index] + char + good[index + 1 :]
    elif kind == "insert":
        mutated = good[:index] + char + good[index:]
    elif kind == "delete":
        mutated = good[:index] + good[index + 1 :]
    elif kind == "truncate":
        mutated = good[:index]
    else:
        parts = good.split(".")
        order = data.draw(st.permutations(range(3)))
        mutated = ".".join(parts[i] for i in order)
    if mutated == good:
        check(mutated)
    else:
        with pytest.raises(AuthError):
            check(mutated)


@FUZZ
@given(data=st.data())
def test_signed_proofs_with_mutated_members_are_judged_and_never_crash(
    data: st.DataObject,
) -> None:
    """Well signed, but with arbitrary values in the header and claims: either every rule
    holds, or an AuthError says which one does not."""
    key = client_key()
    header, claims = header_of(key), claims_of()
    for target in data.draw(st.lists(st.sampled_from(["header", "claims"]), max_size=3)):
        members = header if target == "header" else claims
        names = [*members, "crit", "nonce", "extra", "jku"]
        members[data.draw(st.sampled_from(names))] = data.draw(JSON)
    made = raw(header, claims, key)
    try:
        accepted = check(made)
    except AuthError as error:
        refusal: AuthError | None = error
    else:
        refusal = None
    if refusal is not None:
        assert refusal.status_code == 401
        return
    assert accepted.jkt == key.jkt
    assert claims["htm"] == "GET" and abs(claims["iat"] - NOW) <= 60 and claims["ath"]
    assert header["typ"].lower() in ("dpop+jwt", "application/dpop+jwt")
    assert header["alg"] == "ES256" and header["jwk"] == key.public_jwk
