"""The error tree, its reason codes, and the RFC 6750 challenge.

::

    AuthError                         what a client is told: .error, .status_code, .description
    ├── MissingTokenError             401, challenge without an error code (RFC 6750 §3.1)
    ├── InvalidRequestError           400 invalid_request
    ├── InvalidTokenError             401 invalid_token
    ├── InsufficientScopeError        403 insufficient_scope, names the required scopes
    ├── InvalidDPoPProofError         401 invalid_dpop_proof, a DPoP challenge (RFC 9449 §7.1)
    │   └── UseDPoPNonceError         401 use_dpop_nonce, with a fresh DPoP-Nonce (RFC 9449 §9)
    └── TemporarilyUnavailableError   503, the authorization server could not be reached
    ConfigurationError                a bad setting, raised where it is made, never per request
    IssuerUnavailableError            check(): the issuer cannot be reached now

Every ``AuthError`` also carries a :class:`Reason`: the precise internal cause, for logs,
metrics and tests. Clients never see it. Descriptions are fixed sentences, so no part of a
token or of a server's answer can ever reach one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, ClassVar


class Reason(StrEnum):
    """Why a token or request was refused (internal: logs, metrics, tests)."""

    # The request
    MISSING_TOKEN = "missing_token"
    OTHER_SCHEME = "other_scheme"
    MALFORMED_REQUEST = "malformed_request"
    MULTIPLE_CREDENTIALS = "multiple_credentials"
    # The token's form
    MALFORMED_TOKEN = "malformed_token"
    TOKEN_TOO_LARGE = "token_too_large"
    UNSUPPORTED_TOKEN = "unsupported_token"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNSUPPORTED_HEADER = "unsupported_header"
    WRONG_TYPE = "wrong_type"
    # The key and the signature
    UNKNOWN_KID = "unknown_kid"
    AMBIGUOUS_KEY = "ambiguous_key"
    KEY_MISMATCH = "key_mismatch"
    BAD_SIGNATURE = "bad_signature"
    # The claims
    ISSUER_MISMATCH = "issuer_mismatch"
    AUDIENCE_MISMATCH = "audience_mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    KEY_BOUND = "key_bound"
    CLIENT_NOT_ALLOWED = "client_not_allowed"
    CLAIM_MISMATCH = "claim_mismatch"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    # Introspection
    INACTIVE = "inactive"
    INTROSPECTION_FAILED = "introspection_failed"
    # The authorization server
    KEYS_UNAVAILABLE = "keys_unavailable"
    INTROSPECTION_UNAVAILABLE = "introspection_unavailable"
    RATE_LIMITED = "rate_limited"
    REPLAY_STORE_UNAVAILABLE = "replay_store_unavailable"  # the shared DPoP replay store
    # API keys
    INVALID_API_KEY = "invalid_api_key"
    API_KEY_EXPIRED = "api_key_expired"
    # DPoP proofs (RFC 9449 §4.3, §7): InvalidDPoPProofError unless noted
    DPOP_MISSING = "dpop_missing"
    DPOP_MULTIPLE = "dpop_multiple"
    DPOP_MALFORMED = "dpop_malformed"
    DPOP_WRONG_TYPE = "dpop_wrong_type"
    DPOP_UNSUPPORTED_ALGORITHM = "dpop_unsupported_algorithm"
    DPOP_UNSUPPORTED_HEADER = "dpop_unsupported_header"
    DPOP_BAD_KEY = "dpop_bad_key"
    DPOP_BAD_SIGNATURE = "dpop_bad_signature"
    DPOP_METHOD_MISMATCH = "dpop_method_mismatch"
    DPOP_URL_MISMATCH = "dpop_url_mismatch"
    DPOP_IAT_OUT_OF_WINDOW = "dpop_iat_out_of_window"
    DPOP_ATH_MISMATCH = "dpop_ath_mismatch"
    DPOP_REPLAYED = "dpop_replayed"  # by the replay store, which the shell asks
    DPOP_UNEXPECTED = "dpop_unexpected"  # a proof with a token presented as Bearer (§7.2)
    DPOP_NONCE = "dpop_nonce"  # UseDPoPNonceError: missing, stale or forged nonce
    # The token's binding to the proof's key (RFC 9449 §6, §7.1): InvalidTokenError
    DPOP_NOT_BOUND = "dpop_not_bound"
    DPOP_KEY_MISMATCH = "dpop_key_mismatch"


class ConfigurationError(ValueError):
    """A setting is invalid. Raised eagerly, at construction, naming the field.

    ``field`` is the setting the message starts with, and ``mentions`` the other settings it
    names (a fix such as ``insecure_http=True``), both as keyword-argument names, so that a
    validator built from ``OAUTH_SHIELD_*`` keys can say the same in the keys' names.
    """

    def __init__(
        self, message: str, *, field: str | None = None, mentions: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.field = field
        self.mentions = mentions


class IssuerUnavailableError(Exception):
    """Raised by ``check()``: the authorization server cannot be reached, or answers with a
    server error, right now. Unlike a :class:`ConfigurationError`, it may pass by itself."""


class AuthError(Exception):
    """Base of every client-facing failure; render it with :meth:`www_authenticate`."""

    error: ClassVar[str | None]
    status_code: ClassVar[int]
    scheme: str = "Bearer"
    """The authentication scheme of the refused request: ``"DPoP"`` for a proof's error and
    for any error of a request that came with the ``DPoP`` scheme (its challenge carries the
    error), else ``"Bearer"``."""
    _default_description: ClassVar[str]
    _descriptions: ClassVar[dict[Reason, str]] = {}

    def __init__(self, reason: Reason) -> None:
        self.reason = reason
        self.description = self._descriptions.get(reason, self._default_description)
        super().__init__(self.description)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason.value!r})"

    def www_authenticate(
        self,
        realm: str | None = None,
        *,
        scope: Iterable[str] = (),
        resource_metadata: str | None = None,
        dpop_algs: Iterable[str] | None = None,
        bearer: bool = True,
    ) -> str:
        """The ``WWW-Authenticate`` header value for this error (RFC 6750 §3, RFC 9449 §7.1).

        :param scope: the scopes the resource requires, named in a ``401`` challenge so the
            client can ask for them (RFC 6750 §3); other statuses leave them out.
        :param resource_metadata: the URL of the API's RFC 9728 metadata (§5.1).
        :param dpop_algs: when the resource accepts DPoP, the proof algorithms: a ``DPoP``
            challenge naming them follows the ``Bearer`` one, or (``bearer=False``, DPoP
            required) stands alone. The error goes on the challenge of the scheme the request
            used (:attr:`scheme`); the other one only names the realm.
        """
        params = self._params(scope)
        common: dict[str, Any] = {"realm": realm, "resource_metadata": resource_metadata}
        on_dpop = self.scheme == "DPoP"
        if dpop_algs is None:  # DPoP not offered: one challenge, as RFC 6750 alone would send
            render = render_dpop_challenge if on_dpop else render_challenge
            return render(**common, **params)
        bare = params if self.error is None else {}  # no error: both name what is required
        challenges = []
        if bearer:
            challenges.append(render_challenge(**common, **(bare if on_dpop else params)))
        dpop = params if on_dpop or not bearer else bare
        challenges.append(render_dpop_challenge(**common, **dpop, algs=dpop_algs))
        return ", ".join(challenges)

    def _params(self, scope: Iterable[str]) -> dict[str, Any]:
        """This error's parameters in a challenge, given the scopes the resource requires."""
        return {
            "error": self.error,
            "description": self.description,
            "scope": scope if self.status_code == 401 else (),
        }

    def headers(
        self,
        realm: str | None = None,
        *,
        scope: Iterable[str] = (),
        resource_metadata: str | None = None,
        dpop_algs: Iterable[str] | None = None,
        bearer: bool = True,
    ) -> dict[str, str]:
        """All response headers this error calls for (see :meth:`www_authenticate`)."""
        challenge = self.www_authenticate(
            realm,
            scope=scope,
            resource_metadata=resource_metadata,
            dpop_algs=dpop_algs,
            bearer=bearer,
        )
        return {"WWW-Authenticate": challenge}

    def body(self) -> dict[str, str]:
        """A small JSON body for the response, with the same fixed, safe words."""
        if self.error is None:
            return {"error_description": self.description}
        return {"error": self.error, "error_description": self.description}


