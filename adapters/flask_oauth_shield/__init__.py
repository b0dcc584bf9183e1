"""Protect Flask routes with oauth_shield.

>>> shield = Shield(app, issuer="https://as.example.com",            # doctest: +SKIP
...                 audience="https://api.example.com")
>>> @app.get("/items")
... @shield.require("read")
... def items():
...     return {"sub": current_token.subject}

Settings come from the arguments or from ``app.config["OAUTH_SHIELD_*"]`` (arguments win). The
shield owns one :class:`~oauth_shield.SyncTokenValidator` per app: the same async core, its
network work on one background event loop shared by the process (started at first use,
stopped at interpreter exit), its warm path in the request's own thread. Failures answer
RFC 6750 responses, also in debug mode.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs

try:
    from flask import Flask, Request, Response, current_app, g, request
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "flask_oauth_shield needs Flask: pip install 'oauth-shield[flask]'"
    ) from error
from werkzeug.local import LocalProxy

from oauth_shield import AccessToken, AuthError, SyncTokenValidator, TokenValidator
from oauth_shield._bearer import bearer_token, error_response
from oauth_shield._claims import required_scopes
from oauth_shield._options import AdapterSettings, options_from

__all__ = ["Shield", "current_token"]

EXTENSION = "oauth_shield"
View = TypeVar("View", bound=Callable[..., Any])
_FORM = "application/x-www-form-urlencoded"
#: Form bodies larger than this are not searched for a second token (RFC 6750 §2.2).
_MAX_FORM_SCAN = 64 * 1024


def _token_of_request() -> AccessToken:
    token = g.get("oauth_shield_token")
    if token is None:
        raise RuntimeError("no access token: this view is not protected by shield.require()")
    return cast(AccessToken, token)


current_token: AccessToken = LocalProxy(_token_of_request)  # type: ignore[assignment]
"""The validated token of the current request (a proxy, like ``flask_login.current_user``)."""


class _AppState:
    def __init__(self, validator: SyncTokenValidator, settings: AdapterSettings) -> None:
        self.validator = validator
        self.settings = settings


class Shield:
    """The Flask extension. ``require()`` protects a view; ``current_token`` is its token."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        realm: str | None = None,
        allow_query_token: bool | None = None,
        allow_form_token: bool | None = None,
        **validator_options: Any,
    ) -> None:
        self._validator_options = validator_options
        self._adapter_options = {
            "realm": realm,
            "allow_query_token": allow_query_token,
            "allow_form_token": allow_form_token,
        }
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if EXTENSION in app.extensions:
            raise RuntimeError("oauth_shield is already registered on this app")
        options = {**options_from(app.config, TokenValidator), **self._validator_options}
        validator = SyncTokenValidator(**options)
        settings = AdapterSettings.merged(
            app.config, validator.settings.audience, **self._adapter_options
        )
        app.extensions[EXTENSION] = _AppState(validator, settings)

    def require(self, *scopes: str, exempt_options: bool = True) -> Callable[[View], View]:
        """Protect a view: a valid token carrying every one of ``scopes`` (none: any token)."""
        required = required_scopes(scopes)

        def decorator(view: View) -> View:
            @wraps(view)
            def protected(*args: Any, **kwargs: Any) -> Any:
                app = current_app._get_current_object()  # type: ignore[attr-defined]
                handler = app.ensure_sync(view) if iscoroutinefunction(view) else view
                req = request._get_current_object()  # type: ignore[attr-defined]
                environ = req.environ
                if exempt_options and req.method == "OPTIONS":
                    return handler(*args, **kwargs)
                state: _AppState = app.extensions[EXTENSION]
                # WSGI holds one value per header: a server folds repeated ones with commas,
                # which bearer_token() reads as several credentials.
                authorization = environ.get("HTTP_AUTHORIZATION")
                try:
                    token = bearer_token(
                        [] if authorization is None else [authorization],
                        query=req.args.getlist("access_token")
                        if environ.get("QUERY_STRING")
                        else [],
                        form=_form_tokens(req),
                        allow_query=state.settings.allow_query_token,
                        allow_form=state.settings.allow_form_token,
                        max_size=state.validator.settings.max_token_size,
                    )
                    g.oauth_shield_token = state.validator.validate(token, required)
                except AuthError as error:
                    return _refusal(error, state.settings.realm)
                return handler(*args, **kwargs)

            return cast(View, protected)

        return decorator


def _form_tokens(req: Request) -> list[str]:
    """``access_token`` in a form body (RFC 6750 §2.2 requires a form-encoded body). The body
    is cached, so the view can still read ``request.form`` or ``request.get_data()``."""
    if not req.environ.get("CONTENT_TYPE", "").startswith(_FORM):
        return []
    if (req.content_length or 0) > _MAX_FORM_SCAN:
        return []
    return parse_qs(req.get_data(cache=True, as_text=True)).get("access_token", [])


def _refusal(error: AuthError, realm: str | None) -> Response:
    status, headers, body = error_response(error, realm)
    return Response(body, status=status, headers=headers)
