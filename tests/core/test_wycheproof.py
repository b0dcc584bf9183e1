"""Project Wycheproof's JSON Web Signature and JSON Web Key vectors (tests/vectors/wycheproof/,
Apache-2.0; read PROVENANCE.md there for the known label errors).

At the signature layer every vector goes through what the validator does before the claims:
split, strict base64url, ``parse_header``, ``KeySet.select`` and the verifier. The hard rule: no
vector labelled invalid is ever accepted. Vectors labelled valid are accepted except the few
listed below, which our stricter rules refuse on purpose. Through a whole ``TokenValidator``,
every vector ends in an ``AuthError`` (no payload here is a JWT claims set), and a control token
signed with the same key is accepted afterwards, so the refusals are not an artefact of a
validator that accepts nothing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from oauth_shield._config import SUPPORTED_ALGORITHMS
from oauth_shield._errors import InvalidTokenError, Reason
from oauth_shield._jose import b64url_decode, parse_header
from oauth_shield._keys import KeySet, import_key_set
from oauth_shield.testing import sign_compact
from tests.conftest import AUDIENCE, ISSUER, NOW, ValidatorFactory, refused

VECTORS = Path(__file__).parent.parent / "vectors" / "wycheproof"
JWS_FILE = json.loads((VECTORS / "json_web_signature_test.json").read_text())
JWK_FILE = json.loads((VECTORS / "json_web_key_test.json").read_text())

_HMAC = "HS256 (HMAC): never enabled, oct keys are skipped (RFC 8725 §3.1, RFC 9068 §2.1)"
#: Labelled valid, refused by design. tcId 367 and 370 (labelled invalid, byte-identical to
#: tc357) need no entry: invalid vectors are refused whatever the reason.
VALID_BUT_REFUSED = {
    1: _HMAC,
    346: "RFC 7520 Figure 20 is signed PS384 but its key declares alg PS256: a declared alg "
    "restricts the key (KEY_MISMATCH)",
    347: "the key declares alg 'ES521', which is no JWS algorithm: the key is skipped",
    348: _HMAC,
    350: "as 346, with key_ops ['verify']",
    351: "as 347, with key_ops ['verify']",
    352: _HMAC,
    357: _HMAC,
    358: _HMAC,
    359: _HMAC,
    372: _HMAC + "; also mislabelled upstream: its MAC does not match (PROVENANCE.md)",
    373: _HMAC + "; also mislabelled upstream: its MAC does not match (PROVENANCE.md)",
    376: _HMAC,
    377: _HMAC,
}
KEYSET_VALID_BUT_REFUSED = {2: _HMAC, 13: _HMAC, 14: _HMAC, 15: _HMAC}
KEYSET_INVALID_BUT_ACCEPTED: dict[int, str] = {}  # none: every invalid key vector is refused


def verdict(keys: KeySet | None, jws: str) -> str:
    """``"accepted"``, or the first check that refused ``jws``."""
    parts = jws.split(".")
    if len(parts) != 3:
        return "not three parts"
    header_b64, payload_b64, signature_b64 = parts
    raw_header = b64url_decode(header_b64)
    signature = b64url_decode(signature_b64)
    if not raw_header or signature is None or b64url_decode(payload_b64) is None:
        return "not canonical base64url"
    try:
        header = parse_header(raw_header, SUPPORTED_ALGORITHMS)
    except InvalidTokenError as error:
        return error.reason.value
    if keys is None:
        return "no key set"
    verify = keys.select(header.kid, header.alg)
    if isinstance(verify, Reason):
        return verify.value
    return "accepted" if verify(f"{header_b64}.{payload_b64}".encode(), signature) else "bad sig"


def group_key(group: dict[str, Any]) -> Any:
    """The group's public key, or its private key (whose public part is what gets imported)."""
    return group.get("public") or group["private"]


JWS_CASES = [
    pytest.param(group, test, id=f"tc{test['tcId']}-{test['comment']}")
    for group in JWS_FILE["testGroups"]
    for test in group["tests"]
]
JWK_CASES = [
    pytest.param(
        group,
        which,
        test,
        id=f"tc{test['tcId']}-{which}-{test['comment']}",
        marks=[pytest.mark.xfail(strict=True, reason=KEYSET_INVALID_BUT_ACCEPTED[test["tcId"]])]
        if test["tcId"] in KEYSET_INVALID_BUT_ACCEPTED
        else [],
    )
    for group in JWK_FILE["testGroups"]
    for which in ("public", "private")
    if which in group
    for test in group["tests"]
]


@pytest.mark.parametrize(("group", "test"), JWS_CASES)
def test_signature_layer(group: dict[str, Any], test: dict[str, Any]) -> None:
    keys = import_key_set({"keys": [group_key(group)]}, SUPPORTED_ALGORITHMS)
    result = verdict(keys, test["jws"])
    if test["result"] == "invalid":
        assert result != "accepted"
    elif test["tcId"] in VALID_BUT_REFUSED:
        assert result != "accepted", "accepted now: drop it from VALID_BUT_REFUSED"
    else:
        assert result == "accepted"