class MissingTokenError(AuthError):
    """No bearer token was presented: a bare challenge, no error code (RFC 6750 §3.1)."""

    error = None
    status_code = 401
    _default_description = "Authentication required"

    def _params(self, scope: Iterable[str]) -> dict[str, Any]:
        return {"scope": scope}


class InvalidRequestError(AuthError):
    """The request itself is malformed (RFC 6750 §3.1 ``invalid_request``)."""

    error = "invalid_request"
    status_code = 400
    _default_description = "The request is malformed"
    _descriptions: ClassVar[dict[Reason, str]] = {
        Reason.MULTIPLE_CREDENTIALS: "The request carries more than one credential",
    }


class InvalidTokenError(AuthError):
    """The token is malformed, expired, revoked or otherwise not acceptable."""

    error = "invalid_token"
    status_code = 401
    _default_description = "The access token is invalid"
    # Telling a client its token expired lets it refresh instead of re-authenticating;
    # every other cause stays behind one sentence (RFC 6750 §3.1 example).
    _descriptions: ClassVar[dict[Reason, str]] = {
        Reason.EXPIRED: "The access token expired",
        Reason.INVALID_API_KEY: "The API key is invalid",
        Reason.API_KEY_EXPIRED: "The API key expired",
    }


class InsufficientScopeError(AuthError):
    """The token is valid but lacks a scope the resource requires."""

    error = "insufficient_scope"
    status_code = 403
    _default_description = "The access token lacks a required scope"

    def __init__(self, scopes: Iterable[str]) -> None:
        super().__init__(Reason.INSUFFICIENT_SCOPE)
        self.scopes: tuple[str, ...] = tuple(sorted(_scope_list(scopes)))

    def __repr__(self) -> str:
        return f"InsufficientScopeError(scopes={self.scopes!r})"

    def _params(self, scope: Iterable[str]) -> dict[str, Any]:
        # Every scope the operation needs, not only the missing ones: the client asks for a
        # new token carrying all of them (step-up), and a token replaces, never adds.
        return {"error": self.error, "description": self.description, "scope": self.scopes}


