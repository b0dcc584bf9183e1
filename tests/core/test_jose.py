"""Strict compact JWS parsing and signature verification (oauth_shield._jose)."""

from __future__ import annotations

import base64
import json
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield._errors import InvalidTokenError, Reason
from oauth_shield._jose import (
    MAX_KID_LENGTH,
    Header,
    b64url_decode,
    is_compact_jwe,
    looks_like_jose,
    parse_compact,
)
from oauth_shield.testing import b64url

ALGS = frozenset({"RS256", "PS256", "ES256", "EdDSA"})
B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def seg(value: Any) -> str:
    return b64url(value if isinstance(value, bytes) else json.dumps(value).encode())


HEADER = seg({"alg": "RS256", "kid": "k1"})
PAYLOAD = seg({"sub": "user-1"})
SIG = b64url(b"\x01" * 32)


# --- b64url_decode --------------------------------------------------------------------------


@given(st.binary())
def test_b64url_round_trip(data: bytes) -> None:
    assert b64url_decode(base64.urlsafe_b64encode(data).rstrip(b"=").decode()) == data


@pytest.mark.parametrize("length", [2, 3, 6, 7])
def test_only_canonical_last_characters_decode(length: int) -> None:
    # The oracle: the last characters an encoder can actually produce for this length.
    nbytes = length * 6 // 8
    produced = {b64url(bytes([0] * (nbytes - 1) + [last]))[-1] for last in range(256)}
    accepted = {c for c in B64URL if b64url_decode("A" * (length - 1) + c) is not None}
    assert accepted == produced
    assert len(accepted) == (4 if length % 4 == 2 else 16)


@pytest.mark.parametrize(
    "segment",
    ["AA==", "AA=", "AAA=", "+A", "A/", "A+/w", "A A", "AA\n", " AA", "AA ", "\tAA", "A.",
     "caf\u00e9", "\u0410\u0410", "A", "AAAAA", "AAAAAAAAA", "=", "===="],
    ids=repr,
)  # fmt: skip
def test_b64url_rejects(segment: str) -> None:
    assert b64url_decode(segment) is None


def test_b64url_empty_is_empty() -> None:
    assert b64url_decode("") == b""


@given(st.text())
def test_b64url_never_raises(text: str) -> None:
    result = b64url_decode(text)
    assert result is None or isinstance(result, bytes)


def test_b64url_never_raises_on_lone_surrogates() -> None:
    assert b64url_decode("\ud800AA") is None


# --- parse_compact: shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        f"{HEADER}.{PAYLOAD}",
        f"{HEADER}.{PAYLOAD}.{SIG}.{SIG}",
        f"{HEADER}.{PAYLOAD}.{SIG}.{SIG}.{SIG}",
        f".{PAYLOAD}.{SIG}",
        f"{HEADER}..{SIG}",
        "..",
        f"{HEADER}.{PAYLOAD}.{SIG}=",
        f"{HEADER}.{PAYLOAD}.{SIG}!",
        f"{HEADER}+.{PAYLOAD}.{SIG}",
        f" {HEADER}.{PAYLOAD}.{SIG}",
        f"{HEADER}.{PAYLOAD}.{SIG}\n",
        json.dumps({"protected": HEADER, "payload": PAYLOAD, "signature": SIG}),
    ],
    ids=["empty", "one", "two", "four", "five-jwe", "no-header", "no-payload", "dots",
         "padding", "bang", "plus", "space", "newline", "json-serialization"],
)  # fmt: skip
def test_not_shaped_like_a_jws(token: str) -> None:
    assert parse_compact(token, ALGS) is None


