"""DPoP proofs (RFC 9449): the checks on a proof, and on a token's binding to its key (pure).

:func:`check_proof` applies RFC 9449 §4.3 to one proof, given the request's method and public
URL, the access token's digest and the time; it never does I/O and never reads a clock. What
needs state stays with the caller (the async shell): whether the proof's ``jti`` was seen
before (it returns the digest to look up, see ``_replay``), and, with server nonces, the
nonce source (``_nonce``). Then :func:`check_binding` compares the proof's key with the
token's ``cnf.jkt`` (RFC 9449 §6, §7.1).

The proof is parsed as strictly as an access token (``_jose``): three canonical base64url
parts, strict JSON without duplicate members, no ``crit``/``b64``/``zip``/``enc``/``cty``, an
allowlisted asymmetric ``alg``, and a bounded size, checked before anything is decoded. The
``jwk`` in its header is imported by the rules of the issuer's key set
(:func:`~oauth_shield._keys.import_public_jwk`), after any private or unknown member refused
it. A verified header is remembered with its key, so a client that signs many proofs with one
key costs one import: every later proof costs one JSON parse and one signature check.

Cheap checks run first and the signature last, so junk costs no signature check. A refusal is
an :class:`InvalidDPoPProofError` (or :class:`UseDPoPNonceError`), with a fixed sentence.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple, Protocol, cast

from ._claims import MAX_TIMESTAMP
from ._config import MAX_LEEWAY, SUPPORTED_ALGORITHMS, check_count, check_number, check_strings
from ._errors import (
    ConfigurationError,
    InvalidDPoPProofError,
    InvalidTokenError,
    Reason,
    UseDPoPNonceError,
)
from ._jose import _REFUSED_HEADERS, Verifier, b64url_decode
from ._json import parse_object
from ._keys import import_public_jwk
from ._token import confirmation_jkt as confirmation_jkt  # the binding rule, with check_binding
from ._urls import Forwarded, normalize_url, request_url

#: ES256 (what RFC 9449's examples use), RSA with either padding, and EdDSA: the clients in use.
DEFAULT_ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")
#: RFC 9449 §11.1 asks for a short window; a minute each way absorbs delay and ordinary skew.
DEFAULT_IAT_WINDOW = 60.0
#: More than five minutes (oidc-provider's own window) stops being freshness.
MAX_IAT_WINDOW = 300.0
#: A proof with a 4096-bit RSA key is under 2 KiB; 8 KiB is the usual header limit.
DEFAULT_MAX_PROOF_SIZE = 8192
#: jti values are UUIDs or random base64url strings (RFC 9449 §4.2: 96 bits or more).
MAX_JTI_LENGTH = 256
#: Proof headers (one per client key) whose verified key is remembered.
_KEY_MEMO_SIZE = 1024

_TYPES = frozenset({"dpop+jwt", "application/dpop+jwt"})  # RFC 7515 §4.1.9
# RFC 7517/7518 public members and harmless metadata (WebCrypto adds "ext" and "key_ops").
# Anything else refuses the key: a private member ("d", "p", "q", "dp", "dq", "qi", "oth",
# "k", "priv") above all, RFC 9449 §4.3 check 7.
_JWK_MEMBERS = frozenset({"kty", "crv", "x", "y", "n", "e", "alg", "kid", "use", "key_ops", "ext"})
_NUMBER = (int, float)
_REPLAY_LABEL = b"oauth_shield DPoP jti\x00"


class Nonces(Protocol):
    """Server nonces as :func:`check_proof` asks for them (``_nonce.NonceIssuer`` is one)."""

    def accepts(self, nonce: object, now: float) -> bool: ...

    def current(self, now: float) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DPoPSettings:
    """How proofs are judged, and how a request's public URL is found; validated eagerly."""

    algorithms: frozenset[str] = frozenset(DEFAULT_ALGORITHMS)
    iat_window: float = DEFAULT_IAT_WINDOW
    leeway: float = 0.0
    max_proof_size: int = DEFAULT_MAX_PROOF_SIZE
    public_url: str | None = None
    forwarded: Forwarded = "none"
    forwarded_hops: int = 1

    def __post_init__(self) -> None:
        names = check_strings("dpop_algorithms", self.algorithms)
        for name in names:
            if name not in SUPPORTED_ALGORITHMS:
                raise ConfigurationError(
                    f"dpop_algorithms: {name!r} is not supported (asymmetric only, RFC 9449 §4.2)",
                    field="dpop_algorithms",
                )
        set_ = object.__setattr__
        set_(self, "algorithms", frozenset(names))
        set_(
            self, "iat_window", check_number("dpop_iat_window", self.iat_window, 1, MAX_IAT_WINDOW)
        )
        set_(self, "leeway", check_number("dpop_leeway", self.leeway, 0, MAX_LEEWAY))
        check_count("dpop_max_proof_size", self.max_proof_size, 1024)
        if self.public_url is not None:
            base = normalize_url(self.public_url)
            if base is None or "?" in self.public_url or "#" in self.public_url:
                raise ConfigurationError(
                    "dpop_public_url must be an absolute http(s) URL without query or fragment",
                    field="dpop_public_url",
                )
            set_(self, "public_url", base)
        if self.forwarded not in ("none", "x-forwarded", "forwarded"):
            raise ConfigurationError(
                "dpop_forwarded must be 'none', 'x-forwarded' or 'forwarded'",
                field="dpop_forwarded",
            )
        check_count("dpop_forwarded_hops", self.forwarded_hops, 1)

    def request_url(
        self,
        *,
        scheme: str,
        host: str | None,
        path: str | bytes,
        root_path: str = "",
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    ) -> str | None:
        """The request's public URL under these settings (see :func:`_urls.request_url`)."""
        return request_url(
            scheme=scheme,
            host=host,
            path=path,
            root_path=root_path,
            headers=headers,
            public_url=self.public_url,
            forwarded=self.forwarded,
            hops=self.forwarded_hops,
        )