class TemporarilyUnavailableError(AuthError):
    """The authorization server could not be reached; the client should retry later."""

    error = "temporarily_unavailable"
    status_code = 503
    _default_description = "The access token cannot be checked right now"

    def __init__(self, reason: Reason, retry_after: float = 5) -> None:
        super().__init__(reason)
        self.retry_after = int(min(max(retry_after, 1), 3600)) if math.isfinite(retry_after) else 5

    def headers(self, realm: str | None = None, **challenge: Any) -> dict[str, str]:
        """The challenge, and ``Retry-After`` (RFC 9110 §10.2.3): when to try again."""
        found = super().headers(realm, **challenge)
        return {**found, "Retry-After": str(self.retry_after)}


# RFC 6749 §A.7 (error_description) and §A.4 (scope-token), applied to every quoted value so
# that nothing can break out of the header: printable ASCII without '"' and '\'.
_QUOTABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 9449 §8.1 NQCHAR, the characters of a DPoP nonce: the set of a scope-token.
_NQCHARS = _SCOPE_TOKEN


def is_scope_token(value: str) -> bool:
    """Whether ``value`` is a legal RFC 6749 scope-token (and so safe in a header)."""
    return _SCOPE_TOKEN.fullmatch(value) is not None


def is_quotable(value: str) -> bool:
    """Whether ``value`` can stand in a quoted header parameter as it is."""
    return _QUOTABLE.fullmatch(value) is not None


def _scope_list(scopes: Iterable[str]) -> list[str]:
    """A space-separated string is a list of scopes, never a sequence of characters."""
    return scopes.split(" ") if isinstance(scopes, str) else list(scopes)