# The next character after a canonical last one sets an unused low bit (RFC 4648 §3.5).
NON_CANONICAL_HEADER = HEADER[:-1] + B64URL[B64URL.index(HEADER[-1]) + 1]
MALFORMED = {
    "header-not-json": f"{seg(b'hello')}.{PAYLOAD}.{SIG}",
    "header-array": f"{seg(b'[]')}.{PAYLOAD}.{SIG}",
    "header-trailing-data": f"{seg(b'{}x')}.{PAYLOAD}.{SIG}",
    "header-bad-utf8": f"{seg(bytes([0xFF]))}.{PAYLOAD}.{SIG}",
    "header-duplicate-alg": seg(b'{"alg":"RS256","alg":"none"}') + f".{PAYLOAD}.{SIG}",
    "header-non-canonical": f"{NON_CANONICAL_HEADER}.{PAYLOAD}.{SIG}",
    "payload-not-json": f"{HEADER}.{seg(b'foo')}.{SIG}",
    "payload-array": f"{HEADER}.{seg(b'[1]')}.{SIG}",
    "payload-duplicate": f"{HEADER}." + seg(b'{"a":1,"a":2}') + f".{SIG}",
    "payload-nul-byte": f"{HEADER}.{seg(bytes([0]))}.{SIG}",
    "signature-length-1-mod-4": f"{HEADER}.{PAYLOAD}.A",
    "signature-non-canonical": f"{HEADER}.{PAYLOAD}.AB",
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_jws_shaped_but_malformed(token: str) -> None:
    with pytest.raises(InvalidTokenError) as raised:
        parse_compact(token, ALGS)
    assert raised.value.reason is Reason.MALFORMED_TOKEN


def test_parse_result() -> None:
    jws = parse_compact(f"{HEADER}.{PAYLOAD}.{SIG}", ALGS)
    assert jws is not None
    assert jws.header == Header({"alg": "RS256", "kid": "k1"}, "RS256", "k1")
    assert (jws.header_b64, jws.claims) == (HEADER, {"sub": "user-1"})
    assert jws.signing_input == f"{HEADER}.{PAYLOAD}".encode()
    assert jws.signature == b"\x01" * 32


def test_empty_signature_parses_and_is_left_to_the_verifier() -> None:
    jws = parse_compact(f"{HEADER}.{PAYLOAD}.", ALGS)
    assert jws is not None
    assert jws.signature == b""


# --- parse_compact: header rules ---------------------------------------------------------

HEADER_CASES = {
    "alg-none": ({"alg": "none"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-None": ({"alg": "None"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-NONE": ({"alg": "NONE"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-nOnE": ({"alg": "nOnE"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-missing": ({"kid": "k1"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-int": ({"alg": 256}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-list": ({"alg": ["RS256"]}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-dict": ({"alg": {"RS256": True}}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-null": ({"alg": None}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-HS256": ({"alg": "HS256"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-not-allowlisted": ({"alg": "ES384"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-lowercase": ({"alg": "rs256"}, Reason.UNSUPPORTED_ALGORITHM),
    "alg-space": ({"alg": "RS256 "}, Reason.UNSUPPORTED_ALGORITHM),
    "crit": ({"alg": "RS256", "crit": ["exp"], "exp": 1}, Reason.UNSUPPORTED_HEADER),
    "crit-empty": ({"alg": "RS256", "crit": []}, Reason.UNSUPPORTED_HEADER),
    "crit-null": ({"alg": "RS256", "crit": None}, Reason.UNSUPPORTED_HEADER),
    "crit-string": ({"alg": "RS256", "crit": "b64"}, Reason.UNSUPPORTED_HEADER),
    "b64-false": ({"alg": "RS256", "b64": False}, Reason.UNSUPPORTED_HEADER),
    "b64-true": ({"alg": "RS256", "b64": True}, Reason.UNSUPPORTED_HEADER),
    "zip": ({"alg": "RS256", "zip": "DEF"}, Reason.UNSUPPORTED_HEADER),
    "enc": ({"alg": "RS256", "enc": "A128GCM"}, Reason.UNSUPPORTED_HEADER),
    "cty-jwt": ({"alg": "RS256", "cty": "JWT"}, Reason.UNSUPPORTED_HEADER),
    "kid-int": ({"alg": "RS256", "kid": 1}, Reason.MALFORMED_TOKEN),
    "kid-list": ({"alg": "RS256", "kid": ["k1"]}, Reason.MALFORMED_TOKEN),
    "kid-null": ({"alg": "RS256", "kid": None}, Reason.MALFORMED_TOKEN),
    "kid-empty": ({"alg": "RS256", "kid": ""}, Reason.MALFORMED_TOKEN),
    "kid-too-long": ({"alg": "RS256", "kid": "k" * (MAX_KID_LENGTH + 1)}, Reason.MALFORMED_TOKEN),
}


@pytest.mark.parametrize(("header", "reason"), HEADER_CASES.values(), ids=HEADER_CASES.keys())
def test_header_refused(header: dict[str, Any], reason: Reason) -> None:
    with pytest.raises(InvalidTokenError) as raised:
        parse_compact(f"{seg(header)}.{PAYLOAD}.{SIG}", ALGS)
    assert raised.value.reason is reason


@pytest.mark.parametrize(
    ("extra", "kid"),
    [
        ({"jku": "https://attacker.example/jwks"}, "k1"),
        ({"x5u": "https://attacker.example/cert.pem"}, "k1"),
        ({"jwk": {"kty": "oct", "k": "AAAA"}}, "k1"),
        ({"x5c": ["MIIB"]}, "k1"),
        ({"x5t": "abc"}, "k1"),
        ({"x5t#S256": "abc"}, "k1"),
        ({"typ": "at+jwt"}, "k1"),
        ({"kid": "k" * MAX_KID_LENGTH}, "k" * MAX_KID_LENGTH),
        ({"kid": "../../etc/passwd\r\n' OR 1=1;--"}, "../../etc/passwd\r\n' OR 1=1;--"),
    ],
    ids=["jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "typ", "kid-max-length", "kid-hostile"],
)
def test_header_accepted_and_ignored(extra: dict[str, Any], kid: str) -> None:
    header = {"alg": "RS256", "kid": "k1", **extra}
    jws = parse_compact(f"{seg(header)}.{PAYLOAD}.{SIG}", ALGS)
    assert jws is not None
    assert (jws.header.alg, jws.header.kid, jws.header.params) == ("RS256", kid, header)


def test_header_without_kid() -> None:
    jws = parse_compact(f"{seg({'alg': 'ES256'})}.{PAYLOAD}.{SIG}", ALGS)
    assert jws is not None
    assert jws.header.kid is None


def test_known_headers_are_not_parsed_again() -> None:
    unsigned = seg({"alg": "none"})  # would raise UNSUPPORTED_ALGORITHM if it were parsed
    known = {unsigned: Header({"alg": "ES256", "kid": "cached"}, "ES256", "cached")}
    jws = parse_compact(f"{unsigned}.{PAYLOAD}.{SIG}", ALGS, known)
    assert jws is not None
    assert jws.header is known[unsigned]
    with pytest.raises(InvalidTokenError):
        parse_compact(f"{unsigned}.{PAYLOAD}.{SIG}", ALGS)


# --- what is, or tries to be, a JOSE object (routing: never introspected when malformed) ------

JWS = f"{HEADER}.{PAYLOAD}.{SIG}"


@pytest.mark.parametrize(
    "token",
    [
        JWS,
        JWS + "=",
        JWS + "==",
        JWS + "~",
        JWS + "~WyJzYWx0IiwiYSIsMV0~",  # an SD-JWT with a disclosure
        JWS + ".",
        JWS + ".AAAA",
        JWS + "." + JWS,
        JWS.replace("-", "+").replace("_", "/"),
        HEADER[:5] + "~" + HEADER[5:] + f".{PAYLOAD}.{SIG}",
        HEADER + "+/." + PAYLOAD + "." + SIG,
        HEADER + ".." + SIG,
        seg(b'{\n  "alg": "RS256"\n}') + ".x.y",  # pretty-printed: "ewog..."
        seg(b' {"alg":"RS256"}') + ".x.y",  # leading space
        seg(b'\xef\xbb\xbf{"alg":"RS256"}') + ".x.y",  # UTF-8 byte order mark
        seg('{"alg":"RS256"}'.encode("utf-16-be")) + ".x.y",  # UTF-16 text
        base64.b64encode(b'{"alg":"RS256"}').decode() + ".x.y",  # padded, standard alphabet
        ".".join([HEADER, "a", "b", "c", "d"]),  # five parts: a JWE's shape
    ],
)
def test_looks_like_jose(token: str) -> None:
    assert looks_like_jose(token)


@pytest.mark.parametrize(
    "token",
    [
        "ya29.a0AfH6SMBx-" + "A" * 90,  # Google: one dot
        "H6j7JRQwL-4qghEzOkm2KMSNc597TVnD1iTv0lwHPe5",  # oidc-provider: no dot
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",  # GitHub
        "2YotnFZFEjr1zCsicMWpAA",  # RFC 6749's example
        "abc~def+ghi/jkl==",  # b64token characters
        f"{HEADER}.{PAYLOAD}",  # one dot: can never be a compact serialization
        "eyJhbGciOiJSUzI1NiJ9",  # no dot at all
        "v4.public.eyJkYXRhIjoidGhpcyBpcyBhIHNpZ25lZCBtZXNzYWdlIn0",  # PASETO
        "ory_at_abc.def",  # Ory Hydra: one dot
        "e.yJ.x",  # too short to hold '{"'
        seg(b"[1]") + ".x.y",  # JSON, but not an object
        seg(b"{}") + ".x.y",  # an object without a member: no alg, no JOSE header
        "",
        "..",
    ],
)
def test_does_not_look_like_jose(token: str) -> None:
    assert not looks_like_jose(token)


@given(st.from_regex(r"[A-Za-z0-9_~+/-]{1,64}(\.[A-Za-z0-9_~+/-]{0,64})?=*", fullmatch=True))
def test_tokens_with_fewer_than_two_dots_are_never_jose(token: str) -> None:
    assert not looks_like_jose(token)


@given(
    suffix=st.text(alphabet=".~=+/A_-", max_size=8),
    extra=st.lists(st.from_regex(r"[A-Za-z0-9_-]{0,8}", fullmatch=True), max_size=2),
)
def test_a_jws_stays_jose_whatever_follows(suffix: str, extra: list[str]) -> None:
    assert looks_like_jose(".".join([JWS, *extra]) + suffix)


@given(st.text(max_size=200))
def test_looks_like_jose_never_raises(text: str) -> None:
    assert looks_like_jose(text) in (True, False)


JWE_HEADER = seg({"alg": "RSA-OAEP-256", "enc": "A256GCM"})


def test_is_compact_jwe() -> None:
    iv, ciphertext, tag = b64url(b"i" * 12), b64url(b"c" * 40), b64url(b"t" * 16)
    assert is_compact_jwe(f"{JWE_HEADER}.{b64url(b'k' * 256)}.{iv}.{ciphertext}.{tag}")
    assert is_compact_jwe(f"{JWE_HEADER}..{iv}.{ciphertext}.{tag}")  # "dir": no encrypted key
    for broken in [
        f"{JWE_HEADER}..{iv}.{ciphertext}.{tag}=",
        f"{JWE_HEADER}..{iv}.{ciphertext}.{tag}.",
        f"{JWE_HEADER}..{iv}.{ciphertext}",
        f"{JWE_HEADER}...{ciphertext}.{tag}",
        f"{JWE_HEADER}..{iv}.{ciphertext}~.{tag}",
        f"{seg({'alg': 'RSA-OAEP-256'})}..{iv}.{ciphertext}.{tag}",  # no enc: not a JWE
        f"{seg({'alg': 'dir', 'enc': 1})}..{iv}.{ciphertext}.{tag}",
        seg(b'{"alg":"dir","alg":"x","enc":"A"}') + f"..{iv}.{ciphertext}.{tag}",  # duplicate
    ]:
        assert not is_compact_jwe(broken), broken