@pytest.mark.parametrize(("group", "which", "test"), JWK_CASES)
def test_key_set_layer(group: dict[str, Any], which: str, test: dict[str, Any]) -> None:
    # Here "public"/"private" are whole key sets; a key that is invalid per the vector must not
    # yield a verifier that accepts its JWS.
    keys = import_key_set(group[which], SUPPORTED_ALGORITHMS)
    result = verdict(keys, test["jws"])
    if test["result"] == "invalid":
        assert result != "accepted"
    elif test["tcId"] in KEYSET_VALID_BUT_REFUSED:
        assert result != "accepted", "accepted now: drop it from KEYSET_VALID_BUT_REFUSED"
    else:
        assert result == "accepted"


@pytest.mark.parametrize(
    ("listed", "file"),
    [(VALID_BUT_REFUSED, JWS_FILE), (KEYSET_VALID_BUT_REFUSED, JWK_FILE)],
    ids=["signature", "key-set"],
)
def test_exceptions_are_labelled_valid(listed: dict[int, str], file: dict[str, Any]) -> None:
    labels = {t["tcId"]: t["result"] for g in file["testGroups"] for t in g["tests"]}
    assert {labels[tc_id] for tc_id in listed} == {"valid"}


def test_every_vector_is_seen() -> None:
    assert len(JWS_CASES) == JWS_FILE["numberOfTests"] == 401
    assert {p.values[1]["tcId"] for p in JWS_CASES} == set(range(1, 402))
    assert {p.values[2]["tcId"] for p in JWK_CASES} == set(range(1, 27))


# --- through a whole validator -----------------------------------------------------------

_KEY_TYPES: dict[str, Any] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}


def transport_for(jwks: dict[str, Any]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        if request.url.path == "/jwks":
            return httpx.Response(200, json=jwks)
        return httpx.Response(404)

    return httpx.MockTransport(handle)


GROUPS = JWS_FILE["testGroups"] + JWK_FILE["testGroups"]
#: A group by its file and its first tcId: "jws18" is the es256 group of the signature file.
GROUP_IDS = [f"jws{g['tests'][0]['tcId']}" for g in JWS_FILE["testGroups"]]
GROUP_IDS += [f"jwk{g['tests'][0]['tcId']}" for g in JWK_FILE["testGroups"]]


def _as_jwks(key: dict[str, Any]) -> dict[str, Any]:
    return key if "keys" in key else {"keys": [key]}


@functools.cache
def control_token(group_index: int) -> str | None:
    """A valid access token signed by the private half of the group's first usable key."""
    group = GROUPS[group_index]
    served = _as_jwks(group_key(group))["keys"]
    private = _as_jwks(group["private"])["keys"] if "private" in group else []
    for jwk, secret in zip(served, private, strict=False):
        keys = import_key_set({"keys": [jwk]}, SUPPORTED_ALGORITHMS)
        if keys is None or not keys.index or "d" not in secret:
            continue
        alg = min(alg for kid, alg in keys.index if kid == jwk.get("kid"))
        fields = {**secret, "key_ops": ["sign"]}  # tc349's private key_ops are garbled
        signer = _KEY_TYPES[jwk["kty"]].import_key(fields).private_key
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "client_id": "client-1",
            "iat": int(NOW),
            "exp": int(NOW) + 300,
            "jti": "control",
        }
        header = {"alg": alg, "typ": "at+jwt", "kid": jwk.get("kid")}
        return sign_compact({k: v for k, v in header.items() if v}, claims, signer, alg)
    return None


VALIDATOR_CASES = [
    pytest.param(
        index, test["jws"], id=f"{GROUP_IDS[index][:3]}-tc{test['tcId']}-{test['comment']}"
    )
    for index, group in enumerate(GROUPS)
    for test in group["tests"]
]


@pytest.mark.parametrize(("group_index", "jws"), VALIDATOR_CASES)
async def test_every_vector_is_refused_by_the_validator(
    group_index: int,
    jws: str,
    make_validator: ValidatorFactory,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    jwks = _as_jwks(group_key(GROUPS[group_index]))
    validator = make_validator(transport=transport_for(jwks), algorithms=SUPPORTED_ALGORITHMS)
    await refused(validator, jws, caplog=all_logs)
    control = control_token(group_index)
    if control is not None:  # the same validator still accepts a good token from that key
        assert (await validator.validate(control)).subject == "user-1"


def test_the_control_tokens_cover_every_group_that_can_sign() -> None:
    # The others have no usable key: HMAC, encryption keys, keys our rules skip (ES521, small,
    # e = 1, ROCA, modified points), or no private half.
    with_control = {GROUP_IDS[i] for i in range(len(GROUPS)) if control_token(i) is not None}
    assert with_control == {
        "jws18", "jws33", "jws259", "jws264", "jws268", "jws272", "jws320", "jws325", "jws345",
        "jws346", "jws349", "jws350", "jws378", "jwk5",
    }  # fmt: skip
