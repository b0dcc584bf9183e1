"""Protect an MCP server (the ``mcp`` SDK's ``MCPServer``, or ``fastmcp``) over streamable HTTP.

>>> shield = MCPShield(issuer="https://as.example.com",              # doctest: +SKIP
...                    resource="https://mcp.example.com/mcp", scopes=["mcp"])
>>> server = MCPServer("items")
>>> @shield.tool(server, "items:write")
... async def delete_item(item_id: str) -> str: ...
>>> app = shield.protect(server.streamable_http_app())

MCP's authorization rules (2025-06-18 and later), held by wrapping the SDK's ASGI app rather
than through the SDK's ``TokenVerifier`` protocol, whose ``None`` cannot say "the issuer is
down, retry" (``503``) nor "this tool needs another scope" (``403``):

- the server's RFC 9728 metadata at ``/.well-known/oauth-protected-resource`` + the MCP path,
  naming the issuer; every challenge carries its URL (``resource_metadata``), and ``401``
  challenges the scopes every request needs;
- a token is accepted only if its audience is the server's canonical URI (RFC 8707): the
  validator's audience is the ``resource``;
- a ``tools/call`` of a tool whose scopes the token lacks is ``403 insufficient_scope``
  naming every scope the call needs, so the client can step up;
- an unreachable issuer is ``503`` with ``Retry-After``, never ``401``;
- the SDK's ``get_access_token()`` and its per-session principal binding see the caller, from
  an SDK ``AccessToken`` whose ``token`` is the token's fingerprint: the raw token is never
  handed to tools, so it cannot be passed through to another API.

Written on :mod:`oauth_shield.asgi` and :mod:`oauth_shield.http`; needs ``oauth-shield[mcp]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

try:
    from mcp.server.auth.middleware.auth_context import auth_context_var
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken as SDKAccessToken
    from starlette.authentication import AuthCredentials
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "oauth_shield.mcp needs the MCP SDK: pip install 'oauth-shield[mcp]'"
    ) from error

from oauth_shield import (
    AccessToken,
    ConfigurationError,
    InsufficientScopeError,
    InvalidRequestError,
    ProtectedResource,
    Reason,
    TokenValidator,
)
from oauth_shield.asgi import ASGIApp, BearerAuthMiddleware, Message, Receive, Scope, Send
from oauth_shield.http import ErrorResponse, required_scopes

__all__ = ["MCPShield"]

Function = TypeVar("Function", bound=Callable[..., Any])

#: JSON-RPC bodies read to find the tools a request calls; the SDK's own limit is 4 MiB
#: (``DEFAULT_MAX_REQUEST_BODY_SIZE``), and a larger body is refused before the SDK sees it.
MAX_RPC_BODY = 4 * 1024 * 1024


class MCPShield:
    """Bearer-token protection for an MCP server's HTTP app.

    :param validator: a :class:`~oauth_shield.TokenValidator` whose audience includes
        ``resource``; or give its settings as keyword arguments (``issuer=``, ...), and the
        audience is the resource.
    :param resource: the server's canonical URI (``https://host/mcp``), or a
        :class:`~oauth_shield.ProtectedResource` describing it.
    :param scopes: scopes every MCP request needs.
    :param tool_scopes: more scopes, by tool name, that a ``tools/call`` of it needs.
    :param public: paths of the app served without a token (exact, or ``/prefix/*``).
    """

    def __init__(
        self,
        validator: TokenValidator | None = None,
        *,
        resource: str | ProtectedResource,
        scopes: Iterable[str] = (),
        tool_scopes: Mapping[str, Iterable[str]] | None = None,
        public: Iterable[str] = (),
        realm: str | None = None,
        check_at_startup: bool = False,
        **options: Any,
    ) -> None:
        described = resource if isinstance(resource, ProtectedResource) else None
        uri = described.resource if described else resource
        if not isinstance(uri, str):
            raise ConfigurationError("resource must name the server's canonical URI")
        if validator is None:
            validator = TokenValidator(audience=uri, **options)
        elif options:
            raise ConfigurationError("give a validator or its settings, not both")
        if uri not in validator.settings.audience:
            raise ConfigurationError(
                "the validator's audience must include the resource (RFC 8707: tokens for "
                "this MCP server carry its URI as their audience)"
            )
        self.validator = validator
        self.scopes = required_scopes(scopes)
        self._tools: dict[str, frozenset[str]] = {}
        for name, needed in (tool_scopes or {}).items():
            self.require(name, *required_scopes(needed))
        self._described = described or ProtectedResource(resource=uri)
        self._public = tuple(public)
        self._realm = realm
        self._check_at_startup = check_at_startup

    def require(self, tool: str, *scopes: str) -> None:
        """Make a call of ``tool`` need ``scopes`` too (on top of :attr:`scopes`)."""
        self._tools[tool] = self._tools.get(tool, frozenset()) | required_scopes(scopes)

    def tool(
        self, server: Any, *scopes: str, **tool_options: Any
    ) -> Callable[[Function], Function]:
        """Register a function as a tool of ``server`` (``MCPServer`` or ``FastMCP``, through
        its ``tool()`` decorator, given ``tool_options``) whose calls need ``scopes``.

        The tool's name is decided here, once, for the SDK and for the check, so the two can
        never disagree (``name=``, or the function's name, as both SDKs default to).
        """

        def decorator(function: Function) -> Function:
            name = tool_options.get("name") or function.__name__
            self.require(name, *scopes)
            server.tool(**{**tool_options, "name": name})(function)
            return function

        return decorator

    def protect(self, app: ASGIApp) -> BearerAuthMiddleware:
        """``app`` (the SDK's ``streamable_http_app()``, or fastmcp's ``http_app()``) behind
        the bearer-token check, serving the RFC 9728 metadata."""
        tools = dict(self._tools)
        uri = str(self._described.resource)  # checked in __init__
        advertised = {*self._described.scopes_supported, *self.scopes}
        for needed in tools.values():
            advertised |= needed
        resource = replace(self._described, scopes_supported=sorted(advertised))
        bridge = _Bridge(app, uri, self.scopes, tools)
        middleware = BearerAuthMiddleware(
            bridge,
            validator=self.validator,
            scopes=self.scopes,
            public=self._public,
            realm=self._realm,
            check_at_startup=self._check_at_startup,
            resource=resource,
        )
        bridge.refuse = middleware.guard.refusal
        return middleware


class _Bridge:
    """Between the bearer check and the SDK: the tool-scope check, and the caller where the
    SDK looks for it (``scope["user"]``, ``scope["auth"]``, ``auth_context_var``)."""

    def __init__(
        self,
        app: ASGIApp,
        resource: str,
        scopes: frozenset[str],
        tools: dict[str, frozenset[str]],
    ) -> None:
        self.app = app
        self.resource = resource
        self.scopes = scopes
        self.tools = tools
        self.refuse: Callable[..., ErrorResponse] = _unset

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = scope.get("auth")
        if scope["type"] != "http" or not isinstance(token, AccessToken):
            await self.app(scope, receive, send)
            return
        if self.tools and scope["method"] == "POST":
            needed, receive = await self._needed(receive)
            if needed is None:
                await self._answer(send, InvalidRequestError(Reason.MALFORMED_REQUEST), ())
                return
            if not needed <= token.scopes:
                error = InsufficientScopeError(needed | self.scopes)
                if token.dpop_bound:  # the step-up challenge is the DPoP one (RFC 9449 §7.1)
                    error.scheme = "DPoP"
                await self._answer(send, error, needed | self.scopes)
                return
        user = AuthenticatedUser(_sdk_token(token, self.resource))
        inner = {**scope, "user": user, "auth": AuthCredentials(sorted(token.scopes))}
        reset = auth_context_var.set(user)
        try:
            await self.app(inner, receive, send)
        finally:
            auth_context_var.reset(reset)

    async def _needed(self, receive: Receive) -> tuple[frozenset[str] | None, Receive]:
        """The scopes the tools this JSON-RPC body calls need (``None``: a body that cannot be
        read, which no tool call may hide in), and a ``receive`` that replays it."""
        buffered: list[Message] = []
        size, more = 0, True
        while more and size <= MAX_RPC_BODY:
            message = await receive()
            buffered.append(message)
            size += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        if more or size > MAX_RPC_BODY:
            return None, replay
        try:
            body = json.loads(b"".join(m.get("body", b"") for m in buffered))
        except (ValueError, RecursionError):  # "[" * 50_000 is under the cap, and too deep
            return None, replay
        needed: set[str] = set()
        for message in body if isinstance(body, list) else [body]:
            if not isinstance(message, dict) or message.get("method") != "tools/call":
                continue
            params = message.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            if not isinstance(name, str):
                return None, replay
            needed |= self.tools.get(name, frozenset())
        return frozenset(needed), replay

    async def _answer(self, send: Send, error: Any, scopes: Iterable[str]) -> None:
        status, headers, body = self.refuse(error, scopes)
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def _unset(*args: Any) -> ErrorResponse:
    raise RuntimeError("protect() sets how a refusal is answered")


def _sdk_token(token: AccessToken, resource: str) -> SDKAccessToken:
    """The caller as the SDK describes it: ``(client_id, iss, sub)`` binds a session to its
    principal; ``token`` holds the fingerprint, never the token."""
    expires = token.expires_at
    issuer = token.claims.get("iss")
    return SDKAccessToken(
        token=token.fingerprint,
        client_id=token.client_id or "",
        scopes=sorted(token.scopes),
        expires_at=int(expires.timestamp()) if expires is not None else None,
        resource=resource,  # the validator checked that the audience names it
        subject=token.subject,
        claims={"iss": issuer} if isinstance(issuer, str) else None,
    )
