"""The keyword arguments of :class:`TokenValidator`, as ``TypedDict`` s for ``**options``.

``SyncTokenValidator``, the ``from_env`` constructors and the Flask and Quart ``Shield`` pass
their keyword arguments on to ``TokenValidator``. Typed as ``**options: Any`` they would take
``audiance=`` silently until run time; typed ``**options: Unpack[ValidatorOptions]`` (PEP 692)
a type checker reports the misspelt name, or a value of the wrong type, where it is written.

The names and annotations are ``TokenValidator.__init__``'s, in its order;
tests/test_packaging.py fails when they drift apart. No ``from __future__ import
annotations`` here: the annotations must be real at run time, for that test and for
``typing.get_type_hints``.
"""

import os
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

import httpx

from ._claimpaths import ClaimName
from ._clock import Clock
from ._config import AuthMethod, DPoPMode, Profile
from ._replay import ReplayOutage
from ._secret import Secret
from ._urls import Forwarded


class ConnectionOptions(TypedDict, total=False):
    """How to reach the authorization server (docs/configuration.md, "Connection"): the
    keyword arguments of :func:`oauth_shield._connection.connection`, taken by
    ``TokenValidator`` and by the token requests of ``oauth_shield.downstream``."""

    user_agent: str | None
    proxy: str | None
    ca_bundle: str | os.PathLike[str] | None
    ssl_context: ssl.SSLContext | None
    client_cert: str | os.PathLike[str] | None
    client_key: str | os.PathLike[str] | None
    http_headers: Mapping[str, str] | None


class _ValidatorTuning(ConnectionOptions, total=False):
    """Every parameter that has a default (docs/configuration.md); the connection's from
    :class:`ConnectionOptions`."""

    algorithms: Iterable[str]
    leeway: float
    jwks_uri: str | Mapping[str, str] | None
    profile: Profile
    max_token_size: int
    jwks_ttl: float
    jwks_cooldown: float
    jwks_max_stale: float
    http_timeout: float
    max_response_bytes: int
    verified_cache_size: int
    introspection_endpoint: str | None
    client_id: str | None
    client_secret: str | Secret | None
    client_secret_file: str | os.PathLike[str] | None
    introspection_auth: AuthMethod
    introspect_all: bool
    introspection_ttl: float
    introspection_negative_ttl: float
    introspection_cache_size: int
    introspection_rate: float
    introspection_burst: int
    introspection_requester_share: float
    introspection_fields: Iterable[str]
    introspection_grace: float
    insecure_http: bool
    redis_url: str | None
    cache: Any
    insecure_shared_cache: bool
    cache_secret: str | Secret | None
    cache_secret_file: str | os.PathLike[str] | None
    dpop: DPoPMode
    dpop_algorithms: Iterable[str]
    dpop_iat_window: float
    dpop_leeway: float
    dpop_public_url: str | None
    dpop_forwarded: Forwarded
    dpop_forwarded_hops: int
    dpop_nonce: bool
    dpop_nonce_secret: str | Secret | None
    dpop_nonce_secret_file: str | os.PathLike[str] | None
    dpop_nonce_period: float
    dpop_replay_cache_size: int
    dpop_replay_outage: ReplayOutage
    scope_claims: str | Iterable[ClaimName]
    required_claims: Mapping[ClaimName, object] | str | None
    allowed_clients: str | Iterable[str] | None
    client_claim: str
    require_scope_claim: bool
    tenants: str | Iterable[str] | None
    any_tenant: bool
    preset: str | None
    transport: httpx.AsyncBaseTransport | None
    clock: Clock | None


class ValidatorOptions(_ValidatorTuning):
    """The keyword arguments of :class:`TokenValidator`: ``issuer`` and ``audience`` required.
    What the presets of :mod:`oauth_shield.providers` return.

    >>> def make(**options: Unpack[ValidatorOptions]) -> SyncTokenValidator:  # doctest: +SKIP
    ...     return SyncTokenValidator(**options)
    """

    issuer: str | Sequence[str]
    audience: str | Sequence[str] | None


class ValidatorOverrides(_ValidatorTuning, total=False):
    """The same keyword arguments, all optional: what ``from_env()`` and the adapters'
    ``Shield`` take, the rest coming from ``OAUTH_SHIELD_*`` keys."""

    issuer: str | Sequence[str]
    audience: str | Sequence[str] | None
