"""Protect FastAPI routes with a ``Security`` dependency, with an OpenAPI security scheme.

>>> shield = FastAPIShield(issuer="https://as.example.com",            # doctest: +SKIP
...                        audience="https://api.example.com")
>>> app = shield.init_app(FastAPI())
>>> @app.get("/items")
... async def items(token: AccessToken = Security(shield, scopes=["read"])):
...     return {"sub": token.subject}

``Security(shield, scopes=[...])`` requires a valid token with every scope, together with the
scopes of the dependencies around it (``SecurityScopes``); ``Depends(shield)`` any valid token;
``shield.optional`` lets a request without credentials through as ``None``. Refusals are the
RFC 6750 answers of every other adapter (:mod:`oauth_shield.http`), ``400`` for two
credentials included. ``init_app`` adds the refusal handler, the validator's start and close
to the app's lifespan and, with ``resource``, the RFC 9728 metadata route. The OpenAPI
document gets an OAuth 2.0 security scheme naming the issuer's endpoints (from its metadata,
once fetched, or as configured) and each route's scopes, so Swagger's "Authorize" works.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

try:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.openapi.models import HTTPBearer, OAuth2, OAuthFlows, OpenIdConnect
    from fastapi.openapi.models import SecurityBase as SecuritySchemeModel
    from fastapi.responses import Response
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "oauth_shield.fastapi needs FastAPI: pip install 'oauth-shield[fastapi]'"
    ) from error

from oauth_shield import (
    AccessToken,
    AuthError,
    ConfigurationError,
    IssuerUnavailableError,
    MissingTokenError,
    Secret,
    TokenValidator,
)
from oauth_shield.apikeys import APIKeyStore
from oauth_shield.http import (
    DPoPMode,
    Guard,
    RequestCredentials,
    RequestTarget,
    ResourceOption,
    form_tokens,
    should_scan_form,
)

__all__ = ["FastAPIShield", "Refusal"]

logger = logging.getLogger("oauth_shield.adapters")

#: The body's headers, as should_scan_form asks for them.
_FRAMING = {b"content-type": "Content-Type", b"content-length": "Content-Length"}
#: The name of the security scheme in the OpenAPI document.
DEFAULT_SCHEME_NAME = "oauth_shield"


class Refusal(HTTPException):
    """A refused request, answered by the handler ``init_app`` installs with the same status,
    headers and JSON body as every other adapter. Without that handler, FastAPI's own
    ``HTTPException`` handler still sends the status and the challenge."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(status, headers=headers)
        self.body = body


