"""SECURITY-CASES classes 1 (structure, encoding) and 2 (algorithms).

RFC 7515 §3, §5.2; RFC 7519 §7.2; RFC 8725 §2.1, §3.1; RFC 9068 §4.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from oauth_shield import Reason
from oauth_shield.testing import LocalIssuer, SigningKey, b64url

from .conftest import Hostile, header_for, raw_token, unsigned

# --- class 1: structure and encoding --------------------------------------------------


def _parts(token: str) -> list[str]:
    return token.split(".")


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        pytest.param(lambda t: _parts(t)[0], Reason.UNSUPPORTED_TOKEN, id="one-part"),
        pytest.param(lambda t: ".".join(_parts(t)[:2]), Reason.UNSUPPORTED_TOKEN, id="two-parts"),
        pytest.param(lambda t: t + ".AAAA", Reason.MALFORMED_TOKEN, id="four-parts"),
        pytest.param(
            lambda t: t + ".AAAA.AAAA", Reason.UNSUPPORTED_TOKEN, id="five-parts-jwe-shape"
        ),
        pytest.param(
            lambda t: "." + ".".join(_parts(t)[1:]), Reason.UNSUPPORTED_TOKEN, id="empty-header"
        ),
        pytest.param(
            lambda t: _parts(t)[0] + ".." + _parts(t)[2],
            Reason.MALFORMED_TOKEN,
            id="empty-payload",
        ),
        pytest.param(
            lambda t: t.rsplit(".", 1)[0] + ".", Reason.BAD_SIGNATURE, id="empty-signature"
        ),
        pytest.param(lambda t: t + "==", Reason.MALFORMED_TOKEN, id="padding-on-signature"),
        pytest.param(
            lambda t: t.replace(".", "=.", 1), Reason.MALFORMED_TOKEN, id="padding-on-header"
        ),
        pytest.param(lambda t: " " + t, Reason.MALFORMED_TOKEN, id="leading-space"),
        pytest.param(lambda t: t + "\n", Reason.MALFORMED_TOKEN, id="trailing-newline"),
        pytest.param(lambda t: t.replace(".", ". ", 1), Reason.MALFORMED_TOKEN, id="inner-space"),
        pytest.param(lambda t: t[:20] + "+" + t[21:], Reason.MALFORMED_TOKEN, id="plus-in-header"),
        pytest.param(lambda t: t[:20] + "/" + t[21:], Reason.MALFORMED_TOKEN, id="slash-in-header"),
        pytest.param(lambda t: t[:20] + "*" + t[21:], Reason.MALFORMED_TOKEN, id="star"),
        pytest.param(lambda t: t[:20] + "é" + t[21:], Reason.MALFORMED_TOKEN, id="non-ascii"),
        pytest.param(lambda t: t[:20] + "\x00" + t[21:], Reason.MALFORMED_TOKEN, id="nul"),
    ],
)
async def test_broken_structure_is_refused(
    hostile: Hostile, issuer: LocalIssuer, shape: object, reason: Reason
) -> None:
    await hostile(shape(issuer.token()), reason)  # type: ignore[operator]


async def test_json_serialization_is_not_a_token(hostile: Hostile, issuer: LocalIssuer) -> None:
    header, payload, signature = _parts(issuer.token())
    general = json.dumps(
        {"payload": payload, "signatures": [{"protected": header, "signature": signature}]}
    )
    flattened = json.dumps({"payload": payload, "protected": header, "signature": signature})
    await hostile(general, Reason.MALFORMED_TOKEN)
    await hostile(flattened, Reason.MALFORMED_TOKEN)


def _non_canonical(segment: str) -> str:
    """Change the unused low bits of the last character: decodes to the same bytes leniently."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[last | 1]


