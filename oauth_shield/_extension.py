"""The framework-neutral half of a Flask-style extension (Flask, Quart), written once.

A subclass says how to build its validator, how to hook into the app's lifecycle and how to
wrap a view; this class does the rest: settings from ``app.config`` with arguments winning,
one :class:`~oauth_shield.http.Guard` per app in ``app.extensions["oauth_shield"]``, the
bookkeeping of ``require()``, and the guard against the decorator-order trap::

    @shield.require("read")   # above the route decorator: the route was registered
    @app.get("/items")        # unwrapped, and is served without any check
    def items(): ...

``require()`` refuses such a view when it can see the app already routes it, and every app
checks its routes once more before its first request; an app that routes a view
``require()`` wrapped answers 500 to every request until the order is fixed.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, Unpack

from ._arguments import ValidatorOverrides
from ._claims import required_scopes
from ._config import DPoPMode
from ._errors import ConfigurationError
from ._guard import Guard, ResourceOption
from ._sync import SyncTokenValidator
from ._validator import TokenValidator
from .apikeys import APIKeyStore

logger = logging.getLogger("oauth_shield.adapters")

View = TypeVar("View", bound=Callable[..., Any])

#: Where each app keeps its guard (``app.extensions[EXTENSION]``).
EXTENSION = "oauth_shield"

#: The endpoint that serves the RFC 9728 metadata, without authentication.
METADATA_ENDPOINT = "oauth_shield_protected_resource"
#: The endpoint that serves the health document (``health_route``), without authentication.
HEALTH_ENDPOINT = "oauth_shield_health"
#: Where ``health_route`` serves the health document unless told otherwise.
DEFAULT_HEALTH_PATH = "/healthz"

_ORDER_TRAP = (
    "@shield.require() was applied above the route decorator of view {name!r}, so the "
    "route serves it without any check: put @shield.require(...) below @app.route(...)"
)


class ShieldExtension:
    """Base class of the Flask and Quart ``Shield``: ``require()`` protects a view."""

    #: ``TokenValidator`` or ``SyncTokenValidator``: what the subclass's views call.
    validator_class: ClassVar[type[TokenValidator] | type[SyncTokenValidator]]

    def __init__(
        self,
        app: Any = None,
        *,
        realm: str | None = None,
        allow_query_token: bool | None = None,
        allow_form_token: bool | None = None,
        api_keys: APIKeyStore | None = None,
        api_key_header: str | None = None,
        check_at_startup: bool | None = None,
        resource: ResourceOption = None,
        **validator_options: Unpack[ValidatorOverrides],
    ) -> None:
        self._validator_options = validator_options
        self._resource = resource
        self._adapter_options = {
            "realm": realm,
            "allow_query_token": allow_query_token,
            "allow_form_token": allow_form_token,
            "api_key_header": api_key_header,
            "check_at_startup": check_at_startup,
        }
        self._api_keys = api_keys
        self._apps: list[Any] = []
        self._wants_api_keys = False
        self._wrapped: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Register on ``app``: build its validator and guard from ``app.config``."""
        if EXTENSION in app.extensions:
            raise RuntimeError("oauth_shield is already registered on this app")
        # A ConfigurationError names each setting as the user gave it: key or argument.
        validator = self.validator_class.from_env(app.config, **self._validator_options)
        guard = Guard.from_config(
            app.config,
            validator,
            self._api_keys,
            resource=self._resource,
            **self._adapter_options,
        )
        app.extensions[EXTENSION] = guard
        self._apps.append(app)
        self._check_api_keys()
        self._register(app, guard)
        if guard.resource is not None:
            app.add_url_rule(
                guard.resource.metadata_path,
                METADATA_ENDPOINT,
                _metadata_view(guard),
                methods=["GET"],
            )

    def require(
        self,
        *scopes: str,
        api_keys: bool = False,
        exempt_options: bool = True,
        dpop: DPoPMode | None = None,
    ) -> Callable[[View], View]:
        """Protect a view: a valid token carrying every one of ``scopes`` (none: any token).
        Apply it *below* the route decorator.

        :param api_keys: also accept an API key (``X-API-Key``) instead of a bearer token.
        :param exempt_options: let ``OPTIONS`` (CORS preflight) through unchecked.
        :param dpop: this view's DPoP policy, where the validator's is ``"allowed"``:
            ``"required"`` (DPoP-bound tokens only) or ``"disabled"`` (bearer tokens only).
        """
        required = required_scopes(scopes)
        self._wants_api_keys |= api_keys
        self._check_api_keys()
        for app in self._apps:  # apps registered later check it at their first request
            app.extensions[EXTENSION].policy(dpop)

        def decorator(view: View) -> View:
            for app in self._apps:
                if endpoints := _routes(app, view):
                    raise RuntimeError(_ORDER_TRAP.format(name=endpoints[0]))
            self._wrapped.add(view)
            return self._protect(view, required, api_keys, exempt_options, dpop)

        return decorator

    def health_route(self, app: Any, path: str = DEFAULT_HEALTH_PATH) -> None:
        """Serve the validator's health document at ``path`` on ``app`` (registered with
        :meth:`init_app` first), without a token: 200 when ``ok`` or ``degraded``, 503 when
        ``failing``, ``Cache-Control: no-store`` (docs/operations.md)."""
        guard: Guard | None = app.extensions.get(EXTENSION)
        if guard is None:
            raise RuntimeError("health_route() needs the app registered first (init_app)")
        if isinstance(guard.validator, SyncTokenValidator):

            def health() -> tuple[bytes, int, dict[str, str]]:
                status, headers, body = guard.health_sync()
                return body, status, headers

            view: Callable[[], Any] = health
        else:

            async def health_async() -> tuple[bytes, int, dict[str, str]]:
                status, headers, body = await guard.health()
                return body, status, headers

            view = health_async
        app.add_url_rule(path, HEALTH_ENDPOINT, view, methods=["GET"])

    def check_routes(self, app: Any) -> None:
        """Raise ``RuntimeError`` if ``app`` routes a view that ``require()`` wrapped, unwrapped."""
        for view in list(self._wrapped):
            if endpoints := _routes(app, view):
                message = _ORDER_TRAP.format(name=endpoints[0])
                logger.error("refusing every request: %s", message)
                raise RuntimeError(message)

    def first_request_check(self, app: Any) -> Callable[[], None]:
        """A ``before_request`` function that checks the app's routes at its first request and
        then removes itself, so requests after it pay nothing; if the check fails it stays,
        and every request fails (routes cannot change once an app serves)."""

        def check_routes_once() -> None:
            self.check_routes(app)
            hooks = app.before_request_funcs.get(None, [])
            if check_routes_once in hooks:
                hooks.remove(check_routes_once)

        return check_routes_once

    def _check_api_keys(self) -> None:
        if self._wants_api_keys and any(
            app.extensions[EXTENSION].api_keys is None for app in self._apps
        ):
            raise ConfigurationError(
                "a route accepts API keys, but none are configured (OAUTH_SHIELD_API_KEYS)"
            )

    # --- what each framework provides ------------------------------------------------

    def _register(self, app: Any, guard: Guard) -> None:
        """Hook the guard into ``app``'s lifecycle."""
        raise NotImplementedError

    def _protect(
        self,
        view: View,
        required: frozenset[str],
        api_keys: bool,
        exempt_options: bool,
        dpop: DPoPMode | None,
    ) -> View:
        """``view`` wrapped so that it runs only for an acceptable request."""
        raise NotImplementedError


def _routes(app: Any, view: Callable[..., Any]) -> list[str]:
    """The endpoints of ``app`` served by exactly this function."""
    functions: Mapping[str, Any] = app.view_functions
    return [endpoint for endpoint, function in functions.items() if function is view]


def _metadata_view(guard: Guard) -> Callable[[], tuple[bytes, int, dict[str, str]]]:
    """The view answering the RFC 9728 document: public, like the authorization server's own
    metadata, since a client reads it before it has a token (RFC 9728 §3)."""

    def protected_resource_metadata() -> tuple[bytes, int, dict[str, str]]:
        status, headers, body = guard.metadata()  # type: ignore[misc]  # resource is set
        return body, status, headers

    return protected_resource_metadata


def current(store: Any, name: str, what: str) -> Any:
    """``name`` from the request store ``g`` of a view ``require()`` protected."""
    value = store.get(name)
    if value is None:
        if store.get("oauth_shield_token") is not None:  # the request presented an API key
            raise RuntimeError(f"no {what}: this request was authenticated by an API key")
        raise RuntimeError(f"no {what}: this view is not protected by shield.require()")
    return value
