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
RFC 6750 responses, also in debug mode. Written on :mod:`oauth_shield.http` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any, TypeVar, cast
from urllib.parse import quote

try:
    from flask import Request, Response, current_app, g, request
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "flask_oauth_shield needs Flask: pip install 'oauth-shield[flask]'"
    ) from error
from werkzeug.local import LocalProxy

from oauth_shield import AccessToken, AuthError, Secret, SyncTokenValidator
from oauth_shield.http import (
    EXTENSION,
    DPoPMode,
    Guard,
    RequestCredentials,
    RequestTarget,
    ShieldExtension,
    current,
    form_tokens,
    should_scan_form,
    split_folded,
)

__all__ = ["Shield", "current_bearer", "current_token"]

View = TypeVar("View", bound=Callable[..., Any])

current_token: AccessToken = LocalProxy(lambda: current(g, "oauth_shield_token", "access token"))  # type: ignore[assignment]
"""The validated identity of the current request (a proxy, like ``flask_login.current_user``):
an :class:`~oauth_shield.AccessToken`, from a bearer token or an API key."""

current_bearer: Secret = LocalProxy(lambda: current(g, "oauth_shield_bearer", "bearer token"))  # type: ignore[assignment]
"""The current request's raw bearer token, as a :class:`~oauth_shield.Secret` (for RFC 8693
token exchange, see :mod:`oauth_shield.downstream`); never forward it as it is."""


class Shield(ShieldExtension):
    """The Flask extension. ``require()`` protects a view; ``current_token`` is its token.

    ``Shield(app=None, *, realm=None, allow_query_token=None, allow_form_token=None,
    api_keys=None, api_key_header=None, check_at_startup=None, resource=None,
    **validator_options)``; ``resource`` (a :class:`~oauth_shield.ProtectedResource`, a URL,
    or ``True`` for the audience) serves the RFC 9728 metadata and names it in every
    challenge. With
    ``check_at_startup``, :meth:`init_app` checks the issuer at once and raises
    ``ConfigurationError`` or ``IssuerUnavailableError`` on a configuration that cannot work.
    """

    validator_class = SyncTokenValidator

    def _register(self, app: Any, guard: Guard) -> None:
        app.before_request(self.first_request_check(app))
        if guard.settings.check_at_startup:
            cast(SyncTokenValidator, guard.validator).check()

    def _protect(
        self,
        view: View,
        required: frozenset[str],
        api_keys: bool,
        exempt_options: bool,
        dpop: DPoPMode | None,
    ) -> View:
        is_async = iscoroutinefunction(view)  # asked once, not per request

        @wraps(view)
        def protected(*args: Any, **kwargs: Any) -> Any:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            handler = app.ensure_sync(view) if is_async else view
            req = request._get_current_object()  # type: ignore[attr-defined]
            if exempt_options and req.method == "OPTIONS":
                return handler(*args, **kwargs)
            guard: Guard = app.extensions[EXTENSION]
            try:
                identity = guard.authenticate_sync(
                    _presented(req, guard), required, api_keys=api_keys, dpop=dpop
                )
            except AuthError as error:
                return Response(*_answer(guard, error, required, dpop))
            g.oauth_shield_token, g.oauth_shield_bearer = identity
            extra = guard.response_headers(identity)
            if not extra:
                return handler(*args, **kwargs)
            response = app.make_response(handler(*args, **kwargs))
            response.headers.update(extra)
            return response

        return cast(View, protected)


def _presented(req: Request, guard: Guard) -> RequestCredentials:
    """What the request presents. WSGI holds one value per header: a server folds repeated
    ones with commas, which ``split_folded`` takes apart again."""
    environ = req.environ
    authorization = environ.get("HTTP_AUTHORIZATION")
    header = "HTTP_" + guard.settings.api_key_header.upper().replace("-", "_")
    api_key = environ.get(header)
    body = ""
    if should_scan_form(req.method, req.headers.get):
        body = req.get_data(cache=True, as_text=True)  # cached: the view can still read it
    proof = environ.get("HTTP_DPOP")
    return RequestCredentials(
        authorization=[] if authorization is None else split_folded(authorization),
        api_keys=[] if api_key is None else [api_key],
        query=req.args.getlist("access_token") if environ.get("QUERY_STRING") else [],
        form=form_tokens(body) if body else [],
        requester=req.remote_addr,
        # A folded value ("a, b": two headers) is refused as two proofs (RFC 9449 §4.3).
        proofs=[] if proof is None else [proof],
        method=req.method,
        target=None if proof is None else _target(req),
    )


def _target(req: Request) -> RequestTarget:
    """Where the request was sent: the path as it arrived (``RAW_URI``/``REQUEST_URI``, set
    by gunicorn, Werkzeug and most WSGI servers), else rebuilt from ``SCRIPT_NAME`` and
    ``PATH_INFO``."""
    environ = req.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:
        raw = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,")
    return RequestTarget(
        environ.get("wsgi.url_scheme", "http"),
        environ.get("HTTP_HOST"),
        raw,
        environ.get("SCRIPT_NAME", ""),
        req.headers.items(),
    )


def _answer(
    guard: Guard, error: AuthError, required: frozenset[str], dpop: DPoPMode | None
) -> tuple[bytes, int, dict[str, str]]:
    status, headers, body = guard.refusal(error, required, dpop=dpop)
    return body, status, headers