class Proof(NamedTuple):
    """A proof that passed every check but the replay check, which is the caller's."""

    jkt: str
    """The RFC 7638 SHA-256 thumbprint of the proof's key (compare with ``cnf.jkt``)."""
    replay_key: bytes
    """A digest of the key and ``jti``: what the replay store remembers, never the proof."""
    iat: float
    expires_at: float
    """Until when the proof could be accepted, so until when its ``replay_key`` is kept."""


class DPoPRequest(NamedTuple):
    """What a request presents with a token sent under the ``DPoP`` scheme (RFC 9449 §7.1),
    for :meth:`TokenValidator.validate`.

    >>> DPoPRequest(request.headers.getlist("DPoP"), "GET",          # doctest: +SKIP
    ...             "https://api.example.com/items")
    """

    proofs: Sequence[str]
    """Every ``DPoP`` header value of the request (more than one is refused, RFC 9449 §4.3)."""
    method: str
    """The request's method, as sent (``htm`` is compared case-sensitively)."""
    url: str | None
    """The request's public URL, as its client sent it (query ignored); see
    :meth:`DPoPSettings.request_url`. ``None``: the URL cannot be placed, and the proof is
    refused."""


class _ProofKey(NamedTuple):
    alg: str
    jkt: str
    verify: Verifier


_KEYS: dict[str, _ProofKey] = {}


def single_proof(values: Iterable[str] | str | None) -> str | None:
    """The one ``DPoP`` header value of a request, or ``None`` if there is none.

    RFC 9449 §4.3 check 1: more than one header, or one folded into a list (a JWS has no
    ``,``), is refused. ``values`` as an adapter may pass them: a list, one string, or
    ``None`` (``headers.get("DPoP")``); a value that is not a string is a malformed proof.
    """
    if values is None:
        return None
    given: Iterable[object]
    if isinstance(values, str):
        given = (values,)
    elif isinstance(values, list | tuple):
        given = values
    else:
        given = _listed(values)
    found = []
    for value in given:
        if type(value) is not str:
            raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
        found.append(value.strip(" \t"))
    if len(found) > 1 or (found and "," in found[0]):
        raise InvalidDPoPProofError(Reason.DPOP_MULTIPLE)
    if found and not found[0]:
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    return found[0] if found else None


def _listed(values: object) -> list[object]:
    """The first two of any other iterable (two are already too many), or a refusal."""
    try:
        return list(islice(cast(Iterable[object], values), 2))
    except TypeError:
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED) from None


