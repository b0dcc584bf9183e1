"""The peers: what a competent user of each library writes to protect an API with JWTs.

Each peer does the whole job of a resource server, so none is timed doing less than
oauth_shield (which checks, in its default ``rfc9068`` profile: the ``alg`` allowlist, ``kid``
lookup in a cached key set, the signature, ``typ`` at+jwt, ``iss``, ``aud``, ``exp``, ``nbf``,
``iat``, and the presence of ``sub``, ``client_id``, ``jti``, then the required scope):

- **PyJWT + PyJWKClient** (:class:`PyJWTPeer`): PyJWKClient with its defaults (the JWK set
  cached for 300 s, refetched on an unknown kid after a cooldown, a lock around the lookup),
  ``get_signing_key_from_jwt`` then ``jwt.decode_complete`` with the algorithm allowlist,
  ``audience``, ``issuer`` and ``require`` = exp, iat, sub, jti, client_id (PyJWT also checks
  ``nbf`` and ``iat`` when present); ``typ`` at+jwt is checked by hand from the returned header
  (PyJWT has no option for it); then the scope.
- **joserfc hand-wired** (:class:`JoserfcKeys`): a dict kid -> joserfc key imported from the
  issuer's JWK set (found through its metadata), a 300 s TTL, one refetch per 30 s for an
  unknown kid; ``joserfc.jwt.decode`` with one prebuilt ``JWSRegistry`` (the allowlist) and a
  key resolver reading that dict; one prebuilt ``JWTClaimsRegistry`` (``iss`` and ``aud``
  values; ``exp``, ``iat``, ``sub``, ``jti``, ``client_id`` essential; it also checks ``nbf``
  and ``iat`` when present); ``typ`` at+jwt by hand; then the scope. No single-flight: two
  concurrent misses make two fetches (the usual hand-written cache).
- **Authlib resource protector** (:class:`AuthlibPeer`): Authlib's RFC 9068
  ``JWTBearerTokenValidator`` with ``get_jwks`` returning a joserfc ``KeySet`` cached on first
  use, called as ``ResourceProtector.validate_request`` calls it: ``authenticate_token`` then
  ``validate_token`` with the scope. Authlib checks ``typ`` (when present), ``iss``, ``aud``,
  ``exp``, ``iat``, ``sub``, ``client_id``, ``jti`` and the scope. It passes no algorithm list
  to joserfc, so joserfc's recommended set applies (HS256, RS256, ES256): EdDSA tokens are
  refused, and the suites leave Authlib out of the EdDSA rows.
- **Authlib introspection** (:class:`AuthlibIntrospection`): Authlib's RFC 7662
  ``IntrospectTokenValidator`` with ``introspect_token`` posting to the issuer through one
  keep-alive ``httpx.Client`` (client_secret_basic). It caches nothing, so every request is a
  round trip; it checks ``active`` and the scope (not ``iss``, ``aud`` or ``exp``).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import jwt as pyjwt
from authlib.oauth2.rfc7662 import IntrospectTokenValidator
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import GuestProtocol, Key, KeySet
from joserfc.jws import JWSRegistry

#: RFC 9068 §2.1 media types for ``typ`` (compared case-insensitively, RFC 7515 §4.1.9).
AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
#: Claims RFC 9068 §2.2 makes mandatory, besides iss and aud (checked against values).
REQUIRED = ("exp", "iat", "sub", "jti", "client_id")
#: What the suites ask every contender for.
SCOPE = "read"
#: Clock skew tolerated, as oauth_shield's default (the peers default to none; no cost either way).
LEEWAY = 30

# joserfc warns on every use of "EdDSA" (RFC 9864 deprecates the name in favour of "Ed25519").
# The call still happens per token; silencing it only keeps the output readable.
warnings.filterwarnings("ignore", category=SecurityWarning)


class PeerError(Exception):
    """A peer refused a token (each suite checks that no peer refuses a valid one)."""


class InsufficientScopeError(PeerError):
    """A valid token without the required scope (403, RFC 6750 §3.1)."""


def _check_typ_and_scope(header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
    if str(header.get("typ", "")).lower() not in AT_JWT:
        raise PeerError("typ")
    scope = claims.get("scope")
    if not isinstance(scope, str) or SCOPE not in scope.split():
        raise InsufficientScopeError("scope")


class PyJWTPeer:
    """PyJWT's documented recipe around one PyJWKClient (synchronous; blocking I/O)."""

    def __init__(self, jwks_uri: str, issuer: str, audience: str, algorithms: Iterable[str]):
        self.client = pyjwt.PyJWKClient(jwks_uri)
        self.issuer, self.audience, self.algorithms = issuer, audience, list(algorithms)
        self.options: Any = {"require": list(REQUIRED)}

    def check(self, token: str) -> dict[str, Any]:
        key = self.client.get_signing_key_from_jwt(token)
        decoded = pyjwt.decode_complete(
            token,
            key.key,
            algorithms=self.algorithms,
            audience=self.audience,
            issuer=self.issuer,
            leeway=LEEWAY,
            options=self.options,
        )
        claims: dict[str, Any] = decoded["payload"]
        _check_typ_and_scope(decoded["header"], claims)
        return claims


class _UnknownKid(Exception):
    """Raised by the key resolver: the cache must be refreshed before trying again."""