@pytest.mark.parametrize("part", [0, 1, 2])
async def test_non_canonical_base64url_is_refused(
    hostile: Hostile, issuer: LocalIssuer, signing_keys: dict[str, SigningKey], part: int
) -> None:
    # Grow header and payload until the part's length leaves 2 or 3 characters in the last
    # quantum: only then do unused bits exist. (RSA signatures: 256 bytes, 342 characters.)
    key = signing_keys["RS256"]
    for filler in range(4):
        parts = _parts(issuer.token(key=key, header={"x": "x" * filler}, pad="x" * filler))
        if len(parts[part]) % 4 in (2, 3):
            break
    original = parts[part]
    parts[part] = _non_canonical(original)
    assert parts[part] != original  # canonical encodings leave the unused bits at zero
    await hostile(".".join(parts), Reason.MALFORMED_TOKEN)


@pytest.mark.parametrize(
    "payload",
    [b"[]", b'"claims"', b"42", b"null", b"true", b"", b"not json", b'{"sub":"x"'],
    ids=["array", "string", "number", "null", "true", "empty", "text", "truncated"],
)
async def test_payload_that_is_not_a_json_object(
    hostile: Hostile, signing_keys: dict[str, SigningKey], payload: bytes
) -> None:
    key = signing_keys["RS256"]
    token = raw_token(header_for(key), payload, key)
    await hostile(token, Reason.MALFORMED_TOKEN)  # the empty one too: it is still JOSE-like


@pytest.mark.parametrize("header", [b"[]", b'"RS256"', b"null", b"{", b"{}x"])
async def test_header_that_is_not_a_json_object(
    hostile: Hostile, issuer: LocalIssuer, signing_keys: dict[str, SigningKey], header: bytes
) -> None:
    key = signing_keys["RS256"]
    await hostile(raw_token(header, issuer.claims(), key), Reason.MALFORMED_TOKEN)


async def test_tampered_header_and_payload(hostile: Hostile, issuer: LocalIssuer) -> None:
    header, payload, signature = _parts(issuer.token(scope="read"))
    claims = json.loads(_decode(payload))
    forged_payload = b64url(json.dumps({**claims, "scope": "read admin"}).encode())
    await hostile(f"{header}.{forged_payload}.{signature}", Reason.BAD_SIGNATURE)
    forged_header = b64url(json.dumps({**json.loads(_decode(header)), "x": 1}).encode())
    await hostile(f"{forged_header}.{payload}.{signature}", Reason.BAD_SIGNATURE)
    # The signature of one token grafted onto the content of another.
    other = _parts(issuer.token(sub="admin"))
    await hostile(f"{other[0]}.{other[1]}.{signature}", Reason.BAD_SIGNATURE)


def _decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- class 2: algorithms ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "none ", " none"])
@pytest.mark.parametrize("signature", [b"", b"x" * 32], ids=["empty-sig", "junk-sig"])
async def test_alg_none_in_every_spelling(
    hostile: Hostile, issuer: LocalIssuer, alg: str, signature: bytes
) -> None:
    token = unsigned({"alg": alg, "typ": "at+jwt"}, issuer.claims(), signature)
    await hostile(token, Reason.UNSUPPORTED_ALGORITHM)


@pytest.mark.parametrize(
    "alg",
    [
        None,
        256,
        ["RS256"],
        {"name": "RS256"},
        True,
        "",
        "rs256",
        "RS256 ",
        "RS1",
        "ES256K",
        "HS256",
        "A128KW",
        "dir",
    ],
)
async def test_alg_missing_non_string_or_outside_the_allowlist(
    hostile: Hostile, issuer: LocalIssuer, signing_keys: dict[str, SigningKey], alg: object
) -> None:
    key = signing_keys["RS256"]
    header = (
        {"typ": "at+jwt", "kid": key.kid}
        if alg is None
        else {"alg": alg, "typ": "at+jwt", "kid": key.kid}
    )
    token = raw_token(header, issuer.claims(), key)  # validly RSA-signed, whatever alg says
    await hostile(token, Reason.UNSUPPORTED_ALGORITHM)


