"""The public seam for framework adapters: everything an adapter needs, nothing it must redo.

The Quart and Flask extensions, the ASGI middleware, the FastAPI dependency and the MCP
integration are written on these names only (a test enforces it), so a third adapter for
Litestar, Django or aiohttp can be written the same way:

1. build a :class:`Guard` once per application, from its configuration::

       validator = TokenValidator(**validator_options(config))
       guard = Guard.from_config(config, validator)

2. per request, read what it presents into :class:`RequestCredentials` (every
   ``Authorization`` header, every API-key header, every ``access_token`` in the query and,
   when :func:`should_scan_form` says so, in the form body; for DPoP, every ``DPoP`` header,
   the method and a :class:`RequestTarget`) and ask for the identity::

       try:
           identity = await guard.authenticate(presented, scopes)
       except AuthError as error:
           status, headers, body = guard.refusal(error, scopes)
       # on success, add guard.response_headers(identity) to the response (DPoP-Nonce)

3. at start-up, ``await validator.start()`` warms the caches, or ``await validator.check()``
   fails the start when the issuer cannot serve tokens (``guard.settings.check_at_startup``).

With a :class:`ProtectedResource` (``Guard(..., resource=...)``), every refusal names the
API's RFC 9728 metadata, and the adapter answers ``guard.metadata()`` at
``guard.resource.metadata_path`` without authentication.

Health probes: ``await guard.health()`` (``guard.health_sync()`` with a sync validator) is
the answer to serve, without authentication, at the application's health path.

Routing frameworks that decide protection by path use :class:`PathRules`, which decides on
every path the framework could route the request on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._bearer import (
    MAX_FORM_SCAN,
    Credentials,
    ErrorResponse,
    error_response,
    form_tokens,
    may_carry_form_token,
    should_scan_form,
    split_folded,
)
from ._claims import required_scopes
from ._config import DPoPMode
from ._extension import EXTENSION, ShieldExtension, current
from ._guard import (
    Guard,
    HealthResponse,
    Identity,
    RequestCredentials,
    RequestTarget,
    ResourceOption,
    health_response,
)
from ._options import ADAPTER_FIELDS, AdapterSettings, options_from
from ._paths import PathRules, Requirement, route_paths
from ._resource import DEFAULT_METADATA_MAX_AGE, WELL_KNOWN, MetadataResponse, ProtectedResource
from ._validator import TokenValidator

__all__ = [
    "ADAPTER_FIELDS",
    "DEFAULT_METADATA_MAX_AGE",
    "EXTENSION",
    "MAX_FORM_SCAN",
    "WELL_KNOWN",
    "AdapterSettings",
    "Credentials",
    "DPoPMode",
    "ErrorResponse",
    "Guard",
    "HealthResponse",
    "Identity",
    "MetadataResponse",
    "PathRules",
    "ProtectedResource",
    "RequestCredentials",
    "RequestTarget",
    "Requirement",
    "ResourceOption",
    "ShieldExtension",
    "current",
    "error_response",
    "form_tokens",
    "health_response",
    "may_carry_form_token",
    "required_scopes",
    "route_paths",
    "should_scan_form",
    "split_folded",
    "validator_options",
]


def validator_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``TokenValidator`` keyword arguments from the ``OAUTH_SHIELD_*`` keys of ``config`` (an
    app's config, or ``os.environ``); strings are converted as docs/configuration.md says."""
    return options_from(config, TokenValidator)