class JoserfcKeys:
    """A hand-written key-set cache around joserfc: dict kid -> key, TTL, unknown-kid refetch.

    ``check`` is the synchronous local part; ``validate`` (async, httpx.AsyncClient) and
    ``validate_sync`` (httpx.Client) add the fetch on a miss, without single-flight.
    """

    ttl = 300.0  # seconds a fetched key set is trusted
    cooldown = 30.0  # at most one refetch per cooldown for an unknown kid

    def __init__(self, issuer: str, audience: str, algorithms: Iterable[str]) -> None:
        self.issuer = issuer
        self.keys: dict[str, Key] = {}
        self.fetched_at = -float("inf")
        self.attempts = 0  # refreshes started (a failed or cancelled one is not a fetch)
        self.fetches = 0
        self.registry = JWSRegistry(algorithms=list(algorithms))
        self.claims = jose_jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            **{name: {"essential": True} for name in REQUIRED},  # type: ignore[arg-type]
        )
        self._jwks_uri: str | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._client: httpx.Client | None = None

    def _resolve(self, obj: GuestProtocol) -> Key:
        key = self.keys.get(obj.headers().get("kid", ""))
        if key is None:
            raise _UnknownKid
        return key

    def check(self, token: str) -> dict[str, Any]:
        """Verify with the cached keys; raises ``_UnknownKid`` when the cache lacks the kid."""
        decoded = jose_jwt.decode(token, self._resolve, registry=self.registry)
        self.claims.validate(decoded.claims)
        _check_typ_and_scope(decoded.header, decoded.claims)
        return decoded.claims

    def _may_refetch(self) -> bool:
        elapsed = time.monotonic() - self.fetched_at
        return elapsed > self.cooldown or not self.keys

    def _install(self, jwks: Any) -> None:
        self.keys = {key.kid: key for key in KeySet.import_key_set(jwks) if key.kid}
        self.fetched_at = time.monotonic()
        self.fetches += 1

    async def validate(self, token: str) -> dict[str, Any]:
        if time.monotonic() - self.fetched_at > self.ttl:
            await self.refresh()
        try:
            return self.check(token)
        except _UnknownKid:
            if not self._may_refetch():
                raise PeerError("unknown kid") from None
        await self.refresh()
        return self.check(token)

    async def refresh(self) -> None:
        self.attempts += 1
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(timeout=5)
        if self._jwks_uri is None:
            metadata = await self._aclient.get(f"{self.issuer}/.well-known/openid-configuration")
            self._jwks_uri = metadata.raise_for_status().json()["jwks_uri"]
        answer = await self._aclient.get(self._jwks_uri)
        self._install(answer.raise_for_status().json())

    def validate_sync(self, token: str) -> dict[str, Any]:
        if time.monotonic() - self.fetched_at > self.ttl:
            self.refresh_sync()
        try:
            return self.check(token)
        except _UnknownKid:
            if not self._may_refetch():
                raise PeerError("unknown kid") from None
        self.refresh_sync()
        return self.check(token)

    def refresh_sync(self) -> None:
        self.attempts += 1
        if self._client is None:
            self._client = httpx.Client(timeout=5)
        if self._jwks_uri is None:
            metadata = self._client.get(f"{self.issuer}/.well-known/openid-configuration")
            self._jwks_uri = metadata.raise_for_status().json()["jwks_uri"]
        self._install(self._client.get(self._jwks_uri).raise_for_status().json())

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
        if self._client is not None:
            self._client.close()


class AuthlibPeer(JWTBearerTokenValidator):  # type: ignore[misc]  # Authlib is untyped
    """Authlib's RFC 9068 validator, its key set fetched (via the metadata) and cached once."""

    def __init__(self, issuer: str, audience: str) -> None:
        super().__init__(issuer=issuer, resource_server=audience)
        self.keyset: KeySet | None = None
        self.fetches = 0

    def get_jwks(self) -> KeySet:
        if self.keyset is None:  # the docstring's recipe; no lock, as written there
            with httpx.Client(timeout=5) as client:
                metadata = client.get(f"{self.issuer}/.well-known/openid-configuration")
                jwks_uri = metadata.raise_for_status().json()["jwks_uri"]
                self.keyset = KeySet.import_key_set(client.get(jwks_uri).raise_for_status().json())
            self.fetches += 1
        return self.keyset

    def check(self, token: str) -> dict[str, Any]:
        """What ``ResourceProtector.validate_request`` does after parsing the header."""
        claims = self.authenticate_token(token)
        self.validate_token(claims, [SCOPE], None)
        return dict(claims)


class AuthlibIntrospection(IntrospectTokenValidator):  # type: ignore[misc]
    """Authlib's RFC 7662 validator; ``introspect_token`` as its docstring suggests, uncached."""

    def __init__(self, endpoint: str, client_id: str, secret: str) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.client = httpx.Client(auth=(client_id, secret), timeout=5)

    def introspect_token(self, token_string: str) -> dict[str, Any]:
        answer = self.client.post(self.endpoint, data={"token": token_string})
        result: dict[str, Any] = answer.raise_for_status().json()
        return result

    def check(self, token: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.authenticate_token(token)
        self.validate_token(answer, [SCOPE], None)
        return answer

    def close(self) -> None:
        self.client.close()


async def on_thread(check: Any, token: str) -> dict[str, Any]:
    """A synchronous peer called from async code, as an async app must (off the loop)."""
    result: dict[str, Any] = await asyncio.to_thread(check, token)
    return result
