"""Protected Resource Metadata (RFC 9728): what an API tells clients about itself, pure.

A client that meets a ``401`` learns from the challenge's ``resource_metadata`` parameter
(RFC 9728 §5.1) where the API describes itself: which authorization servers issue its tokens,
which scopes it knows, how it accepts a token. The MCP authorization flow starts there, and
any OAuth client can use it to find the issuer without configuration.

The document lives at ``/.well-known/oauth-protected-resource`` with the resource's path
appended (RFC 9728 §3.1: ``https://api.example.com/v1`` is described at
``https://api.example.com/.well-known/oauth-protected-resource/v1``); a resource without a
path is described at the root form. Every adapter serves it the same way, through
:meth:`ProtectedResource.response`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from ._config import url_problem
from ._errors import ConfigurationError, is_quotable, is_scope_token

#: RFC 9728 §3: the well-known suffix, inserted between the host and the resource's path.
WELL_KNOWN = "/.well-known/oauth-protected-resource"
#: How long clients and caches may keep the document: it changes with a deployment, not per
#: request, and an hour bounds how long a moved authorization server stays unseen.
DEFAULT_METADATA_MAX_AGE = 3600
#: Scopes never advertised: ``offline_access`` asks the authorization server for a refresh
#: token; it names nothing this resource serves (and MCP clients must not be led to ask for it).
NEVER_ADVERTISED = frozenset({"offline_access"})
#: RFC 6750 §2 ways to present a token, by the names RFC 9728 §2 gives them.
BEARER_METHODS = ("header", "body", "query")


class MetadataResponse(NamedTuple):
    """The HTTP answer carrying the metadata document."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtectedResource:
    """This API as RFC 9728 describes it to clients; adapters serve it and name it in every
    challenge (``resource_metadata``).

    Fields left ``None`` are filled from the validator when an adapter takes it
    (:meth:`complete`): ``resource`` from the one audience, ``authorization_servers`` from
    the issuer, ``bearer_methods_supported`` from the ways the adapter accepts a token.

    :param resource: the resource identifier: an https URL (plain http on loopback only)
        without query or fragment (RFC 9728 §2, RFC 8707 §2). Tokens for it carry it as
        their audience.
    :param authorization_servers: issuer identifiers of the servers that issue its tokens.
    :param scopes_supported: the scopes its routes use (``offline_access`` is never listed).
    :param resource_name: a human-readable name, for consent screens.
    :param resource_documentation: a URL of documentation for developers.
    :param challenge_scope: put the scopes a route requires in its ``401`` challenges
        (RFC 6750 §3), so a client asks for the right token at once.
    :param max_age: ``Cache-Control: max-age`` of the document, in seconds.
    :param dpop_signing_alg_values_supported: the DPoP proof algorithms (RFC 9728 §2, RFC
        9449); filled from the validator when it accepts DPoP.
    :param dpop_bound_access_tokens_required: whether only DPoP-bound tokens are accepted
        (the validator's ``dpop="required"``).
    """

    resource: str | None = None
    authorization_servers: Sequence[str] | None = None
    scopes_supported: Sequence[str] = ()
    bearer_methods_supported: Sequence[str] | None = None
    resource_name: str | None = None
    resource_documentation: str | None = None
    challenge_scope: bool = True
    max_age: int = DEFAULT_METADATA_MAX_AGE
    dpop_signing_alg_values_supported: Sequence[str] | None = None
    dpop_bound_access_tokens_required: bool | None = None

    def complete(
        self,
        *,
        issuer: str | Sequence[str],
        audience: Sequence[str],
        bearer_methods: Iterable[str] = ("header",),
        dpop_algs: Iterable[str] | None = None,
        dpop_required: bool = False,
    ) -> ProtectedResource:
        """This description with its gaps filled from the validator, checked (raises
        :class:`ConfigurationError` naming the field)."""
        resource = self.resource
        if resource is None:
            if len(audience) != 1:
                raise ConfigurationError(
                    "resource must be given: the validator accepts several audiences, or none"
                )
            resource = audience[0]
        resource = _resource_url(resource)
        issuers = (issuer,) if isinstance(issuer, str) else tuple(issuer)
        servers = tuple(self.authorization_servers or issuers)
        if not servers:
            raise ConfigurationError(
                "authorization_servers must be given: the validator accepts any tenant of an "
                "issuer template, so no issuer is known in full"
            )
        for server in servers:
            if url_problem(server) or not is_quotable(server):
                raise ConfigurationError("authorization_servers must be issuer URLs")
        methods = tuple(self.bearer_methods_supported or bearer_methods)
        if "header" not in methods or not set(methods) <= set(BEARER_METHODS):
            raise ConfigurationError("bearer_methods_supported: 'header', 'body', 'query'")
        scopes = _advertised(self.scopes_supported)
        if self.resource_documentation is not None and url_problem(self.resource_documentation):
            raise ConfigurationError("resource_documentation must be an https URL")
        if self.resource_name is not None and not isinstance(self.resource_name, str):
            raise ConfigurationError("resource_name must be a string")
        if not isinstance(self.max_age, int) or self.max_age < 0:
            raise ConfigurationError("max_age must be a number of seconds")
        return replace(
            self,
            resource=resource,
            authorization_servers=servers,
            scopes_supported=scopes,
            bearer_methods_supported=tuple(m for m in BEARER_METHODS if m in methods),
            dpop_signing_alg_values_supported=(
                tuple(self.dpop_signing_alg_values_supported or dpop_algs or ()) or None
            ),
            dpop_bound_access_tokens_required=(
                dpop_required
                if self.dpop_bound_access_tokens_required is None
                else self.dpop_bound_access_tokens_required
            ),
        )

    @property
    def metadata_path(self) -> str:
        """Where the document is served: the well-known path, the resource's path after it."""
        path = urlsplit(self._resource).path.rstrip("/")
        return WELL_KNOWN + path

    @property
    def metadata_url(self) -> str:
        """The document's URL, as every challenge names it (RFC 9728 §5.1)."""
        parts = urlsplit(self._resource)
        return urlunsplit((parts.scheme, parts.netloc, self.metadata_path, "", ""))

    @property
    def _resource(self) -> str:
        if self.resource is None:
            raise RuntimeError("call complete() first: the resource is not known yet")
        return self.resource

    def document(self) -> dict[str, Any]:
        """The metadata as JSON members (RFC 9728 §2); empty optional members left out."""
        document: dict[str, Any] = {"resource": self._resource}
        if self.authorization_servers:
            document["authorization_servers"] = list(self.authorization_servers)
        if self.scopes_supported:
            document["scopes_supported"] = list(self.scopes_supported)
        document["bearer_methods_supported"] = list(self.bearer_methods_supported or ("header",))
        if self.resource_name is not None:
            document["resource_name"] = self.resource_name
        if self.resource_documentation is not None:
            document["resource_documentation"] = self.resource_documentation
        if self.dpop_signing_alg_values_supported:
            document["dpop_signing_alg_values_supported"] = list(
                self.dpop_signing_alg_values_supported
            )
        if self.dpop_bound_access_tokens_required:  # false is the default (RFC 9728 §2)
            document["dpop_bound_access_tokens_required"] = True
        return document

    def response(self) -> MetadataResponse:
        """The ``200`` answer carrying the document (RFC 9728 §3.2), cacheable by anyone."""
        body = json.dumps(self.document()).encode()
        headers = {
            "Content-Type": "application/json",
            "Cache-Control": f"public, max-age={self.max_age}",
            # Browser-based MCP clients read it cross-origin, as they read AS metadata.
            "Access-Control-Allow-Origin": "*",
        }
        return MetadataResponse(200, headers, body)


def _resource_url(value: object) -> str:
    problem = url_problem(value)
    if problem is None and isinstance(value, str) and urlsplit(value).query:
        problem = "must not have a query (RFC 8707 §2)"
    if problem is None and not is_quotable(str(value)):
        problem = "must be printable ASCII without quotes"
    if problem:
        raise ConfigurationError(f"resource {problem}")
    return str(value)


def _advertised(scopes: Iterable[str]) -> tuple[str, ...]:
    found = [scopes] if isinstance(scopes, str) else list(scopes)
    words = [word for entry in found for word in str(entry).split(" ") if word]
    if not all(is_scope_token(word) for word in words):
        raise ConfigurationError("scopes_supported must be RFC 6749 scope tokens")
    return tuple(dict.fromkeys(w for w in words if w not in NEVER_ADVERTISED))
