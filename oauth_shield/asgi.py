"""Protect any ASGI application (Starlette, FastAPI, Quart, ...) with a bearer-token check.

>>> app = BearerAuthMiddleware(app, validator=validator,               # doctest: +SKIP
...                            scopes={"/admin": ["admin"], "/api": ["read"]},
...                            public=["/health", "/docs/*"])

Pure ASGI, written on :mod:`oauth_shield.http` alone: no framework is imported. What a path
requires is decided on every path the application could route it on (``root_path`` removed,
absolute-form targets and repeated slashes read as the frameworks read them; see
:class:`~oauth_shield.http.PathRules`), so neither a mount nor the form of the request target
can carry a request past the check.

The application finds the validated :class:`~oauth_shield.AccessToken` where Starlette looks:
``scope["auth"]`` (``request.auth``, with ``.scopes`` for ``@requires``) and ``scope["user"]``
(``request.user``, a :class:`TokenUser`); also ``scope["state"]["access_token"]``. The raw
bearer token, for RFC 8693 token exchange only, is a :class:`~oauth_shield.Secret` in
``scope["state"]["bearer"]``. On public paths, ``request.user`` is an unauthenticated
:class:`AnonymousUser` (unless something else set one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from oauth_shield import (
    AccessToken,
    AuthError,
    ConfigurationError,
    IssuerUnavailableError,
    TokenValidator,
)
from oauth_shield.apikeys import APIKeyStore
from oauth_shield.http import (
    MAX_FORM_SCAN,
    WELL_KNOWN,
    AdapterSettings,
    DPoPMode,
    Guard,
    PathRules,
    RequestCredentials,
    RequestTarget,
    Requirement,
    ResourceOption,
    form_tokens,
    may_carry_form_token,
    route_paths,
)

__all__ = ["AnonymousUser", "BearerAuthMiddleware", "TokenUser"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenUser:
    """``request.user`` for a validated token, in Starlette's ``BaseUser`` shape.

    Holds the :class:`~oauth_shield.AccessToken` (never the raw token), so it can be logged,
    returned or pickled like any user object.
    """

    __slots__ = ("token",)
    is_authenticated = True

    def __init__(self, token: AccessToken) -> None:
        self.token = token

    @property
    def identity(self) -> str:
        """The subject, or the client for a client-credentials token."""
        return self.token.subject or self.token.client_id or ""

    @property
    def display_name(self) -> str:
        return self.identity

    @property
    def scopes(self) -> frozenset[str]:
        return self.token.scopes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenUser) and other.token.fingerprint == self.token.fingerprint

    def __hash__(self) -> int:
        return hash(self.token.fingerprint)

    def __repr__(self) -> str:
        return f"TokenUser({self.token!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return TokenUser, (self.token,)


class AnonymousUser:
    """``request.user`` on a public path: not authenticated, no scopes."""

    __slots__ = ()
    is_authenticated = False
    identity = ""
    display_name = ""
    scopes: frozenset[str] = frozenset()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnonymousUser)

    def __hash__(self) -> int:
        return hash(AnonymousUser)

    def __repr__(self) -> str:
        return "AnonymousUser()"


_ANONYMOUS = AnonymousUser()


class BearerAuthMiddleware:
    """Require a valid bearer token on the paths of an ASGI application.

    :param validator: the :class:`~oauth_shield.TokenValidator` to use; the middleware warms
        it when the application starts and closes it when the application's lifespan ends.
    :param scopes: scopes required on every path (empty: any valid token), or a mapping from
        path prefix to the scopes it requires: the longest matching prefix wins, a prefix
        matches whole path segments (``/api`` covers ``/api`` and ``/api/items``, not
        ``/apiary``), and a path no prefix covers requires a valid token with no scope.
        Paths are those of the application this middleware wraps (with ``root_path`` removed).
    :param public: the only paths served without a token: exact paths (``"/health"``) or
        subtrees written with a trailing ``/*`` (``"/docs/*"``).
    :param realm: the ``realm`` of the ``WWW-Authenticate`` challenge (default: the audience).
    :param allow_query: accept ``?access_token=`` (RFC 6750 §2.3; off: it ends up in logs).
    :param exempt_options: let ``OPTIONS`` (CORS preflight) through unchecked.
    :param api_keys: accept these API keys (in ``api_key_header``) instead of a bearer token.
    :param check_at_startup: fail the application's start (``lifespan.startup.failed``) when
        :meth:`~oauth_shield.TokenValidator.check` finds that tokens cannot be checked.
    :param resource: describe the API (RFC 9728; a :class:`~oauth_shield.ProtectedResource`,
        its URL, or ``True`` for the audience): the middleware answers its metadata at
        ``/.well-known/oauth-protected-resource`` (the resource's path appended) without a
        token, and every challenge names that URL.
    :param dpop: this middleware's DPoP policy, if not the validator's (``"required"`` or
        ``"disabled"`` where the validator's is ``"allowed"``). For another policy under one
        prefix, mount that part of the application behind a second middleware with the same
        validator (docs/dpop.md).
    :param health_path: answer the validator's health document here (``"/healthz"``),
        without a token: 200 when ``ok`` or ``degraded``, 503 when ``failing``, never cached.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        validator: TokenValidator,
        scopes: Iterable[str] | Mapping[str, Iterable[str]] = (),
        public: Iterable[str] = (),
        realm: str | None = None,
        allow_query: bool = False,
        exempt_options: bool = True,
        api_keys: APIKeyStore | None = None,
        api_key_header: str = "X-API-Key",
        check_at_startup: bool = False,
        resource: ResourceOption = None,
        dpop: DPoPMode | None = None,
        health_path: str | None = None,
    ) -> None:
        if not isinstance(validator, TokenValidator):
            raise ConfigurationError("validator must be a TokenValidator")
        self.app = app
        self.validator = validator
        self.rules = PathRules(scopes, public)
        settings = AdapterSettings.from_config(
            {},
            validator,
            realm=realm,
            allow_query_token=allow_query,
            api_key_header=api_key_header,
            check_at_startup=check_at_startup,
        )
        self.guard = Guard(validator, settings, api_keys, resource, dpop)
        self.exempt_options = exempt_options
        described = self.guard.resource
        self._metadata_path = None if described is None else described.metadata_path
        if health_path is not None and not (
            isinstance(health_path, str) and health_path.startswith("/")
        ):
            raise ConfigurationError("health_path must be a path such as /healthz")
        self._health_path = health_path
        self._api_key_header = settings.api_key_header.lower().encode("latin-1")

    def required_for(self, path: str, root_path: str = "") -> Requirement:
        """The scopes a request path requires (``None``: public); see ``PathRules.required``."""
        return self.rules.required(path, root_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan(send))
            return
        if kind not in ("http", "websocket") or (
            self.exempt_options and scope.get("method") == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        required: Requirement = None
        try:
            if self._metadata_path is not None and self._is_metadata(scope):
                await self._metadata(scope, send)
                return
            if self._health_path is not None and self._is_health(scope):
                status, headers, body = await self.guard.health()
                if scope["method"] not in ("GET", "HEAD"):
                    status, headers, body = 405, {"Allow": "GET, HEAD"}, b""
                await _send_response(send, "http.response", status, headers, body)
                return
            required = self.rules.required(scope["path"], scope.get("root_path", ""))
            if required is None:
                await self.app(_anonymous(scope), receive, send)
                return
            presented, receive = await self._presented(scope, receive)
            identity = await self.guard.authenticate(presented, required, api_keys=True)
        except AuthError as error:
            await self._refuse(scope, send, error, required)
            return
        state = {
            **scope.get("state", {}),
            "access_token": identity.token,
            "bearer": identity.bearer,
        }
        user = TokenUser(identity.token)
        extra = self.guard.response_headers(identity)
        if extra:
            send = _with_headers(send, extra)
        await self.app(
            {**scope, "auth": identity.token, "user": user, "state": state}, receive, send
        )

    async def _presented(
        self, scope: Scope, receive: Receive
    ) -> tuple[RequestCredentials, Receive]:
        # One pass over the headers: this runs for every protected request.
        authorization: list[str] = []
        api_keys: list[str] = []
        proofs: list[str] = []
        content_type = ""
        api_key_header = self._api_key_header
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value.decode("latin-1"))
            elif name == api_key_header:
                api_keys.append(value.decode("latin-1"))
            elif name == b"content-type":
                content_type += value.decode("latin-1")
            elif name == b"dpop":
                proofs.append(value.decode("latin-1"))
        form: list[str] = []
        if scope["type"] == "http" and may_carry_form_token(scope["method"], content_type):
            form, receive = await _form_tokens(receive)
        query = scope.get("query_string", b"")
        client = scope.get("client")
        return RequestCredentials(
            authorization,
            api_keys,
            parse_qs(query.decode("latin-1"), keep_blank_values=True).get("access_token", [])
            if query
            else [],
            form,
            client[0] if client else None,
            proofs,
            scope.get("method", "GET"),  # a websocket upgrade is a GET
            RequestTarget.from_asgi(scope) if proofs else None,
        ), receive

    def _is_metadata(self, scope: Scope) -> bool:
        """Whether the application would route this request on the metadata path."""
        path: str = scope["path"]
        if scope["type"] != "http" or WELL_KNOWN not in path:  # the cheap test first
            return False
        return route_paths(path, scope.get("root_path", ""))[0] == self._metadata_path

    def _is_health(self, scope: Scope) -> bool:
        """Whether the application would route this request on the health path."""
        if scope["type"] != "http":
            return False
        return route_paths(scope["path"], scope.get("root_path", ""))[0] == self._health_path

    async def _metadata(self, scope: Scope, send: Send) -> None:
        """The RFC 9728 document, to anyone: a client reads it before it has a token."""
        status, headers, body = self.guard.metadata()  # type: ignore[misc]  # path is set
        if scope["method"] not in ("GET", "HEAD"):
            status, headers, body = 405, {"Allow": "GET, HEAD"}, b""
        await _send_response(send, "http.response", status, headers, body)

    async def _refuse(
        self, scope: Scope, send: Send, error: AuthError, required: Requirement
    ) -> None:
        status, headers, body = self.guard.refusal(error, required)
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})  # refused before accept
                return
            prefix = "websocket.http.response"
        else:
            prefix = "http.response"
        await _send_response(send, prefix, status, headers, body)

    def _lifespan(self, send: Send) -> Send:
        """Warm (or check) the validator once the application has started; close it once the
        application has shut down."""

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    if self.guard.settings.check_at_startup:
                        await self.validator.check()
                    else:
                        await self.validator.start()
                except (ConfigurationError, IssuerUnavailableError) as error:
                    message = {"type": "lifespan.startup.failed", "message": str(error)}
            elif message["type"] == "lifespan.shutdown.complete":
                await self.validator.aclose()
            await send(message)

        return lifespan_send


async def _send_response(
    send: Send, prefix: str, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": f"{prefix}.start", "status": status, "headers": raw_headers})
    await send({"type": f"{prefix}.body", "body": body})


def _with_headers(send: Send, extra: Mapping[str, str]) -> Send:
    """``send``, adding ``extra`` to the response's start."""
    raw = [(name.lower().encode(), value.encode()) for name, value in extra.items()]

    async def send_with_headers(message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            message = {**message, "headers": [*message.get("headers", ()), *raw]}
        await send(message)

    return send_with_headers


def _anonymous(scope: Scope) -> Scope:
    """A public path's scope, with an unauthenticated user where the application looks."""
    if "user" in scope:
        return scope
    return {**scope, "user": _ANONYMOUS, "auth": _ANONYMOUS}


async def _form_tokens(receive: Receive) -> tuple[list[str], Receive]:
    """``access_token`` values in a form-encoded body, and a ``receive`` that replays the body.

    Only a form body can carry a token (RFC 6750 §2.2); it is read up to ``MAX_FORM_SCAN`` so
    that a token there is seen (a second credential is ``invalid_request``), and handed on to
    the application unchanged.
    """
    buffered: list[Message] = []
    size, more = 0, True
    while more and size <= MAX_FORM_SCAN:
        message = await receive()
        buffered.append(message)
        size += len(message.get("body", b""))
        more = message["type"] == "http.request" and message.get("more_body", False)
    tokens: list[str] = []
    if not more and size <= MAX_FORM_SCAN:
        body = b"".join(message.get("body", b"") for message in buffered)
        tokens = form_tokens(body.decode("latin-1"))

    async def replay() -> Message:
        return buffered.pop(0) if buffered else await receive()

    return tokens, replay
