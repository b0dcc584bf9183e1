"""Protect Quart routes with oauth_shield.

>>> shield = Shield(app, issuer="https://as.example.com",            # doctest: +SKIP
...                 audience="https://api.example.com")
>>> @app.get("/items")
... @shield.require("read")
... async def items():
...     return {"sub": current_token.subject}

Settings come from the arguments or from ``app.config["OAUTH_SHIELD_*"]`` (arguments win). The
shield owns one :class:`~oauth_shield.TokenValidator` per app, warmed (or, with
``check_at_startup``, checked) in ``before_serving``, closed in ``after_serving``, and used
lazily too (the test client skips the serving lifecycle). Failures answer RFC 6750 responses,
also in debug mode. Written on :mod:`oauth_shield.http` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from inspect import iscoroutinefunction
from typing import Any, TypeVar, cast

try:
    from quart import Request, Response, current_app, g, request
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "quart_oauth_shield needs Quart: pip install 'oauth-shield[quart]'"
    ) from error
from werkzeug.local import LocalProxy

from oauth_shield import AccessToken, AuthError, Secret, TokenValidator
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
    """The Quart extension. ``require()`` protects a view; ``current_token`` is its token.

    ``Shield(app=None, *, realm=None, allow_query_token=None, allow_form_token=None,
    api_keys=None, api_key_header=None, check_at_startup=None, resource=None,
    **validator_options)``; ``resource`` (a :class:`~oauth_shield.ProtectedResource`, a URL,
    or ``True`` for the audience) serves the RFC 9728 metadata and names it in every
    challenge. With
    ``check_at_startup``, a configuration that cannot work fails ``before_serving``, and so
    the server's start.
    """

    validator_class = TokenValidator

    def _register(self, app: Any, guard: Guard) -> None:
        validator = cast(TokenValidator, guard.validator)
        app.before_request(self.first_request_check(app))

        async def warm_up() -> None:
            self.check_routes(app)
            await (validator.check() if guard.settings.check_at_startup else validator.start())

        app.before_serving(warm_up)
        app.after_serving(validator.aclose)

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
        async def protected(*args: Any, **kwargs: Any) -> Any:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            handler = view if is_async else app.ensure_async(view)
            req = request._get_current_object()  # type: ignore[attr-defined]
            if exempt_options and req.method == "OPTIONS":
                return await handler(*args, **kwargs)
            guard: Guard = app.extensions[EXTENSION]
            try:
                presented = await _presented(req, guard)
                identity = await guard.authenticate(
                    presented, required, api_keys=api_keys, dpop=dpop
                )
            except AuthError as error:
                status, headers, body = guard.refusal(error, required, dpop=dpop)
                return Response(body, status=status, headers=headers)
            g.oauth_shield_token, g.oauth_shield_bearer = identity
            extra = guard.response_headers(identity)
            if not extra:
                return await handler(*args, **kwargs)
            response = await app.make_response(await handler(*args, **kwargs))
            response.headers.update(extra)
            return response

        return cast(View, protected)


async def _presented(req: Request, guard: Guard) -> RequestCredentials:
    """What the request presents; Quart keeps the body, so the view can still read it."""
    headers = req.headers
    body = ""
    if should_scan_form(req.method, headers.get):
        body = cast(str, await req.get_data(as_text=True))
    # Where DPoP is off, the guard ignores DPoP headers: not even looked up.
    proofs = headers.getlist("DPoP") if guard.dpop != "disabled" else []
    return RequestCredentials(
        authorization=headers.getlist("Authorization"),
        api_keys=headers.getlist(guard.settings.api_key_header),
        query=req.args.getlist("access_token") if req.query_string else [],
        form=form_tokens(body) if body else [],
        requester=req.remote_addr,
        proofs=proofs,
        method=req.method,
        target=RequestTarget.from_asgi(req.scope) if proofs else None,
    )
