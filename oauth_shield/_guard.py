"""What every adapter does with a request, written once, framework-free.

An adapter reads what its request presents into :class:`RequestCredentials`, asks a
:class:`Guard` for the :class:`Identity` behind it, and on :class:`~oauth_shield.AuthError`
sends :meth:`Guard.refusal`. The guard holds the validator, the adapter settings and the API
keys; it holds no per-request state, so one guard serves every request of an application.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from time import perf_counter
from typing import Any, NamedTuple

from ._bearer import Credentials, ErrorResponse, credentials, error_response
from ._claims import required_scopes
from ._config import DPOP_MODES, DPoPMode
from ._dpop import DPoPRequest
from ._errors import (
    AuthError,
    ConfigurationError,
    InvalidDPoPProofError,
    MissingTokenError,
    Reason,
)
from ._health import HTTP_STATUS
from ._options import PREFIX, AdapterSettings, boolean_or_text
from ._resource import MetadataResponse, ProtectedResource
from ._secret import Secret
from ._sync import SyncTokenValidator
from ._telemetry import API_KEY, Telemetry
from ._token import AccessToken
from ._validator import TokenValidator
from .apikeys import APIKeyStore


class RequestTarget(NamedTuple):
    """Where a request was sent, as the server saw it: what DPoP's ``htu`` is compared with
    once the public URL is rebuilt (``DPoPSettings.request_url``, docs/dpop.md)."""

    scheme: str
    """The connection's scheme (``http``/``https``)."""
    host: str | None
    """The ``Host`` header (HTTP/2 and 3: ``:authority``)."""
    path: str | bytes
    """The request target's path as it arrived, still percent-encoded (ASGI ``raw_path``,
    WSGI ``RAW_URI``/``REQUEST_URI``); a query is dropped."""
    root_path: str = ""
    """The mount prefix (ASGI ``root_path``, WSGI ``SCRIPT_NAME``)."""
    headers: Iterable[tuple[str | bytes, str | bytes]] = ()
    """The request's headers, read only for trusted forwarded headers (``dpop_forwarded``)."""

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> RequestTarget:
        """Where an ASGI HTTP or websocket request was sent (a websocket's URL is compared
        as the ``http(s)`` URL of its upgrade request)."""
        headers = scope["headers"]
        host = next((value.decode("latin-1") for name, value in headers if name == b"host"), None)
        scheme = str(scope.get("scheme", "http"))
        return cls(
            _WEBSOCKET_SCHEMES.get(scheme, scheme),
            host,
            scope.get("raw_path") or scope["path"].encode("utf-8"),
            scope.get("root_path", ""),
            headers,
        )


_WEBSOCKET_SCHEMES = {"ws": "http", "wss": "https"}


class RequestCredentials(NamedTuple):
    """Everything a request presents that could authenticate it, as the adapter found it
    (a named tuple: built for every protected request, so as cheap to make as can be).

    Give every value, not just the first: two ``Authorization`` headers, or a token in the
    header and one in the query, are one credential too many (RFC 6750 §3.1), even where the
    second place is not enabled. A WSGI adapter splits a folded ``Authorization`` value with
    :func:`~oauth_shield.http.split_folded` first.
    """

    authorization: Sequence[str] = ()
    """Every ``Authorization`` header value."""
    api_keys: Sequence[str] = ()
    """Every value of the API-key header (``AdapterSettings.api_key_header``)."""
    query: Sequence[str] = ()
    """Every ``access_token`` value in the query string."""
    form: Sequence[str] = ()
    """Every ``access_token`` value in a form body (see ``should_scan_form``)."""
    requester: str | None = None
    """Who sent the request (the client's address), so that one client cannot spend the
    introspection budget of all the others; never logged."""
    proofs: Sequence[str] = ()
    """Every ``DPoP`` header value (RFC 9449 §4.1); read only when DPoP is on."""
    method: str = "GET"
    """The request's method (a proof's ``htm``)."""
    target: RequestTarget | None = None
    """Where the request was sent (a proof's ``htu``); needed only with ``proofs``."""