def render_challenge(
    *,
    realm: str | None = None,
    error: str | None = None,
    description: str | None = None,
    scope: Iterable[str] = (),
    resource_metadata: str | None = None,
) -> str:
    """Render a ``Bearer`` challenge (RFC 6750 §3); values that are not legal are left out.

    ``resource_metadata`` is the URL of the API's protected resource metadata (RFC 9728 §5.1).

    >>> render_challenge(realm="api", error="invalid_token", description="Expired")
    'Bearer realm="api", error="invalid_token", error_description="Expired"'
    """
    params = []
    for name, value in (("realm", realm), ("error", error), ("error_description", description)):
        if value is not None and is_quotable(value):
            params.append(f'{name}="{value}"')
    scopes = [s for s in _scope_list(scope) if is_scope_token(s)]
    if scopes:
        params.append(f'scope="{" ".join(scopes)}"')
    if resource_metadata is not None and is_quotable(resource_metadata):
        params.append(f'resource_metadata="{resource_metadata}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"


# --- DPoP (RFC 9449) -----------------------------------------------------------------------


class InvalidDPoPProofError(AuthError):
    """The DPoP proof is missing, malformed, stale, replayed or for another request.

    Rendered as a ``DPoP`` challenge (RFC 9449 §7.1, §12.2 ``invalid_dpop_proof``).
    """

    error = "invalid_dpop_proof"
    status_code = 401
    scheme = "DPoP"
    _default_description = "The DPoP proof is invalid"
    _descriptions: ClassVar[dict[Reason, str]] = {
        Reason.DPOP_MISSING: "A DPoP proof is required",
    }


class UseDPoPNonceError(InvalidDPoPProofError):
    """The proof lacks the server's current nonce: retry with the one in ``DPoP-Nonce``.

    RFC 9449 §9: a ``DPoP`` challenge with ``use_dpop_nonce`` and the fresh nonce in the
    ``DPoP-Nonce`` response header. ``nonce`` is public (any client may ask for one).
    """

    error = "use_dpop_nonce"
    # The words of RFC 9449 §9, Figure 24.
    _default_description = "Resource server requires nonce in DPoP proof"
    _descriptions: ClassVar[dict[Reason, str]] = {}

    def __init__(self, reason: Reason = Reason.DPOP_NONCE, nonce: str | None = None) -> None:
        super().__init__(reason)
        self.nonce = nonce

    def headers(self, realm: str | None = None, **challenge: Any) -> dict[str, str]:
        """The challenge, and the ``DPoP-Nonce`` the client must put in its next proof."""
        headers = super().headers(realm, **challenge)
        # RFC 9449 §8.1: nonce = 1*NQCHAR; anything else would not survive the header.
        if self.nonce is not None and _NQCHARS.fullmatch(self.nonce):
            headers["DPoP-Nonce"] = self.nonce
        return headers


def render_dpop_challenge(
    *,
    realm: str | None = None,
    error: str | None = None,
    description: str | None = None,
    scope: Iterable[str] = (),
    algs: Iterable[str] = (),
    resource_metadata: str | None = None,
) -> str:
    """Render a ``DPoP`` challenge (RFC 9449 §7.1): the parameters of the ``Bearer`` one, and
    ``algs``, the proof algorithms the server accepts; values that are not legal are left out.

    >>> render_dpop_challenge(error="invalid_dpop_proof", algs=["ES256", "PS256"])
    'DPoP error="invalid_dpop_proof", algs="ES256 PS256"'
    """
    bearer = render_challenge(realm=realm, error=error, description=description, scope=scope)
    params = [bearer.removeprefix("Bearer ")] if bearer != "Bearer" else []
    # RFC 9728 §5.1: the metadata parameter goes with any scheme.
    if resource_metadata is not None and is_quotable(resource_metadata):
        params.append(f'resource_metadata="{resource_metadata}"')
    tokens = [alg for alg in _scope_list(algs) if is_scope_token(alg)]  # token names, like scopes
    if tokens:
        params.append(f'algs="{" ".join(tokens)}"')
    return "DPoP " + ", ".join(params) if params else "DPoP"