def check_proof(
    proof: str,
    *,
    method: str,
    url: str | None,
    token_digest: bytes | None,
    now: float,
    settings: DPoPSettings,
    nonces: Nonces | None = None,
) -> Proof:
    """Check one DPoP proof for a request (RFC 9449 §4.3), all but replay; raise on refusal.

    ``url`` is the request's public URL (:meth:`DPoPSettings.request_url`; ``None`` when it
    could not be placed). ``token_digest`` is the SHA-256 of the access token the proof
    comes with, as the validator already computes it (``_token.token_digest``), or ``None``
    for a proof without a token; ``ath`` must match it.
    """
    if type(proof) is not str or not 0 < len(proof) <= settings.max_proof_size:
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    parts = proof.split(".")
    if len(parts) != 3 or not proof.isascii():
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    header_b64, payload_b64, signature_b64 = parts
    key = _KEYS.get(header_b64)
    if key is None:
        key = _import_header(header_b64, settings.algorithms)
    elif key.alg not in settings.algorithms:
        raise InvalidDPoPProofError(Reason.DPOP_UNSUPPORTED_ALGORITHM)
    payload = b64url_decode(payload_b64)
    claims = None if payload is None else parse_object(payload)
    signature = b64url_decode(signature_b64)
    if claims is None or not signature:
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    jti, iat = _check_claims(claims, method, url, token_digest, now, settings)
    if nonces is not None and not nonces.accepts(claims.get("nonce"), now):
        raise UseDPoPNonceError(Reason.DPOP_NONCE, nonces.current(now))
    if not key.verify(proof[: len(header_b64) + 1 + len(payload_b64)].encode(), signature):
        raise InvalidDPoPProofError(Reason.DPOP_BAD_SIGNATURE)
    if header_b64 not in _KEYS:  # only verified headers: junk cannot crowd out real clients
        if len(_KEYS) >= _KEY_MEMO_SIZE:
            _KEYS.clear()
        _KEYS[header_b64] = key
    replay_key = hashlib.sha256(_REPLAY_LABEL + f"{key.jkt}\x00{jti}".encode()).digest()[:16]
    return Proof(key.jkt, replay_key, iat, iat + settings.iat_window + settings.leeway)


def _import_header(header_b64: str, algorithms: frozenset[str]) -> _ProofKey:
    """RFC 9449 §4.3 checks 4, 5 and 7, and the key's import (§4.2)."""
    raw = b64url_decode(header_b64)
    header = parse_object(raw) if raw else None
    if header is None:
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    typ = header.get("typ")
    if type(typ) is not str or typ.lower() not in _TYPES:
        raise InvalidDPoPProofError(Reason.DPOP_WRONG_TYPE)
    alg = header.get("alg")
    if type(alg) is not str or alg not in algorithms:
        raise InvalidDPoPProofError(Reason.DPOP_UNSUPPORTED_ALGORITHM)
    if not _REFUSED_HEADERS.isdisjoint(header):
        raise InvalidDPoPProofError(Reason.DPOP_UNSUPPORTED_HEADER)
    jwk = header.get("jwk")
    if type(jwk) is not dict or not _JWK_MEMBERS.issuperset(jwk):
        raise InvalidDPoPProofError(Reason.DPOP_BAD_KEY)
    imported = import_public_jwk(jwk, frozenset({alg}))
    if isinstance(imported, str) or alg not in imported.verifiers:
        raise InvalidDPoPProofError(Reason.DPOP_BAD_KEY)
    return _ProofKey(alg, imported.thumbprint, imported.verifiers[alg])


def _check_claims(
    claims: dict[str, Any],
    method: str,
    url: str | None,
    token_digest: bytes | None,
    now: float,
    settings: DPoPSettings,
) -> tuple[str, float]:
    """RFC 9449 §4.3 checks 3, 8, 9, 11 and 12; returns ``(jti, iat)``."""
    get = claims.get
    jti, htm, htu = get("jti"), get("htm"), get("htu")
    iat: Any = get("iat")
    if type(jti) is not str or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    if type(htm) is not str or type(htu) is not str or type(iat) not in _NUMBER:
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    if not 0 <= iat <= MAX_TIMESTAMP:  # before any float arithmetic: 10**400 is an int
        raise InvalidDPoPProofError(Reason.DPOP_MALFORMED)
    if htm != method:  # RFC 9110 §9.1: methods are case-sensitive
        raise InvalidDPoPProofError(Reason.DPOP_METHOD_MISMATCH)
    expected = None if url is None else normalize_url(url)
    if expected is None or normalize_url(htu) != expected:
        raise InvalidDPoPProofError(Reason.DPOP_URL_MISMATCH)
    if abs(now - iat) > settings.iat_window + settings.leeway:
        raise InvalidDPoPProofError(Reason.DPOP_IAT_OUT_OF_WINDOW)
    if token_digest is not None:
        ath = get("ath")
        hashed = b64url_decode(ath) if type(ath) is str else None
        if hashed is None or not hmac.compare_digest(hashed, token_digest):
            raise InvalidDPoPProofError(Reason.DPOP_ATH_MISMATCH)
    return jti, float(iat)


def check_binding(proof: Proof, jkt: str | None) -> None:
    """The token is bound to the proof's key (RFC 9449 §7.1), or :class:`InvalidTokenError`.

    ``jkt`` is :func:`confirmation_jkt` of the token: a proof with an unbound token is
    refused, so a stolen bearer token cannot pass for a DPoP-bound one.
    """
    if jkt is None:
        raise InvalidTokenError(Reason.DPOP_NOT_BOUND)
    if not hmac.compare_digest(proof.jkt, jkt):
        raise InvalidTokenError(Reason.DPOP_KEY_MISMATCH)
