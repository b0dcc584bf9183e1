"""Protect Quart routes with oauth_shield.

>>> shield = Shield(app, issuer="https://as.example.com",            # doctest: +SKIP
...                 audience="https://api.example.com")
>>> @app.get("/items")
... @shield.require("read")
... async def items():
...     return {"sub": current_token.subject}

Settings come from the arguments or from ``app.config["OAUTH_SHIELD_*"]`` (arguments win). The
shield owns one :class:`~oauth_shield.TokenValidator` per app, warmed in ``before_serving``,
closed in ``after_serving``, and created lazily on first use too (the test client skips the
serving lifecycle). Failures answer RFC 6750 responses, also in debug mode.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs

try:
    from quart import Quart, Request, Response, current_app, g, request
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "quart_oauth_shield needs Quart: pip install 'oauth-shield[quart]'"
    ) from error
from werkzeug.local import LocalProxy

from oauth_shield import AccessToken, AuthError, ConfigurationError, Secret, TokenValidator
from oauth_shield._bearer import (
    MAX_FORM_SCAN,
    credentials,
    error_response,
    may_carry_form_token,
)
from oauth_shield._claims import required_scopes
from oauth_shield._options import AdapterSettings, options_from
from oauth_shield.apikeys import APIKeyStore

__all__ = ["Shield", "current_bearer", "current_token"]

EXTENSION = "oauth_shield"
View = TypeVar("View", bound=Callable[..., Any])


def _from_request(name: str, what: str) -> Any:
    value = g.get(name)
    if value is None:
        if g.get("oauth_shield_token") is not None:  # the request presented an API key
            raise RuntimeError(f"no {what}: this request was authenticated by an API key")
        raise RuntimeError(f"no {what}: this view is not protected by shield.require()")
    return value


current_token: AccessToken = LocalProxy(lambda: _from_request("oauth_shield_token", "access token"))  # type: ignore[assignment]
"""The validated identity of the current request (a proxy, like ``flask_login.current_user``):
an :class:`~oauth_shield.AccessToken`, from a bearer token or an API key."""

current_bearer: Secret = LocalProxy(lambda: _from_request("oauth_shield_bearer", "bearer token"))  # type: ignore[assignment]
"""The current request's raw bearer token, as a :class:`~oauth_shield.Secret` (for RFC 8693
token exchange, see :mod:`oauth_shield.downstream`); never forward it as it is."""


class _AppState:
    def __init__(
        self, validator: TokenValidator, settings: AdapterSettings, keys: APIKeyStore | None
    ) -> None:
        self.validator = validator
        self.settings = settings
        self.api_keys = keys


class Shield:
    """The Quart extension. ``require()`` protects a view; ``current_token`` is its token."""

    def __init__(
        self,
        app: Quart | None = None,
        *,
        realm: str | None = None,
        allow_query_token: bool | None = None,
        allow_form_token: bool | None = None,
        api_keys: APIKeyStore | None = None,
        api_key_header: str | None = None,
        **validator_options: Any,
    ) -> None:
        self._validator_options = validator_options
        self._adapter_options = {
            "realm": realm,
            "allow_query_token": allow_query_token,
            "allow_form_token": allow_form_token,
            "api_key_header": api_key_header,
        }
        self._api_keys = api_keys
        self._apps: list[_AppState] = []
        self._wants_api_keys = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        if EXTENSION in app.extensions:
            raise RuntimeError("oauth_shield is already registered on this app")
        options = {**options_from(app.config, TokenValidator), **self._validator_options}
        validator = TokenValidator(**options)
        settings = AdapterSettings.merged(
            app.config, validator.settings.audience, **self._adapter_options
        )
        keys = self._api_keys if self._api_keys is not None else APIKeyStore.configured(app.config)
        state = app.extensions[EXTENSION] = _AppState(validator, settings, keys)
        self._apps.append(state)
        self._check_api_keys()

        @app.before_serving
        async def warm_up() -> None:
            await state.validator.__aenter__()  # opens (again) and warms the key set

        @app.after_serving
        async def close() -> None:
            await state.validator.aclose()

    def require(
        self, *scopes: str, api_keys: bool = False, exempt_options: bool = True
    ) -> Callable[[View], View]:
        """Protect a view: a valid token carrying every one of ``scopes`` (none: any token).

        :param api_keys: also accept an API key (``X-API-Key``) instead of a bearer token.
        :param exempt_options: let ``OPTIONS`` (CORS preflight) through unchecked.
        """
        required = required_scopes(scopes)
        self._wants_api_keys |= api_keys
        self._check_api_keys()

        def decorator(view: View) -> View:
            @wraps(view)
            async def protected(*args: Any, **kwargs: Any) -> Any:
                app = current_app._get_current_object()  # type: ignore[attr-defined]
                handler = view if iscoroutinefunction(view) else app.ensure_async(view)
                req = request._get_current_object()  # type: ignore[attr-defined]
                if exempt_options and req.method == "OPTIONS":
                    return await handler(*args, **kwargs)
                state: _AppState = app.extensions[EXTENSION]
                try:
                    await _authenticate(req, state, required, api_keys)
                except AuthError as error:
                    return _refusal(error, state.settings.realm)
                return await handler(*args, **kwargs)

            return cast(View, protected)

        return decorator

    def _check_api_keys(self) -> None:
        if self._wants_api_keys and any(state.api_keys is None for state in self._apps):
            raise ConfigurationError(
                "a route accepts API keys, but none are configured (OAUTH_SHIELD_API_KEYS)"
            )


async def _authenticate(
    req: Request, state: _AppState, required: frozenset[str], api_keys: bool
) -> None:
    """Find the request's one credential, validate it, and remember the identity on ``g``."""
    headers = req.headers
    found = credentials(
        headers.getlist("Authorization"),
        api_keys=headers.getlist(state.settings.api_key_header),
        accept_api_keys=api_keys,
        query=req.args.getlist("access_token") if req.query_string else [],
        form=await _form_tokens(req),
        allow_query=state.settings.allow_query_token,
        allow_form=state.settings.allow_form_token,
        max_size=state.validator.settings.max_token_size,
    )
    if found.kind == "api_key" and state.api_keys is not None:
        g.oauth_shield_token = state.api_keys.validate(found.value, required)
        return
    g.oauth_shield_token = await state.validator.validate(found.value, required)
    g.oauth_shield_bearer = Secret(found.value)


async def _form_tokens(req: Request) -> list[str]:
    """``access_token`` in a form body (RFC 6750 §2.2 requires a form-encoded body) of known
    length up to ``MAX_FORM_SCAN``. Quart keeps the body: the view can still read it."""
    if not may_carry_form_token(req.method, req.headers.get("Content-Type")):
        return []
    if req.content_length is None or req.content_length > MAX_FORM_SCAN:
        return []
    body = cast(str, await req.get_data(as_text=True))
    return parse_qs(body, keep_blank_values=True).get("access_token", [])


def _refusal(error: AuthError, realm: str | None) -> Response:
    status, headers, body = error_response(error, realm)
    return Response(body, status=status, headers=headers)