def _public_encodings(key: SigningKey) -> dict[str, bytes]:
    public = key.private.public_key()
    encodings = {
        "pem": public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(key.jwk).encode(),
        "jwk-compact": json.dumps(key.jwk, separators=(",", ":")).encode(),
    }
    if key.alg == "RS256":
        encodings["pkcs1-pem"] = public.public_bytes(Encoding.PEM, PublicFormat.PKCS1)
        encodings["modulus"] = public.public_numbers().n.to_bytes(256, "big")
    else:
        encodings["raw-point"] = public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return encodings


@pytest.mark.parametrize("victim", ["RS256", "ES256"])
@pytest.mark.parametrize("hs", ["HS256", "HS384", "HS512"])
async def test_hmac_keyed_with_the_public_key(
    hostile: Hostile, issuer: LocalIssuer, signing_keys: dict[str, SigningKey], victim: str, hs: str
) -> None:
    """The classic key-confusion attack, with the public key in every encoding."""
    key = signing_keys[victim]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hs]
    for secret in _public_encodings(key).values():
        header = b64url(json.dumps({"alg": hs, "typ": "at+jwt", "kid": key.kid}).encode())
        payload = b64url(json.dumps(issuer.claims(scope="read admin")).encode())
        mac = hmac.new(secret, f"{header}.{payload}".encode(), digest).digest()
        await hostile(f"{header}.{payload}.{b64url(mac)}", Reason.UNSUPPORTED_ALGORITHM)


@pytest.mark.parametrize("secret", [b"", b"a", b"secret", b"\x00" * 32])
async def test_empty_or_weak_hmac_secrets(
    hostile: Hostile, issuer: LocalIssuer, secret: bytes
) -> None:
    header = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
    payload = b64url(json.dumps(issuer.claims()).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    await hostile(f"{header}.{payload}.{b64url(mac)}", Reason.UNSUPPORTED_ALGORITHM)


@pytest.mark.parametrize(
    ("token_alg", "key_alg"),
    [
        ("ES256", "RS256"),
        ("PS256", "ES256"),
        ("RS256", "ES256"),
        ("EdDSA", "RS256"),
        ("ES256", "EdDSA"),
    ],
)
async def test_algorithm_that_does_not_fit_the_selected_key(
    hostile: Hostile,
    issuer: LocalIssuer,
    signing_keys: dict[str, SigningKey],
    token_alg: str,
    key_alg: str,
) -> None:
    # The kid names a real key, but the token claims an algorithm that key cannot do.
    signer = signing_keys.get(token_alg) or SigningKey(token_alg)
    header = {"alg": token_alg, "typ": "at+jwt", "kid": signing_keys[key_alg].kid}
    await hostile(raw_token(header, issuer.claims(), signer), Reason.KEY_MISMATCH)


async def test_curve_that_does_not_fit_the_algorithm(
    hostile: Hostile,
    issuer: LocalIssuer,
    make_validator: object,
    signing_keys: dict[str, SigningKey],
) -> None:
    # ES384 is allowlisted here, but the kid names the P-256 key.
    p384 = SigningKey("ES384")
    header = {"alg": "ES384", "typ": "at+jwt", "kid": signing_keys["ES256"].kid}
    validator = make_validator(algorithms=("RS256", "ES256", "ES384"))  # type: ignore[operator]
    from tests.conftest import refused

    await refused(validator, raw_token(header, issuer.claims(), p384), Reason.KEY_MISMATCH)


async def test_symmetric_key_published_in_the_key_set(
    hostile: Hostile, issuer: LocalIssuer
) -> None:
    """An oct key in the JWKS is skipped: it can verify nothing, whatever the token claims."""
    secret = b"published-by-mistake-32-bytes!!!"
    issuer.published.append({"kty": "oct", "kid": "oct-1", "k": b64url(secret), "alg": "HS256"})
    for alg in ("HS256", "RS256"):
        header = b64url(json.dumps({"alg": alg, "typ": "at+jwt", "kid": "oct-1"}).encode())
        payload = b64url(json.dumps(issuer.claims()).encode())
        mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        expected = Reason.UNSUPPORTED_ALGORITHM if alg == "HS256" else Reason.UNKNOWN_KID
        await hostile(f"{header}.{payload}.{b64url(mac)}", expected)
