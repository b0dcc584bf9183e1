"""Protect any ASGI application (Starlette, FastAPI, Quart, ...) with a bearer-token check.

>>> app = BearerAuthMiddleware(app, validator=validator,               # doctest: +SKIP
...                            scopes={"/admin": ["admin"], "/api": ["read"]})

Pure ASGI: no framework is imported. The validated :class:`~oauth_shield.AccessToken` is
published to the application as ``scope["auth"]`` (Starlette's ``request.auth``) and
``scope["state"]["access_token"]`` (``request.state.access_token``); the raw bearer token, for
RFC 8693 token exchange only, as a :class:`~oauth_shield.Secret` in
``scope["state"]["bearer"]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ._bearer import (
    MAX_FORM_SCAN,
    Credentials,
    credentials,
    error_response,
    may_carry_form_token,
)
from ._claims import required_scopes
from ._errors import AuthError, ConfigurationError
from ._options import AdapterSettings
from ._secret import Secret
from ._token import AccessToken
from ._validator import TokenValidator
from .apikeys import APIKeyStore

__all__ = ["BearerAuthMiddleware"]

#: Form bodies larger than this are handed on unread (no second token is looked for there).

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BearerAuthMiddleware:
    """Require a valid bearer token on some or all paths of an ASGI application.

    :param validator: the :class:`~oauth_shield.TokenValidator` to use; the middleware closes
        it when the application's lifespan ends.
    :param scopes: scopes required on every path, or a mapping from path prefix to the scopes
        it requires: the longest matching prefix wins, a prefix matches whole path segments
        (``/api`` covers ``/api`` and ``/api/items``, not ``/apiary``), and paths no prefix
        covers pass through untouched.
    :param realm: the ``realm`` of the ``WWW-Authenticate`` challenge (default: the audience).
    :param allow_query: accept ``?access_token=`` (RFC 6750 §2.3; off: it ends up in logs).
    :param exempt_options: let ``OPTIONS`` (CORS preflight) through unchecked.
    :param api_keys: accept these API keys (in ``api_key_header``) instead of a bearer token.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        validator: TokenValidator,
        scopes: Iterable[str] | Mapping[str, Iterable[str]] = (),
        realm: str | None = None,
        allow_query: bool = False,
        exempt_options: bool = True,
        api_keys: APIKeyStore | None = None,
        api_key_header: str = "X-API-Key",
    ) -> None:
        settings = AdapterSettings.merged(
            {},
            validator.settings.audience,
            realm=realm,
            allow_query_token=allow_query,
            api_key_header=api_key_header,
        )
        self.app = app
        self.validator = validator
        self.realm = settings.realm
        self.allow_query = allow_query
        self.exempt_options = exempt_options
        self.api_keys = api_keys
        self._api_key_header = settings.api_key_header.lower().encode("latin-1")
        rules = scopes.items() if isinstance(scopes, Mapping) else [("/", scopes)]
        self._rules = sorted(
            ((_prefix(path), required_scopes(wanted)) for path, wanted in rules),
            key=lambda rule: len(rule[0]),
            reverse=True,
        )

    def required_for(self, path: str) -> frozenset[str] | None:
        """The scopes ``path`` requires, or ``None`` if no rule covers it."""
        for prefix, required in self._rules:
            if path.startswith(prefix) or path + "/" == prefix:
                return required
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        required = self.required_for(scope["path"]) if kind in ("http", "websocket") else None
        if required is None or (self.exempt_options and scope.get("method") == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        form, receive = await _form_tokens(scope, receive)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        try:
            found = credentials(
                _header_values(scope, b"authorization"),
                api_keys=_header_values(scope, self._api_key_header),
                accept_api_keys=self.api_keys is not None,
                query=query.get("access_token", []),
                form=form,
                allow_query=self.allow_query,
                max_size=self.validator.settings.max_token_size,
            )
            access, bearer = await self._identify(found, required)
        except AuthError as error:
            await self._refuse(scope, send, error)
            return
        state = {**scope.get("state", {}), "access_token": access, "bearer": bearer}
        await self.app({**scope, "auth": access, "state": state}, receive, send)

    async def _identify(
        self, found: Credentials, required: frozenset[str]
    ) -> tuple[AccessToken, Secret | None]:
        if found.kind == "api_key" and self.api_keys is not None:
            return self.api_keys.validate(found.value, required), None
        return await self.validator.validate(found.value, required), Secret(found.value)

    async def _refuse(self, scope: Scope, send: Send, error: AuthError) -> None:
        status, headers, body = error_response(error, self.realm)
        raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        raw_headers.append((b"content-length", str(len(body)).encode()))
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})  # refused before accept
                return
            prefix = "websocket.http.response"
        else:
            prefix = "http.response"
        await send({"type": f"{prefix}.start", "status": status, "headers": raw_headers})
        await send({"type": f"{prefix}.body", "body": body})

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def send_then_close(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.validator.__aenter__()  # (re)opened: a closed validator refuses
            elif message["type"] == "lifespan.shutdown.complete":
                await self.validator.aclose()
            await send(message)

        return send_then_close


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


async def _form_tokens(scope: Scope, receive: Receive) -> tuple[list[str], Receive]:
    """``access_token`` values in a form-encoded body, and a ``receive`` that replays the body.

    Only a form body can carry a token (RFC 6750 §2.2); it is read up to ``MAX_FORM_SCAN`` so
    that a token there is seen (a second credential is ``invalid_request``), and handed on to
    the application unchanged.
    """
    content_type = "".join(_header_values(scope, b"content-type"))
    if scope["type"] != "http" or not may_carry_form_token(scope["method"], content_type):
        return [], receive
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
        tokens = parse_qs(body.decode("latin-1"), keep_blank_values=True).get("access_token", [])

    async def replay() -> Message:
        return buffered.pop(0) if buffered else await receive()

    return tokens, replay


def _prefix(path: str) -> str:
    if not path.startswith("/"):
        raise ConfigurationError(f"scope prefixes are paths starting with '/': {path!r}")
    return path if path.endswith("/") else path + "/"