class HealthResponse(NamedTuple):
    """The status, headers and JSON body of a health probe's answer."""

    status: int
    headers: dict[str, str]
    body: bytes


#: Headers of every health answer: a probe must see the state now, never a cached one.
HEALTH_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def health_response(document: Mapping[str, Any]) -> HealthResponse:
    """A health document as an HTTP answer: 503 when ``failing``, else 200."""
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return HealthResponse(
        HTTP_STATUS.get(document.get("status", ""), 503), dict(HEALTH_HEADERS), body
    )


class Identity(NamedTuple):
    """Who a request is: the validated token, and the raw bearer token behind a
    :class:`~oauth_shield.Secret` (``None`` for an API key), for token exchange only."""

    token: AccessToken
    bearer: Secret | None


_NO_HEADERS: Mapping[str, str] = {}

#: The configuration key naming the resource (a URL, or a boolean).
RESOURCE_KEY = PREFIX + "RESOURCE"

#: What adapters accept as ``resource``: a description, its identifier URL, ``True`` for
#: one described from the validator (its audience, its issuer), or nothing.
ResourceOption = ProtectedResource | str | bool | None


class Guard:
    """One application's validator, adapter settings, API keys and RFC 9728 description,
    used per request.

    :param validator: a :class:`~oauth_shield.TokenValidator` (use :meth:`authenticate`) or a
        :class:`~oauth_shield.SyncTokenValidator` (use :meth:`authenticate_sync`).
    :param resource: describe the API (RFC 9728): every refusal then names the metadata URL,
        and the adapter serves the document at :attr:`ProtectedResource.metadata_path`.
    :param dpop: the DPoP policy of this guard's routes, if not the validator's (see
        :meth:`policy`).
    """

    def __init__(
        self,
        validator: TokenValidator | SyncTokenValidator,
        settings: AdapterSettings | None = None,
        api_keys: APIKeyStore | None = None,
        resource: ResourceOption = None,
        dpop: DPoPMode | None = None,
    ) -> None:
        self.validator = validator
        self.settings = settings or AdapterSettings.from_config({}, validator)
        self.api_keys = api_keys
        self.dpop: DPoPMode = validator.dpop_mode
        self.dpop = self.policy(dpop)
        """The DPoP policy of routes that do not set their own: ``dpop``, or the validator's."""
        self._dpop_algs = tuple(sorted(validator.dpop_settings.algorithms))
        self.resource = self._described(resource)
        self._metadata_url = None if self.resource is None else self.resource.metadata_url
        self._challenge_scope = self.resource is not None and self.resource.challenge_scope

    def _described(self, resource: ResourceOption) -> ProtectedResource | None:
        if resource is None or resource is False:
            return None
        if resource is True:
            resource = ProtectedResource()
        elif isinstance(resource, str):
            resource = ProtectedResource(resource=resource)
        elif not isinstance(resource, ProtectedResource):
            raise ConfigurationError("resource must be a ProtectedResource, a URL or True")
        methods = ["header"]
        if self.settings.allow_form_token:
            methods.append("body")
        if self.settings.allow_query_token:
            methods.append("query")
        validator_settings = self.validator.settings
        return resource.complete(
            issuer=validator_settings.issuer_rules.concrete(validator_settings.issuers),
            audience=validator_settings.audience,
            bearer_methods=methods,
            dpop_algs=None if self.dpop == "disabled" else self._dpop_algs,
            dpop_required=self.dpop == "required",
        )

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        validator: TokenValidator | SyncTokenValidator,
        api_keys: APIKeyStore | None = None,
        **explicit: Any,
    ) -> Guard:
        """A guard whose settings come from ``explicit`` arguments (when not ``None``), else
        ``OAUTH_SHIELD_*`` keys of ``config``, and whose API keys come from ``api_keys`` or
        ``OAUTH_SHIELD_API_KEYS`` / ``_FILE``; ``resource`` (an explicit argument) or
        ``OAUTH_SHIELD_RESOURCE`` (a URL, or ``true`` for the audience) describes the API."""
        resource = explicit.pop("resource", None)
        if resource is None:
            resource = boolean_or_text(config.get(RESOURCE_KEY), RESOURCE_KEY)
        settings = AdapterSettings.from_config(config, validator, **explicit)
        keys = api_keys if api_keys is not None else APIKeyStore.configured(config)
        return cls(validator, settings, keys, resource)

    def __repr__(self) -> str:
        return f"Guard({self.validator!r}, api_keys={self.api_keys!r})"

    def policy(self, dpop: DPoPMode | None = None) -> DPoPMode:
        """A route's DPoP policy: its own (``dpop``), checked against the validator's, or the
        validator's. A route may narrow ``"allowed"`` to ``"required"`` or ``"disabled"``;
        it cannot accept what the validator refuses (:class:`ConfigurationError`)."""
        if dpop is None or dpop == self.dpop:
            return self.dpop
        if dpop not in DPOP_MODES:
            raise ConfigurationError("dpop must be 'disabled', 'allowed' or 'required'")
        if self.dpop != "allowed":
            raise ConfigurationError(
                f"a route cannot set dpop={dpop!r} when the validator's dpop is "
                f"{self.dpop!r}: set the validator's dpop to 'allowed'",
                mentions=("dpop",),
            )
        return dpop

    def credentials(
        self,
        request: RequestCredentials,
        *,
        api_keys: bool = False,
        dpop: DPoPMode | None = None,
    ) -> Credentials:
        """The request's one credential, or the :class:`AuthError` that answers it.

        :param api_keys: whether this route accepts an API key instead of a bearer token.
        :param dpop: the route's DPoP policy (see :meth:`policy`).
        """
        settings = self.settings
        return credentials(
            request.authorization,
            api_keys=request.api_keys,
            accept_api_keys=api_keys and self.api_keys is not None,
            query=request.query,
            form=request.form,
            allow_query=settings.allow_query_token,
            allow_form=settings.allow_form_token,
            max_size=self.validator.settings.max_token_size,
            dpop=self.dpop if dpop is None else dpop,
        )

    async def authenticate(
        self,
        request: RequestCredentials,
        scopes: Iterable[str] | str | None = None,
        *,
        api_keys: bool = False,
        dpop: DPoPMode | None = None,
    ) -> Identity:
        """Validate the request's credential and require every one of ``scopes``; raises
        :class:`AuthError` (only) when the request is not acceptable.

        :param dpop: the route's DPoP policy, if it sets one (see :meth:`policy`).
        """
        found = self.credentials(request, api_keys=api_keys, dpop=dpop)
        if found.kind == "api_key":
            return self._api_key(found.value, scopes)
        validator = self.validator
        if not isinstance(validator, TokenValidator):
            raise TypeError("authenticate() needs a TokenValidator: use authenticate_sync()")
        token = await validator.validate(
            found.value, scopes, requester=request.requester, dpop=self._dpop(found, request, dpop)
        )
        return Identity(token, Secret(found.value))

    def authenticate_sync(
        self,
        request: RequestCredentials,
        scopes: Iterable[str] | str | None = None,
        *,
        api_keys: bool = False,
        dpop: DPoPMode | None = None,
    ) -> Identity:
        """:meth:`authenticate` for a :class:`~oauth_shield.SyncTokenValidator`."""
        found = self.credentials(request, api_keys=api_keys, dpop=dpop)
        if found.kind == "api_key":
            return self._api_key(found.value, scopes)
        validator = self.validator
        if not isinstance(validator, SyncTokenValidator):
            raise TypeError("authenticate_sync() needs a SyncTokenValidator: use authenticate()")
        token = validator.validate(
            found.value, scopes, requester=request.requester, dpop=self._dpop(found, request, dpop)
        )
        return Identity(token, Secret(found.value))

    def _dpop(
        self, found: Credentials, request: RequestCredentials, dpop: DPoPMode | None
    ) -> DPoPRequest | None:
        """What the validator needs for a ``DPoP`` credential; a proof sent with a bearer
        token is refused where DPoP is on (where it is off, ``DPoP`` headers are not read)."""
        if found.kind != "dpop":
            if request.proofs and (self.dpop if dpop is None else dpop) != "disabled":
                raise InvalidDPoPProofError(Reason.DPOP_UNEXPECTED)
            return None
        target = request.target
        url = None
        if target is not None:
            url = self.validator.dpop_settings.request_url(
                scheme=target.scheme,
                host=target.host,
                path=target.path,
                root_path=target.root_path,
                headers=target.headers,
            )
        return DPoPRequest(request.proofs, request.method, url)

    def response_headers(self, identity: Identity) -> Mapping[str, str]:
        """Headers to add to the response of an accepted request: the current ``DPoP-Nonce``
        after a DPoP request when server nonces are on (RFC 9449 §8.2: the client uses it in
        its next proof, so it never meets the ``use_dpop_nonce`` round trip), else none."""
        if identity.token.jkt is not None:
            nonce = self.validator.dpop_nonce()
            if nonce is not None:
                return {"DPoP-Nonce": nonce}
        return _NO_HEADERS

    def _api_key(self, key: str, scopes: Iterable[str] | str | None) -> Identity:
        if self.api_keys is None:  # credentials() returns a key only when there is a store
            raise MissingTokenError(Reason.OTHER_SCHEME)
        telemetry = self._telemetry  # events and metrics, as for a token (scheme api_key)
        sink = telemetry.sink
        started = 0.0 if sink is None else perf_counter()
        try:
            token = self.api_keys.validate(key, required_scopes(scopes))
        except AuthError as error:
            telemetry.refused(error, key, API_KEY, started, False)
            raise
        if sink is not None:
            sink.accepted(token, API_KEY, "opaque", started, False)
        return Identity(token, None)

    @property
    def _telemetry(self) -> Telemetry:
        validator = self.validator
        inner = validator._validator if isinstance(validator, SyncTokenValidator) else validator
        return inner._telemetry

    async def health(self) -> HealthResponse:
        """The answer to a health probe: the validator's health document as JSON, 503 when
        its ``status`` is ``failing`` (200 for ``ok`` and ``degraded``), never cached. Serve
        it without authentication: it holds no secret."""
        validator = self.validator
        if isinstance(validator, SyncTokenValidator):
            return health_response(validator.health())
        return health_response(await validator.health())

    def health_sync(self) -> HealthResponse:
        """:meth:`health` for a :class:`~oauth_shield.SyncTokenValidator`."""
        validator = self.validator
        if not isinstance(validator, SyncTokenValidator):
            raise TypeError("health_sync() needs a SyncTokenValidator: use health()")
        return health_response(validator.health())

    def refusal(
        self,
        error: AuthError,
        scopes: Iterable[str] | str | None = None,
        *,
        dpop: DPoPMode | None = None,
    ) -> ErrorResponse:
        """The status, headers and JSON body that answer ``error`` (RFC 6750 §3).

        With a :attr:`resource`, the challenge names its metadata (RFC 9728 §5.1) and, on a
        ``401``, the ``scopes`` the route requires (unless ``challenge_scope`` is off). Where
        the route accepts DPoP (``dpop``, else the validator's policy), a ``DPoP`` challenge
        with the proof algorithms follows the ``Bearer`` one, or replaces it when DPoP is
        required (RFC 9449 §7.1).
        """
        mode = self.dpop if dpop is None else dpop
        algs = None if mode == "disabled" else self._dpop_algs
        bearer = mode != "required"
        if self._metadata_url is None:
            return error_response(error, self.settings.realm, dpop_algs=algs, bearer=bearer)
        return error_response(
            error,
            self.settings.realm,
            scope=sorted(required_scopes(scopes)) if self._challenge_scope else (),
            resource_metadata=self._metadata_url,
            dpop_algs=algs,
            bearer=bearer,
        )

    def metadata(self) -> MetadataResponse | None:
        """The answer to a request for :attr:`ProtectedResource.metadata_path`, or ``None``
        when this guard describes no resource."""
        return None if self.resource is None else self.resource.response()
