"""Strict compact JWS parsing and signature verification (pure, no I/O).

The parser decides on its own, before any JOSE library sees the token, what is a
well-formed access token: exactly three canonical base64url parts (RFC 7515 §3.1, §2),
a header and payload that are strict JSON objects, an allowlisted ``alg`` and no header
parameter whose meaning we would have to honour (``crit``, ``b64``, ``zip``, ``enc``,
``cty``). Key-selecting headers (``jku``, ``x5u``, ``jwk``, ``x5c``) are ignored: keys only
ever come from the issuer's key set (RFC 8725 §3.10).

:func:`looks_like_jose` says which tokens are, or try to be, JOSE objects, however malformed:
those are judged here and never sent to introspection, where a lenient library could read a
suffixed JWS as the valid token it was made from.

Verifiers are built once per key and algorithm from joserfc's algorithm definitions
(padding, hash, curve), so a token costs one native signature check and nothing more.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jws import JWSRegistry

from ._errors import InvalidTokenError, Reason
from ._json import parse_object

Verifier = Callable[[bytes, bytes], bool]
"""``verify(signing_input, signature) -> bool``, bound to one key and one algorithm."""

#: Longest ``kid`` accepted; real ones are short ids or thumbprints.
MAX_KID_LENGTH = 256

# The shape of a compact JWS; the signature may be empty (an unsecured JWS, refused by alg).
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# base64url to standard base64, with '+', '/' and '=' mapped to a character that the strict
# decoder refuses: only the 64 base64url characters survive decoding.
_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")
# With 2 or 3 characters in the last quantum, the unused low bits of the last character
# must be zero, or several encodings would decode to the same bytes (RFC 4648 §3.5).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_PADDING = (b"", b"", b"==", b"=")
# Lenient base64 as the most forgiving decoders read it: both alphabets (or the URL-safe one
# only, the other's characters skipped), padding or none, foreign characters skipped.
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_NOT_BASE64 = bytes(set(range(256)) - set(_BASE64 + b"-_"))
_NOT_URLSAFE = _NOT_BASE64 + b"+/"
# What may come before a JSON text's "{" in a lenient reader: JSON whitespace (RFC 8259 §2),
# byte order marks and the NULs of UTF-16/32 text.
_BEFORE_JSON = b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"
_ABSENT: Any = object()
_REFUSED_HEADERS = frozenset({"crit", "b64", "zip", "enc", "cty"})


class Header(NamedTuple):
    """A checked JOSE header: its parameters, its ``alg`` and its ``kid``."""

    params: dict[str, Any]
    alg: str
    kid: str | None


_NO_HEADERS: Mapping[str, Header] = MappingProxyType({})
_new_jws = tuple.__new__


class CompactJWS(NamedTuple):
    """A parsed, not yet verified, compact JWS."""

    header: Header
    header_b64: str
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_decode(segment: str) -> bytes | None:
    """Decode canonical unpadded base64url (RFC 7515 §2), or return ``None``."""
    tail = len(segment) % 4
    if tail and (tail == 1 or segment[-1] not in _CANONICAL_LAST[tail]):
        return None
    try:
        # Non-ASCII text encodes to bytes outside the alphabet, which strict mode refuses;
        # text that cannot be encoded at all (lone surrogates) raises UnicodeEncodeError.
        return binascii.a2b_base64(
            segment.encode().translate(_FROM_URLSAFE) + _PADDING[tail], strict_mode=True
        )
    except ValueError:  # binascii.Error and UnicodeEncodeError
        return None


def looks_like_jose(token: str) -> bool:
    """Whether ``token`` is, or tries to be, a compact JWS or JWE (RFC 7515 §7.1, RFC 7516 §7.1).

    True when it has at least two dots (every compact serialization has) and its first part,
    decoded as leniently as any JOSE library might (either alphabet, padding or not, foreign
    characters such as ``~`` skipped), starts a JSON object with a member name: ``{"``, with
    optional whitespace (a header always has ``alg``, RFC 7515 §4.1.1). So a JWS
    with ``=``, ``~`` or a fourth part appended is still one, while opaque tokens are not:
    ``ya29.…`` and ``key.signature`` (one dot), 43 random characters (no dot), ``gho_…``.
    """
    first, dot, rest = token.partition(".")
    if not dot or "." not in rest:
        return False
    raw = first.encode("ascii", "ignore")
    return _starts_json_object(raw.translate(_TO_STANDARD, _NOT_BASE64)) or _starts_json_object(
        raw.translate(None, _NOT_URLSAFE).translate(_TO_STANDARD)
    )


def _starts_json_object(text: bytes) -> bool:
    """Whether base64 ``text`` (padding removed) decodes to something starting with ``{"``."""
    whole = len(text) - len(text) % 4
    tail = text[whole:]
    padded = text[:whole] + (tail + _PADDING[len(tail)] if len(tail) > 1 else b"")
    decoded = binascii.a2b_base64(padded).lstrip(_BEFORE_JSON)
    return decoded[:1] == b"{" and decoded[1:].lstrip(_BEFORE_JSON)[:1] == b'"'


def is_compact_jwe(token: str) -> bool:
    """Whether ``token`` is a well-formed compact JWE (RFC 7516 §7.1): five canonical base64url
    parts (the encrypted key may be empty), a header that is a strict JSON object with string
    ``alg`` and ``enc``. Only its issuer can read it, so only its issuer may judge it."""
    parts = token.split(".")
    if len(parts) != 5 or not all(parts[index] for index in (0, 2, 3, 4)):
        return False
    if not all(b64url_decode(part) is not None for part in parts[1:]):
        return False
    raw = b64url_decode(parts[0])
    header = None if raw is None else parse_object(raw)
    return header is not None and all(type(header.get(name)) is str for name in ("alg", "enc"))


def parse_header(raw: bytes, algorithms: frozenset[str]) -> Header:
    """Check a decoded JOSE header; raise :class:`InvalidTokenError` if it is unacceptable."""
    params = parse_object(raw)
    if params is None:
        raise InvalidTokenError(Reason.MALFORMED_TOKEN)
    alg = params.get("alg")
    # type() first: an unhashable alg (a list) must not reach the set lookup.
    if type(alg) is not str or alg not in algorithms:
        raise InvalidTokenError(Reason.UNSUPPORTED_ALGORITHM)
    if not _REFUSED_HEADERS.isdisjoint(params):
        raise InvalidTokenError(Reason.UNSUPPORTED_HEADER)
    kid = params.get("kid", _ABSENT)
    if kid is _ABSENT:
        kid = None
    elif type(kid) is not str or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise InvalidTokenError(Reason.MALFORMED_TOKEN)
    return Header(params, alg, kid)


def parse_compact(
    token: str, algorithms: frozenset[str], known_headers: Mapping[str, Header] = _NO_HEADERS
) -> CompactJWS | None:
    """Parse an ASCII ``token`` strictly.

    Returns ``None`` if it does not have the shape of a compact JWS (three base64url parts),
    so that the caller may route it elsewhere (introspection); raises
    :class:`InvalidTokenError` if it has that shape but anything about it is unexpected.
    ``known_headers`` maps header segments already seen on verified tokens to their parse,
    which spares decoding the same header for every token a key signs.
    """
    jws = _decode(token, algorithms, known_headers)
    if jws is None and _COMPACT.fullmatch(token):
        raise InvalidTokenError(Reason.MALFORMED_TOKEN)
    return jws


def _decode(
    token: str, algorithms: frozenset[str], known_headers: Mapping[str, Header]
) -> CompactJWS | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header_b64, payload_b64, signature_b64 = parts
    payload = b64url_decode(payload_b64)
    signature = b64url_decode(signature_b64)
    claims = None if payload is None else parse_object(payload)
    if claims is None or signature is None:
        return None
    header = known_headers.get(header_b64)
    if header is None:
        raw_header = b64url_decode(header_b64)
        if not raw_header:
            return None
        header = parse_header(raw_header, algorithms)
    signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode()
    # tuple.__new__ directly: the NamedTuple's generated __new__ is a Python-level call.
    return _new_jws(CompactJWS, (header, header_b64, claims, signing_input, signature))


# --- verifiers -------------------------------------------------------------------------


def make_verifier(alg: str, key: object) -> Verifier | None:
    """A verifier for ``alg`` bound to the native public ``key``, or ``None`` if they don't fit.

    Padding, hash and curve come from joserfc's definition of ``alg``.
    """
    model: Any = JWSRegistry.algorithms.get(alg)
    if model is None:
        return None
    if isinstance(key, rsa.RSAPublicKey) and alg[:2] in ("RS", "PS"):
        return _rsa_verifier(key, model.padding, model.hash_alg())
    if isinstance(key, ec.EllipticCurvePublicKey) and alg.startswith("ES"):
        if key.curve.name != _CURVES.get(model.curve):
            return None
        return _ecdsa_verifier(key, ec.ECDSA(model.hash_alg()))
    if isinstance(key, ed25519.Ed25519PublicKey) and alg in ("EdDSA", "Ed25519"):
        return _eddsa_verifier(key, 64)
    if isinstance(key, ed448.Ed448PublicKey) and alg in ("EdDSA", "Ed448"):
        return _eddsa_verifier(key, 114)
    return None


_CURVES = {"P-256": "secp256r1", "P-384": "secp384r1", "P-521": "secp521r1"}


def _rsa_verifier(key: rsa.RSAPublicKey, pad: Any, hash_alg: Any) -> Verifier:
    size = (key.key_size + 7) // 8

    def verify(message: bytes, signature: bytes) -> bool:
        if len(signature) != size:
            return False
        try:
            key.verify(signature, message, pad, hash_alg)
        except (InvalidSignature, ValueError):
            return False
        return True

    return verify


def _ecdsa_verifier(key: ec.EllipticCurvePublicKey, scheme: ec.ECDSA) -> Verifier:
    size = (key.curve.key_size + 7) // 8

    def verify(message: bytes, signature: bytes) -> bool:
        # JWS ECDSA signatures are raw R || S of fixed width (RFC 7518 §3.4), never DER.
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if r == 0 or s == 0:  # "psychic signatures" (CVE-2022-21449): refuse before the library
            return False
        # (r, n - s) verifies too: ECDSA has no low-S rule (FIPS 186-5 §6.4.2, RFC 7518 §3.4),
        # so a token has a twin string with the same claims (docs/validation.md).
        try:
            key.verify(encode_dss_signature(r, s), message, scheme)
        except (InvalidSignature, ValueError):
            return False
        return True

    return verify


def _eddsa_verifier(key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey, size: int) -> Verifier:
    def verify(message: bytes, signature: bytes) -> bool:
        if len(signature) != size:
            return False
        try:
            key.verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    return verify