class FastAPIShield(SecurityBase):
    """A FastAPI dependency that validates the request's bearer token.

    :param validator: the :class:`~oauth_shield.TokenValidator`; or give its settings as
        keyword arguments (``issuer=``, ``audience=``, ...), or in ``OAUTH_SHIELD_*``
        environment variables.
    :param auto_error: refuse a request without credentials (``False``: the dependency
        gives ``None``; a bad credential is still refused).
    :param resource: describe the API (RFC 9728): a ``ProtectedResource``, its URL, or
        ``True`` for the audience; ``init_app`` serves its metadata.
    :param token_url: the token endpoint shown in OpenAPI (default: the issuer's metadata).
    :param authorization_url: the authorization endpoint shown in OpenAPI (the same).
    :param scopes: scopes for Swagger's "Authorize" dialog, with a description each.
    """

    def __init__(
        self,
        validator: TokenValidator | None = None,
        *,
        auto_error: bool = True,
        realm: str | None = None,
        allow_query_token: bool | None = None,
        allow_form_token: bool | None = None,
        api_keys: APIKeyStore | None = None,
        api_key_header: str | None = None,
        check_at_startup: bool | None = None,
        resource: ResourceOption = None,
        scheme_name: str = DEFAULT_SCHEME_NAME,
        token_url: str | None = None,
        authorization_url: str | None = None,
        scopes: Mapping[str, str] | Iterable[str] = (),
        guard: Guard | None = None,
        **options: Any,
    ) -> None:
        if guard is None:
            from_env = validator is None
            if validator is None:
                validator = TokenValidator.from_env(**options)
            elif options:
                raise ConfigurationError("give a validator or its settings, not both")
            if not isinstance(validator, TokenValidator):
                raise ConfigurationError("validator must be a TokenValidator")
            guard = Guard.from_config(
                os.environ if from_env else {},
                validator,
                api_keys,
                resource=resource,
                realm=realm,
                allow_query_token=allow_query_token,
                allow_form_token=allow_form_token,
                api_key_header=api_key_header,
                check_at_startup=check_at_startup,
            )
        self.guard = guard
        self.validator: TokenValidator = guard.validator  # type: ignore[assignment]
        self.dpop: DPoPMode = guard.dpop
        """This dependency's DPoP policy (see :meth:`with_dpop`)."""
        self.auto_error = auto_error
        self.scheme_name = scheme_name
        self._urls = {"tokenUrl": token_url, "authorizationUrl": authorization_url}
        self._scopes = dict(scopes) if isinstance(scopes, Mapping) else dict.fromkeys(scopes, "")
        self._metadata: Mapping[str, Any] = {}
        self._apps: list[FastAPI] = []

    @property
    def optional(self) -> FastAPIShield:
        """The same shield, giving ``None`` for a request without credentials."""
        return self._variant(auto_error=False)

    @property
    def dpop_required(self) -> FastAPIShield:
        """The same shield for routes that accept DPoP-bound tokens only (RFC 9449), where
        the validator's ``dpop`` is ``"allowed"``: ``Security(shield.dpop_required, ...)``."""
        return self.with_dpop("required")

    def with_dpop(self, dpop: DPoPMode) -> FastAPIShield:
        """The same shield with another DPoP policy (``"required"`` or ``"disabled"`` where
        the validator's is ``"allowed"``; see ``Guard.policy``)."""
        return self._variant(dpop=dpop)

    def _variant(
        self, *, auto_error: bool | None = None, dpop: DPoPMode | None = None
    ) -> FastAPIShield:
        variant = type(self)(
            auto_error=self.auto_error if auto_error is None else auto_error,
            scheme_name=self.scheme_name,
            guard=self.guard,
        )
        variant.dpop = self.guard.policy(self.dpop if dpop is None else dpop)
        return variant

    async def __call__(
        self, request: Request, security_scopes: SecurityScopes, response: Response
    ) -> AccessToken | None:
        required = security_scopes.scopes
        guard, dpop = self.guard, self.dpop
        try:
            presented = await _presented(request, guard)
            identity = await guard.authenticate(presented, required, dpop=dpop)
        except MissingTokenError as error:
            if not self.auto_error:
                return None
            raise _refusal(guard, error, required, dpop) from None
        except AuthError as error:
            raise _refusal(guard, error, required, dpop) from None
        state = request.scope.setdefault("state", {})  # request.state, without building it
        state["access_token"], state["bearer"] = identity
        extra = guard.response_headers(identity)
        if extra:  # FastAPI copies them to the route's response
            response.headers.update(extra)
        return identity.token

    async def bearer(self, request: Request) -> Secret:
        """A dependency giving the raw bearer token of a request this shield accepted, as a
        :class:`~oauth_shield.Secret`, for token exchange; declare it after the shield."""
        found = getattr(request.state, "bearer", None)
        if not isinstance(found, Secret):
            raise RuntimeError("no bearer token: declare the shield dependency before this one")
        return found

    # --- the application ---------------------------------------------------------------

    def init_app(self, app: FastAPI) -> FastAPI:
        """Install the refusal handler, the validator's lifespan and the RFC 9728 route on
        ``app``; returns ``app``."""
        app.add_exception_handler(Refusal, _answer)  # type: ignore[arg-type]
        resource = self.guard.resource
        if resource is not None:
            answer = self.guard.metadata

            def protected_resource_metadata() -> Response:
                status, headers, body = answer()  # type: ignore[misc]  # resource is set
                return Response(body, status, headers)

            app.add_api_route(
                resource.metadata_path,
                protected_resource_metadata,
                methods=["GET"],
                include_in_schema=False,
            )
        app.router.lifespan_context = self._lifespan(app.router.lifespan_context)
        self._apps.append(app)
        return app

    def health_route(self, app: FastAPI, path: str = "/healthz") -> FastAPI:
        """Serve the validator's health document at ``path`` without a token: 200 when
        ``ok`` or ``degraded``, 503 when ``failing``, never cached (docs/operations.md);
        returns ``app``."""
        guard = self.guard

        async def health() -> Response:
            status, headers, body = await guard.health()
            return Response(body, status, headers)

        app.add_api_route(path, health, methods=["GET"], include_in_schema=False)
        return app

    def _lifespan(self, inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            validator = self.validator
            if self.guard.settings.check_at_startup:
                await validator.check()
            else:
                await validator.start()
            task = asyncio.create_task(self._discover())
            try:
                async with inner(app) as state:
                    yield state
            finally:
                task.cancel()
                await validator.aclose()

        return lifespan

    async def _discover(self) -> None:
        """The issuer's endpoints and scopes for the OpenAPI document, once; FastAPI then
        renders the document again."""
        try:
            self._metadata = await self.validator.metadata()
        except (ConfigurationError, IssuerUnavailableError) as error:
            logger.warning("OpenAPI shows no token endpoint: %s", error)
            return
        for app in self._apps:
            app.openapi_schema = None

    @property
    def model(self) -> SecuritySchemeModel:
        """The OpenAPI security scheme: OAuth 2.0 with the issuer's flows, or OpenID Connect
        discovery until the issuer's metadata is known."""
        metadata = self._metadata
        token_url = self._urls["tokenUrl"] or metadata.get("token_endpoint")
        authorization_url = self._urls["authorizationUrl"] or metadata.get("authorization_endpoint")
        if not isinstance(token_url, str):
            # The first issuer with metadata of its own; a {tenantid} template has none, and
            # with only templates Swagger gets a plain bearer-token field (set token_url).
            plain = [i for i in self.validator.settings.issuers if "{tenantid}" not in i]
            if not plain:
                return HTTPBearer(bearerFormat="JWT")
            discovery = plain[0].rstrip("/") + "/.well-known/openid-configuration"
            return OpenIdConnect(openIdConnectUrl=discovery)
        scopes = dict(self._scopes)
        resource = self.guard.resource
        for scope in resource.scopes_supported if resource else ():
            scopes.setdefault(scope, "")
        flows: dict[str, Any] = {}
        grants = metadata.get("grant_types_supported", ["authorization_code", "client_credentials"])
        if isinstance(authorization_url, str) and "authorization_code" in grants:
            flows["authorizationCode"] = {
                "authorizationUrl": authorization_url,
                "tokenUrl": token_url,
                "scopes": scopes,
            }
        if "client_credentials" in grants or not flows:
            flows["clientCredentials"] = {"tokenUrl": token_url, "scopes": scopes}
        return OAuth2(flows=OAuthFlows.model_validate(flows))

    @model.setter
    def model(self, value: SecuritySchemeModel) -> None:  # pragma: no cover - SecurityBase API
        raise AttributeError("the security scheme follows the issuer: set token_url instead")


def _refusal(guard: Guard, error: AuthError, required: Iterable[str], dpop: DPoPMode) -> Refusal:
    status, headers, body = guard.refusal(error, required, dpop=dpop)
    return Refusal(status, headers, body)


async def _answer(request: Request, refusal: Refusal) -> Response:
    return Response(refusal.body, refusal.status_code, refusal.headers)


async def _presented(request: Request, guard: Guard) -> RequestCredentials:
    """What the request presents, read from the ASGI scope in one pass over the headers (the
    per-request cost of the dependency); the body stays readable for the route."""
    scope = request.scope
    api_key_header = guard.settings.api_key_header.lower().encode("latin-1")
    authorization: list[str] = []
    api_keys: list[str] = []
    proofs: list[str] = []
    framing: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization.append(value.decode("latin-1"))
        elif name == api_key_header:
            api_keys.append(value.decode("latin-1"))
        elif name == b"dpop":
            proofs.append(value.decode("latin-1"))
        elif name in _FRAMING:
            framing[_FRAMING[name]] = value.decode("latin-1")
    form: list[str] = []
    if should_scan_form(scope["method"], framing.get):
        try:
            form = form_tokens((await request.body()).decode("latin-1"))
        except RuntimeError:  # FastAPI parsed the form before the dependencies ran
            found = (await request.form()).getlist("access_token")
            form = [value for value in found if isinstance(value, str)]
    query = scope.get("query_string", b"")
    client = scope.get("client")
    return RequestCredentials(
        authorization=authorization,
        api_keys=api_keys,
        query=request.query_params.getlist("access_token") if query else [],
        form=form,
        requester=client[0] if client else None,
        proofs=proofs,
        method=scope["method"],
        target=RequestTarget.from_asgi(scope) if proofs else None,
    )
