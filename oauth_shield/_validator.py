"""``TokenValidator``: the async shell that drives the pure core.

A validation runs in two halves. ``_check_local`` is synchronous and does no I/O: the
verified-token cache, strict parsing, key lookup in the installed key set, the signature and
the claims. Most requests end there. When it needs something only the network can give (a key
set, a refetch for an unknown kid), it returns a ``_Pending`` describing what, and
``_check_remote`` awaits it and finishes. The sync facade runs the same first half in the
caller's thread and sends only the second half to the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from hashlib import sha256
from time import perf_counter
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Self, Unpack, cast

import httpx

from . import _config as defaults
from . import _fork
from ._arguments import ValidatorOverrides
from ._bearer import is_b64token
from ._cache import BoundedCache
from ._claimpaths import ClaimName
from ._claims import ScopeMemo, check_claims, grant, required_scopes
from ._clock import Clock, SystemClock
from ._config import AuthMethod, DPoPMode, Profile, Settings, shown
from ._connection import connection
from ._diagnosis import CONFIGURATION_REASONS, refusal_warning
from ._dpop import DEFAULT_ALGORITHMS as DEFAULT_DPOP_ALGORITHMS
from ._dpop import (
    DEFAULT_IAT_WINDOW,
    DPoPRequest,
    DPoPSettings,
    Proof,
    check_binding,
    check_proof,
    single_proof,
)
from ._errors import (
    AuthError,
    ConfigurationError,
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidTokenError,
    IssuerUnavailableError,
    MissingTokenError,
    Reason,
)
from ._health import health_document
from ._http import FetchError, HTTPClient, check_urls
from ._introspector import Introspector
from ._jose import (
    CompactJWS,
    Header,
    Verifier,
    is_compact_jwe,
    looks_like_jose,
    parse_compact,
)
from ._keyset import Need, RemoteKeySet
from ._keysources import KeySources
from ._nonce import DEFAULT_NONCE_PERIOD, NonceIssuer
from ._options import configured
from ._replay import (
    DEFAULT_MAX_ENTRIES,
    MemoryReplayStore,
    ReplayOutage,
    SharedReplayStore,
    check_outage,
)
from ._secret import Secret, as_secret
from ._shared import shared_cache
from ._telemetry import BEARER, DPOP, Sink, Telemetry, token_kind
from ._token import AccessToken, fingerprint, text_fingerprint
from ._urls import Forwarded
from .events import ConfigurationSuspected, Listener

logger = logging.getLogger("oauth_shield.validator")
config_logger = logging.getLogger("oauth_shield.config")

#: Distinct verified JOSE headers remembered: a few per signing key is all an issuer uses.
MAX_KNOWN_HEADERS = 64
#: Refusals of a reason that may mean misconfiguration, but was decided before the signature
#: (a forged alg, a random kid), are examined this many times; then that reason never again.
MAX_DIAGNOSES = 16
#: What validate() says after aclose(): a programming error, not a token problem.
CLOSED = "this validator is closed"
#: What validate() says when called from a second event loop while the first one still runs.
FOREIGN_LOOP = (
    "this TokenValidator belongs to an event loop running in another thread: use one "
    "validator per event loop, or SyncTokenValidator from threads"
)


class _NeedKeys(NamedTuple):
    """A JWT whose key must first come from the network: from ``keys``, the key set of the
    issuer its ``iss`` selected (``issuer``: ``None`` when only one is configured)."""

    jws: CompactJWS
    digest: bytes
    keys: RemoteKeySet
    issuer: str | None
    waits_for: Reason = Reason.KEYS_UNAVAILABLE


class _NeedIntrospection(NamedTuple):
    """An opaque token the authorization server must judge."""

    token: str
    digest: bytes
    introspector: Introspector
    waits_for: Reason = Reason.INTROSPECTION_UNAVAILABLE


_Pending = _NeedKeys | _NeedIntrospection


def _drop(dropped: object) -> None:
    """Let go of what belonged to an event loop that has ended: collected, hence closed."""


class TokenValidator:
    """Validate OAuth 2.0 bearer tokens for one API (the resource server).

    JWT access tokens are verified locally against the issuer's published key set (RFC 9068,
    RFC 8725); the key set is discovered from the issuer's metadata unless ``jwks_uri`` is
    given. One validator may trust several issuers: each token's ``iss`` picks its issuer, and
    so the one key set that may verify it. Use one validator for the life of the process: it
    holds the caches. ``oauth_shield.providers`` has the arguments for common identity
    providers (Keycloak, Auth0, Entra ID, Okta, Cognito, GitHub Actions, Kubernetes).

    >>> async def handler(authorization_token: str) -> str:          # doctest: +SKIP
    ...     async with TokenValidator(issuer="https://as.example.com",
    ...                               audience="https://api.example.com") as validator:
    ...         token = await validator.validate(authorization_token, scopes=["read"])
    ...         return token.subject

    :param issuer: the issuer identifier, compared by exact string match; or several. An
        issuer with ``{tenantid}`` in it is a template (Entra multi-tenant), matched with the
        token's ``tid`` and restricted by ``tenants`` (or ``any_tenant=True``).
    :param audience: this API's identifier(s); a token's ``aud`` must contain one of them.
        ``None`` only with ``allowed_clients``, for issuers whose tokens carry no audience.
    :param algorithms: the allowlist; HMAC and ``none`` can never be enabled.
    :param leeway: seconds of clock skew tolerated for ``exp``, ``nbf`` and ``iat``.
    :param jwks_uri: the key set URL, if it should not come from the issuer's metadata (or a
        mapping of issuer to URL).
    :param scope_claims: the claims whose values grant what routes require: names (``"scp"``),
        JSON Pointers (``"/realm_access/roles"``) or tuples (``("realm_access", "roles")``);
        each value a space-separated string or an array of strings. Default ``("scope",)``.
    :param required_claims: ``{claim: value}``: the token must carry each claim with that
        value (a list, tuple or set of values: one of them).
    :param allowed_clients: the clients (``client_claim``) whose tokens are accepted.
    :param profile: ``"rfc9068"`` (default, strict) or ``"jwt"`` for servers that issue plain
        JWTs as access tokens (``typ`` need not be ``at+jwt``; ``iat``, ``sub``, ``client_id``
        and ``jti`` become optional).
    :param insecure_http: allow plain http to a non-loopback issuer (development networks only;
        logged as a warning at startup).
    :param redis_url: share key sets and introspection verdicts with every process using the
        same Redis (``redis://host:6379/0``; needs the ``redis`` extra).
    :param cache: the same with any aiocache cache instance you configured yourself.
    :param cache_secret: authenticate what goes through the shared cache (HMAC-SHA256), so
        that write access to Redis alone cannot make a token valid; the same in every
        process, at least 16 characters. Or ``cache_secret_file``. Required with a shared
        cache...
    :param insecure_shared_cache: ...unless this is ``True``: then whoever can write to the
        cache can make any token valid (logged as a warning at startup).
    :param dpop: DPoP-bound tokens (RFC 9449, docs/dpop.md): ``"disabled"`` (the default)
        refuses them, as bearer tokens that cannot be checked; ``"allowed"`` accepts them
        with a proof, beside bearer tokens; ``"required"`` accepts only them. The
        ``dpop_*`` parameters tune the proof checks, server nonces and the replay store.
    :param user_agent: the ``User-Agent`` of every request to the issuer (default
        ``oauth-shield/<version>``).
    :param proxy: send every request to the issuer through this proxy
        (``http://proxy.internal:3128``); by default httpx reads ``HTTPS_PROXY`` and friends.
    :param ca_bundle: trust the CAs in this PEM file (a private CA) instead of the default
        bundle; or give an ``ssl_context`` that verifies certificates and host names.
    :param client_cert: a PEM file with the client certificate (and its key, or give
        ``client_key``), for mutual TLS with the authorization server.
    :param http_headers: extra headers on every request to the issuer (never
        ``Authorization``, ``Cookie`` or one oauth_shield sets itself).
    :param transport: an ``httpx`` transport for all requests to the issuer (tests; it replaces
        the TLS and proxy settings above).
    :param clock: the clock seam (see :class:`~oauth_shield._clock.Clock`), for tests.

    The remaining parameters tune limits and caches; docs/configuration.md lists each one with
    its default and the reason for it.

    Processes, threads and event loops: a validator runs its network work on one event loop
    at a time. When that loop has ended (``asyncio.run()`` called again, a test's own loop),
    the next call that needs the network moves it to the running loop, and it keeps its
    caches. While that loop still runs in another thread, a call from another loop that needs
    the network raises ``RuntimeError`` (one answered from the caches needs no loop): use one
    validator per event loop, or :class:`SyncTokenValidator` from threads. After ``fork()``
    the child gets new connections, locks and loop state, and keeps the parent's caches. After
    :meth:`aclose`, :meth:`validate` raises ``RuntimeError("this validator is closed")``
    until the validator is entered again with ``async with``.
    """

    def __init__(
        self,
        *,
        issuer: str | Sequence[str],
        audience: str | Sequence[str] | None,
        algorithms: Iterable[str] = defaults.DEFAULT_ALGORITHMS,
        leeway: float = defaults.DEFAULT_LEEWAY,
        jwks_uri: str | Mapping[str, str] | None = None,
        profile: Profile = "rfc9068",
        max_token_size: int = defaults.DEFAULT_MAX_TOKEN_SIZE,
        jwks_ttl: float = defaults.DEFAULT_JWKS_TTL,
        jwks_cooldown: float = defaults.DEFAULT_JWKS_COOLDOWN,
        jwks_max_stale: float = defaults.DEFAULT_JWKS_MAX_STALE,
        http_timeout: float = defaults.DEFAULT_HTTP_TIMEOUT,
        max_response_bytes: int = defaults.DEFAULT_MAX_RESPONSE_BYTES,
        verified_cache_size: int = defaults.DEFAULT_VERIFIED_CACHE_SIZE,
        introspection_endpoint: str | None = None,
        client_id: str | None = None,
        client_secret: str | Secret | None = None,
        client_secret_file: str | os.PathLike[str] | None = None,
        introspection_auth: AuthMethod = "client_secret_basic",
        introspect_all: bool = False,
        introspection_ttl: float = defaults.DEFAULT_INTROSPECTION_TTL,
        introspection_negative_ttl: float = defaults.DEFAULT_INTROSPECTION_NEGATIVE_TTL,
        introspection_cache_size: int = defaults.DEFAULT_INTROSPECTION_CACHE_SIZE,
        introspection_rate: float = defaults.DEFAULT_INTROSPECTION_RATE,
        introspection_burst: int = defaults.DEFAULT_INTROSPECTION_BURST,
        introspection_requester_share: float = defaults.DEFAULT_INTROSPECTION_REQUESTER_SHARE,
        introspection_fields: Iterable[str] = defaults.DEFAULT_INTROSPECTION_FIELDS,
        introspection_grace: float = defaults.DEFAULT_INTROSPECTION_GRACE,
        insecure_http: bool = False,
        redis_url: str | None = None,
        cache: Any = None,
        cache_secret: str | Secret | None = None,
        cache_secret_file: str | os.PathLike[str] | None = None,
        insecure_shared_cache: bool = False,
        scope_claims: str | Iterable[ClaimName] = ("scope",),
        required_claims: Mapping[ClaimName, object] | str | None = None,
        allowed_clients: str | Iterable[str] | None = None,
        client_claim: str = defaults.DEFAULT_CLIENT_CLAIM,
        require_scope_claim: bool = False,
        tenants: str | Iterable[str] | None = None,
        any_tenant: bool = False,
        preset: str | None = None,
        dpop: DPoPMode = "disabled",
        dpop_algorithms: Iterable[str] = DEFAULT_DPOP_ALGORITHMS,
        dpop_iat_window: float = DEFAULT_IAT_WINDOW,
        dpop_leeway: float = 0.0,
        dpop_public_url: str | None = None,
        dpop_forwarded: Forwarded = "none",
        dpop_forwarded_hops: int = 1,
        dpop_nonce: bool = False,
        dpop_nonce_secret: str | Secret | None = None,
        dpop_nonce_secret_file: str | os.PathLike[str] | None = None,
        dpop_nonce_period: float = DEFAULT_NONCE_PERIOD,
        dpop_replay_cache_size: int = DEFAULT_MAX_ENTRIES,
        dpop_replay_outage: ReplayOutage = "fail_closed",
        user_agent: str | None = None,
        proxy: str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        http_headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = Settings(
            issuer=issuer,  # type: ignore[arg-type]  # one or several: normalised by Settings
            audience=audience,  # type: ignore[arg-type]  # normalised by Settings
            algorithms=algorithms,  # type: ignore[arg-type]
            leeway=leeway,
            jwks_uri=jwks_uri,
            profile=profile,
            max_token_size=max_token_size,
            jwks_ttl=jwks_ttl,
            jwks_cooldown=jwks_cooldown,
            jwks_max_stale=jwks_max_stale,
            http_timeout=http_timeout,
            max_response_bytes=max_response_bytes,
            verified_cache_size=verified_cache_size,
            introspection_endpoint=introspection_endpoint,
            client_id=client_id,
            client_secret=as_secret(client_secret, client_secret_file, "client_secret"),
            introspection_auth=introspection_auth,
            introspect_all=introspect_all,
            introspection_ttl=introspection_ttl,
            introspection_negative_ttl=introspection_negative_ttl,
            introspection_cache_size=introspection_cache_size,
            introspection_rate=introspection_rate,
            introspection_burst=introspection_burst,
            introspection_requester_share=introspection_requester_share,
            introspection_fields=introspection_fields,  # type: ignore[arg-type]
            introspection_grace=introspection_grace,
            insecure_http=insecure_http,
            scope_claims=scope_claims,  # type: ignore[arg-type]
            required_claims=required_claims,  # type: ignore[arg-type]
            allowed_clients=allowed_clients,  # type: ignore[arg-type]
            client_claim=client_claim,
            require_scope_claim=require_scope_claim,
            tenants=tenants,  # type: ignore[arg-type]
            any_tenant=any_tenant,
            preset=preset,
            dpop=dpop,
        )
        check_urls(self.settings)  # as httpx will parse them, now rather than per request
        for warning in self.settings.warnings():
            config_logger.warning("%s (issuer %s)", warning, self._named_issuers)
        if self.settings.preset is not None and self.settings.profile != "rfc9068":
            config_logger.info(
                "the relaxed 'jwt' profile is on, set by preset %s, which checks what that "
                "provider guarantees instead (issuer %s)",
                self.settings.preset,
                self._named_issuers,
            )
        # The first refusal of each reason that usually means a wrong setting is explained
        # at WARNING (_log_rejection); the set lookup is all it costs any other refusal.
        self._undiagnosed = set(CONFIGURATION_REASONS)
        self._diagnoses: dict[Reason, int] = {}
        self._diagnosis_lock = threading.Lock()  # the sync facade refuses in many threads
        self._clock: Clock = clock or SystemClock()
        # Events, metrics and spans of this validator (oauth_shield.events, oauth_shield.otel).
        self._telemetry = telemetry = Telemetry(self.settings.issuer)
        self._http = HTTPClient(
            timeout=http_timeout,
            max_bytes=max_response_bytes,
            transport=transport,
            allow_http=insecure_http,
            connection=connection(
                user_agent=user_agent,
                proxy=proxy,
                ca_bundle=ca_bundle,
                ssl_context=ssl_context,
                client_cert=client_cert,
                client_key=client_key,
                http_headers=http_headers,
            ),
        )
        self._shared = shared_cache(
            self.settings,
            redis_url,
            cache,
            as_secret(cache_secret, cache_secret_file, "cache_secret"),
            insecure_shared_cache,
            self._clock,
        )
        if self._shared is not None and insecure_shared_cache:
            config_logger.warning(
                "the shared cache is not authenticated (insecure_shared_cache): whoever can "
                "write to it can make any token valid, as any user; set cache_secret "
                "(issuer %s)",
                self._named_issuers,
            )
        self._http.telemetry = telemetry
        if self._shared is not None:
            self._shared.telemetry = telemetry
        self._verified: BoundedCache[AccessToken] = BoundedCache(verified_cache_size)
        self._known_headers: dict[str, Header] = {}
        self._scope_memo = ScopeMemo()  # this validator's, bounded: never module state
        self._sources = KeySources(
            self.settings,
            self._http,
            self._clock,
            self._shared,
            self._verified.clear,
            telemetry,
        )
        # One plain issuer: no selection, the one key set (today's direct path). Otherwise
        # each token's iss selects the key set that may verify it.
        settings = self.settings
        self._keys = self._sources.by_issuer[settings.issuer]
        single = len(settings.issuers) == 1 and not settings.issuer_rules.templates
        self._by_issuer = None if single else self._sources.by_issuer
        self._discovery = self._sources.discovery
        self._introspector = self._make_introspector()
        self._dpop_setup(
            DPoPSettings(
                algorithms=dpop_algorithms,  # type: ignore[arg-type]  # normalised there
                iat_window=dpop_iat_window,
                leeway=dpop_leeway,
                public_url=dpop_public_url,
                forwarded=dpop_forwarded,
                forwarded_hops=dpop_forwarded_hops,
            ),
            NonceIssuer(
                as_secret(dpop_nonce_secret, dpop_nonce_secret_file, "dpop_nonce_secret"),
                period=dpop_nonce_period,
                context=json.dumps([self.settings.issuer, self.settings.audience]),
            )
            if dpop_nonce is True
            else None,
            MemoryReplayStore(dpop_replay_cache_size, clock=self._clock),
            dpop_replay_outage,
        )
        if dpop_nonce not in (True, False):
            raise ConfigurationError("dpop_nonce must be True or False", field="dpop_nonce")
        if dpop_nonce is False and (dpop_nonce_secret or dpop_nonce_secret_file) is not None:
            raise ConfigurationError(
                "dpop_nonce_secret is set, but dpop_nonce is off",
                field="dpop_nonce_secret",
                mentions=("dpop_nonce",),
            )
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the network work runs on
        self._guard: AsyncGenerator[None, None] | None = None  # see _closes_with()
        self._closed = False
        telemetry.owner = weakref.ref(self)
        _fork.register(self)

    def _make_introspector(self) -> Introspector | None:
        settings = self.settings
        if not settings.introspection:
            return None
        if self._discovery is None and settings.introspection_endpoint is None:
            raise ConfigurationError(
                "introspection_endpoint is not set, and no issuer has metadata to name it "
                f"(issuer {shown(settings.issuer)} is a template): set introspection_endpoint",
                field="introspection_endpoint",
            )
        return Introspector(
            settings,
            self._http,
            self._discovery,  # type: ignore[arg-type]  # None only with an endpoint
            self._clock,
            self._shared,
            scopes=self._scope_memo,
            telemetry=self._telemetry,
        )

    def _dpop_setup(
        self,
        settings: DPoPSettings,
        nonces: NonceIssuer | None,
        memory: MemoryReplayStore,
        outage: ReplayOutage,
    ) -> None:
        """The DPoP parts (RFC 9449): proof settings, nonces, the replay store (shared when
        the shared tier is configured)."""
        self.dpop_settings = settings
        """How proofs are judged and a request's public URL found (``DPoPSettings``)."""
        self._nonces = nonces
        self._replay_memory = memory
        mode = self.settings.dpop
        self._bearer_refused = mode == "required"  # read by every bearer validation
        self._max_token_size = self.settings.max_token_size  # the same
        if mode == "disabled" and (
            nonces is not None or settings.public_url or settings.forwarded != "none"
        ):
            raise ConfigurationError(
                "a dpop_* setting is given, but dpop is 'disabled': set dpop='allowed' or "
                "'required', or remove it",
                field="dpop",
            )
        shared = self._shared
        self._replay: MemoryReplayStore | SharedReplayStore = memory
        check_outage(outage)
        if shared is not None and mode != "disabled":
            audiences = json.dumps(sorted(self.settings.audience)).encode()
            scope = sha256(audiences).hexdigest()[:16]  # the issuer is in the namespace
            self._replay = SharedReplayStore(shared, scope, memory, outage)

    @property
    def dpop_mode(self) -> DPoPMode:
        """``"disabled"``, ``"allowed"`` or ``"required"`` (the ``dpop`` setting)."""
        return self.settings.dpop

    def dpop_nonce(self) -> str | None:
        """The nonce to send in ``DPoP-Nonce`` now (RFC 9449 §8.2), or ``None`` when server
        nonces are off. The same in every process that shares ``dpop_nonce_secret``."""
        nonces = self._nonces
        return None if nonces is None else nonces.current(self._clock.time())

    @property
    def _named_issuers(self) -> str:
        """The issuer, or the issuers, as a log line names them."""
        issuers = self.settings.issuers
        return issuers[0] if len(issuers) == 1 else ", ".join(issuers)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Unpack[ValidatorOverrides]
    ) -> Self:
        """A validator configured from ``OAUTH_SHIELD_*`` environment variables.

        Each parameter ``name`` is read from ``OAUTH_SHIELD_<NAME>`` (lists split on commas
        and/or whitespace); the client secret from ``OAUTH_SHIELD_CLIENT_SECRET`` or, better, a
        file named by ``OAUTH_SHIELD_CLIENT_SECRET_FILE``. ``overrides`` win. ``environ`` may be
        any mapping (a framework's config). A missing or invalid setting raises
        :class:`ConfigurationError` naming its key (an override: its argument).
        """
        source = os.environ if environ is None else environ
        return configured(cls, source, dict(overrides), TokenValidator)

    def __repr__(self) -> str:
        issuers = self.settings.issuers
        issuer = issuers[0] if len(issuers) == 1 else list(issuers)
        return f"TokenValidator(issuer={issuer!r}, audience={self.settings.audience!r})"

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Open on the running loop and warm the key set in the background. A closed
        validator may be entered again: each ``async with`` block is one serving cycle."""
        await self.start()
        return self

    async def start(self) -> None:
        """Start warming the caches (metadata and key set) in the background, and return.

        Call it at application start-up so that the first requests do not wait for the key
        set; ``async with`` calls it. It binds the validator to the running loop and reopens
        it after :meth:`aclose` (each serving cycle starts it again). Fetch failures are logged
        and retried, never raised: use :meth:`check` to fail a start-up on a configuration
        that cannot work.
        """
        self._closed = False
        await self._enter_loop()
        self._sources.start()

    async def check(self) -> None:
        """Fetch the issuer's metadata and key set now; raise if tokens cannot be checked.

        For a start-up check or a readiness endpoint. Raises :class:`ConfigurationError` when
        the configuration cannot work as it is (the metadata names another issuer, an endpoint
        answers 404 or with something that is not a usable key set, an endpoint is not https,
        no introspection endpoint is known), and :class:`IssuerUnavailableError` when the
        issuer cannot be reached right now (connection, timeout, a 5xx answer). The message
        names the issuer and what to change; it never holds a secret. On success the fetched
        keys are installed, as :meth:`start` would have done.
        """
        await self.start()
        failed = await self._sources.refresh()
        if failed is not None:
            keys, failure = failed
            raise readiness_error(failure, f"the key set of {keys.issuer}")
        discovery = self._discovery  # never None with introspection and no endpoint
        if (
            self._introspector is not None
            and self.settings.introspection_endpoint is None
            and discovery is not None
        ):
            try:
                await discovery.endpoint("introspection_endpoint")
            except FetchError as error:
                raise readiness_error(
                    error, f"the introspection endpoint of {discovery.issuer}"
                ) from None

    async def metadata(self) -> Mapping[str, Any]:
        """The issuer's metadata (RFC 8414, OpenID Connect Discovery), as discovered and
        checked (it names the configured issuer), read-only.

        For documentation that names the issuer's endpoints, such as an OpenAPI security
        scheme. Raises :class:`ConfigurationError` or :class:`IssuerUnavailableError` as
        :meth:`check` does.
        """
        discovery = self._discovery
        if discovery is None:
            raise ConfigurationError(
                f"issuer {shown(self.settings.issuer)} is a template: it has no metadata "
                "document to read",
                field="issuer",
            )
        try:
            return MappingProxyType(await discovery.metadata())
        except FetchError as error:
            raise readiness_error(error, f"the metadata of {discovery.issuer}") from None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop background work and close connections to the issuer and the shared cache.

        From then on :meth:`validate` raises ``RuntimeError``: a validator used after its end
        is a bug to see, not an outage to hide behind a 503 or silently new connections.
        """
        bound = self._loop
        if bound is not None and bound is not asyncio.get_running_loop():
            if bound.is_running():
                raise RuntimeError(FOREIGN_LOOP)
            await self._leave_loop()  # what belonged to a loop that ended cannot be closed
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        """Close what belongs to the bound loop, on it; keep the caches and the binding."""
        if self._introspector is not None:
            await self._introspector.aclose()
        await self._sources.aclose()
        await self._http.aclose()
        if self._shared is not None:
            await self._shared.aclose()

    async def _bind(self) -> None:
        """Before network work: run on the running loop (see :meth:`_enter_loop`). A token
        answered from the caches needs no loop, so only this path checks."""
        if self._closed or self._loop is not asyncio.get_running_loop():
            await self._enter_loop()

    async def _enter_loop(self) -> None:
        """Run on the running loop from now on; called whenever it is not the bound one."""
        if self._closed:
            raise RuntimeError(CLOSED)
        loop = asyncio.get_running_loop()
        bound = self._loop
        if bound is loop:
            return
        if bound is not None:
            if bound.is_running():
                raise RuntimeError(FOREIGN_LOOP)
            logger.debug("the event loop of this validator has ended; moving to a new one")
            await self._leave_loop()
        self._loop = loop
        self._guard = guard = self._closes_with(loop)
        await anext(guard)

    async def _closes_with(self, loop: asyncio.AbstractEventLoop) -> AsyncGenerator[None, None]:
        """Suspended for as long as ``loop`` runs. ``asyncio.run()`` and test runners close
        every such generator before they close the loop (``loop.shutdown_asyncgens()``): this
        one then closes the validator's connections, on that loop, while it still runs."""
        try:
            yield
        finally:
            if self._loop is loop and not loop.is_closed():
                await self._release()

    async def _leave_loop(self) -> None:
        """Move off a loop that has ended: what belonged to it is dropped, not closed (it
        would need that loop); if it shut down cleanly, it was closed then."""
        guard = self._guard
        self._forget_loop(_drop)
        if guard is not None:
            await guard.aclose()  # finished: it will not ask the old loop to finalize it

    def _forget_loop(self, keep: Callable[[object], None]) -> None:
        """Drop what belongs to the bound loop (or, after a fork, to the parent process):
        connections, flights, the shared cache's client, the loop itself. ``keep`` receives
        each dropped object. The caches stay."""
        keep(self._loop)
        keep(self._guard)
        self._loop, self._guard = None, None
        keep(self._http.forget())
        self._sources.forget_loop(keep)
        if self._introspector is not None:
            self._introspector.forget_loop(keep)
        if self._shared is not None:
            self._shared.renew(keep)

    def _after_fork(self) -> None:
        """In a forked child (see ``_fork``): nothing of the parent's loop or connections is
        used, closed or collected; the caches (their locks made anew) are kept."""
        self._diagnosis_lock = threading.Lock()  # a thread of the parent may have held it
        self._replay_memory.after_fork()
        self._forget_loop(_fork.keep)

    # --- validation ------------------------------------------------------------------

    async def validate(
        self,
        token: str,
        scopes: Iterable[str] | str | None = None,
        *,
        requester: str | None = None,
        dpop: DPoPRequest | None = None,
    ) -> AccessToken:
        """Validate ``token`` and require every scope in ``scopes``.

        Returns the :class:`AccessToken`. Raises :class:`AuthError` (and nothing else) for any
        token that is not acceptable, whatever its content: :class:`InvalidTokenError` (401),
        :class:`InsufficientScopeError` (403), :class:`TemporarilyUnavailableError` (503) when
        the issuer cannot be reached and nothing cached can answer.

        ``dpop`` says the token came with the ``DPoP`` scheme (RFC 9449 §7.1): every ``DPoP``
        header value of the request, its method and its public URL (see
        :class:`DPoPRequest`). The proof is checked first, then the token, then its binding
        to the proof's key, then (last, so only otherwise valid requests fill it) the replay
        store: :class:`InvalidDPoPProofError` or :class:`InvalidTokenError` on refusal.
        Without ``dpop`` the token is a bearer token: a DPoP-bound one is refused (§7.2),
        and every token is refused when ``dpop="required"``.

        ``requester`` is an opaque id of who presented the token (adapters pass the client's
        address): introspection calls are charged to it first, so that one client can never
        spend the budget of the others. It is never logged; ``None`` is one anonymous requester
        shared by every caller that passes none (docs/introspection.md, "Fairness").

        Raises ``RuntimeError`` instead for two programming errors: a validator used after
        :meth:`aclose` (before it looks at the token), and one used from a second event loop,
        for a token that needs the network, while its own loop still runs in another thread
        (see the class docstring).
        """
        if self._closed:
            raise RuntimeError(CLOSED)
        required = required_scopes(scopes)
        sink = self._telemetry.sink  # None unless telemetry is on: the hot path's one check
        if sink is not None:
            return await self._observed(sink, token, required, requester, dpop)
        try:
            if dpop is None:  # the hot path, written out
                result = self._check_local(token, required)
                if isinstance(result, AccessToken):
                    return result  # answered without the event loop: no loop to check
                return self._as_bearer(await self._remote(result, requester), required)
            proof, found = self._dpop_local(token, dpop)
            if not isinstance(found, AccessToken):
                found = await self._remote(found, requester)
            return await self._with_proof(found, proof, required)
        except AuthError as error:
            self._refused(error, token, dpop)
            raise

    async def _observed(
        self,
        sink: Sink,
        token: str,
        required: frozenset[str],
        requester: str | None,
        dpop: DPoPRequest | None,
    ) -> AccessToken:
        """:meth:`validate` with telemetry on: timed and counted, its network half traced."""
        started, waited = perf_counter(), False
        verified = self._verified
        misses = verified.misses
        try:
            proof = None
            if dpop is None:
                result = self._check_local(token, required)
            else:
                proof, result = self._dpop_local(token, dpop)
            if isinstance(result, AccessToken):
                if verified.misses == misses:  # a hit (a miss counts itself, where it is paid)
                    verified.hits += 1
            else:
                waited = True
                result = await self._remote(result, requester)  # traced there
                if proof is None:
                    result = self._as_bearer(result, required)
            if proof is not None:
                result = await self._with_proof(result, proof, required)
        except AuthError as error:
            self._refused(error, token, dpop, started, waited)
            raise
        sink.accepted(result, BEARER if dpop is None else DPOP, token_kind(token), started, waited)
        return result

    def _refused(
        self,
        error: AuthError,
        token: object,
        dpop: DPoPRequest | None,
        started: float = 0.0,
        waited: bool = False,
    ) -> None:
        """Log and count a refusal; one that came with a proof gets the DPoP challenge."""
        scheme = BEARER
        if dpop is not None and self.settings.dpop != "disabled":
            error.scheme = "DPoP"  # its challenge is the DPoP one (RFC 9449 §7.1)
            scheme = DPOP
        self._log_rejection(error, token, scheme, started, waited)

    def _check_local(self, token: object, required: frozenset[str]) -> AccessToken | _Pending:
        """A bearer token's validation, as far as it goes without I/O; safe from any thread.

        The verified-token cache is asked here, inline: a hit is most requests, and each call
        saved is a tenth of its cost."""
        if self._bearer_refused:  # dpop="required"
            raise InvalidDPoPProofError(Reason.DPOP_MISSING)
        # _digest(), written out: this path runs for every request.
        if type(token) is not str or len(token) > self._max_token_size or not token.isascii():
            raise InvalidTokenError(
                Reason.TOKEN_TOO_LARGE
                if type(token) is str and len(token) > self._max_token_size
                else Reason.MALFORMED_TOKEN
            )
        digest = sha256(token.encode()).digest()
        now = self._clock.time()
        cached = self._verified.get(digest, now)
        found = self._unverified(token, digest, now) if cached is None else cached
        if type(found) is not AccessToken:
            return found  # the network must judge it
        if found.jkt is not None:  # a bound token presented as a bearer token (RFC 9449 §7.2)
            raise InvalidTokenError(Reason.KEY_BOUND)
        if required and not required <= found.scopes:
            raise InsufficientScopeError(required)
        return found

    def _as_bearer(self, token: AccessToken, required: frozenset[str]) -> AccessToken:
        """A token presented as a bearer token: never a bound one (RFC 9449 §7.2)."""
        if token.jkt is not None:
            raise InvalidTokenError(Reason.KEY_BOUND)
        return grant(token, required)

    def _dpop_local(self, token: object, dpop: DPoPRequest) -> tuple[Proof, AccessToken | _Pending]:
        """The proof's checks (one signature), then the token's local half; any thread."""
        if self.settings.dpop == "disabled":  # as an adapter treats an unknown scheme
            raise MissingTokenError(Reason.OTHER_SCHEME)
        proof_text = single_proof(dpop.proofs)
        if proof_text is None:
            raise InvalidDPoPProofError(Reason.DPOP_MISSING)
        digest = self._digest(token)
        proof = check_proof(
            proof_text,
            method=dpop.method,
            url=dpop.url,
            token_digest=digest,
            now=self._clock.time(),  # read again below: a signature check lies between
            settings=self.dpop_settings,
            nonces=self._nonces,
        )
        now = self._clock.time()
        cached = self._verified.get(digest, now)
        if cached is not None:
            return proof, cached
        return proof, self._unverified(cast(str, token), digest, now)  # a str: _digest said so

    def _bound(self, token: AccessToken, proof: Proof, required: frozenset[str]) -> AccessToken:
        check_binding(proof, token.jkt)  # RFC 9449 §7.1: the token's key made the proof
        return grant(token, required)

    async def _with_proof(
        self, token: AccessToken, proof: Proof, required: frozenset[str]
    ) -> AccessToken:
        """The binding and the scopes, then (last, so only otherwise valid requests fill it)
        the replay store."""
        accepted = self._bound(token, proof, required)
        if not self._first_use_here(proof):  # a shared store: on this validator's loop
            await self._bind()
            await self._first_use(proof)
        return accepted

    async def _first_use(self, proof: Proof) -> None:
        if not await self._replay.first_use(proof.replay_key, proof.expires_at):
            raise InvalidDPoPProofError(Reason.DPOP_REPLAYED)

    def _first_use_here(self, proof: Proof) -> bool:
        """The replay check in the calling thread, if the store is this process's (``False``:
        it needs the event loop); raises on a replay."""
        store = self._replay
        if not isinstance(store, MemoryReplayStore):
            return False
        if not store.check(proof.replay_key, proof.expires_at, self._clock.time()):
            raise InvalidDPoPProofError(Reason.DPOP_REPLAYED)
        return True

    def _digest(self, token: object) -> bytes:
        """The token's SHA-256, after the checks that need no parsing."""
        if type(token) is not str:  # as _check_local: no str subclass with its own encode()
            raise InvalidTokenError(Reason.MALFORMED_TOKEN)
        if len(token) > self.settings.max_token_size:
            raise InvalidTokenError(Reason.TOKEN_TOO_LARGE)
        if not token.isascii():
            raise InvalidTokenError(Reason.MALFORMED_TOKEN)
        return sha256(token.encode()).digest()  # token_digest(), without the call

    def _unverified(self, token: str, digest: bytes, now: float) -> AccessToken | _Pending:
        """A token the verified-token cache does not hold: everything that needs no I/O
        (introspection verdicts, parsing, key lookup, signature, claims); safe from any
        thread. No scope check."""
        introspector = self._introspector
        if introspector is not None and (judged := introspector.lookup(digest)) is not None:
            return judged
        jws = self._route(token)
        if jws is None:
            # Cannot be a JOSE object (or a well-formed one, and every token is introspected):
            # only the server can tell.
            if not is_b64token(token):
                raise InvalidTokenError(Reason.MALFORMED_TOKEN)
            if introspector is None:
                raise InvalidTokenError(Reason.UNSUPPORTED_TOKEN)
            return _NeedIntrospection(token, digest, introspector)
        by_issuer = self._by_issuer
        if by_issuer is None:  # one plain issuer: its key set, iss checked with the claims
            keys, issuer = self._keys, None
        else:  # selected on the unverified iss, before any key lookup or fetch
            issuer = self.settings.issuer_rules.select(jws.claims)
            keys = by_issuer[issuer]
            issuer = jws.claims["iss"]  # a template's, with the tenant's id in it
        found = keys.lookup(jws.header.kid, jws.header.alg)
        if isinstance(found, Need):
            if (
                found is Need.KID
                and issuer is None
                and jws.claims.get("iss") != self.settings.issuer
            ):
                # Not ours, whatever its key: an unknown iss never costs a refetch.
                raise InvalidTokenError(
                    Reason.ISSUER_MISMATCH if "iss" in jws.claims else Reason.MISSING_CLAIM
                )
            return _NeedKeys(jws, digest, keys, issuer)
        return self._finish(jws, found, digest, now, issuer)

    def _route(self, token: str) -> CompactJWS | None:
        """The JWS to judge here, or ``None`` for a token the server must judge.

        Whatever is, or tries to be, a JOSE object is judged here and, when malformed, refused
        here: never sent, where a lenient library might read ``<jws>~`` or ``<jws>=`` as the
        valid token it was made from. With ``introspect_all`` a *well-formed* JWS or JWE still
        goes to the server, which was asked to judge every token it issued.
        """
        algorithms, known = self.settings.algorithms, self._known_headers
        if not self.settings.introspect_all:
            jws = parse_compact(token, algorithms, known)
            if jws is None and looks_like_jose(token):
                raise InvalidTokenError(
                    Reason.UNSUPPORTED_TOKEN if token.count(".") == 4 else Reason.MALFORMED_TOKEN
                )
            return jws
        jose = looks_like_jose(token) and not is_compact_jwe(token)
        if jose and parse_compact(token, algorithms, known) is None:
            raise InvalidTokenError(Reason.MALFORMED_TOKEN)
        return None

    async def _remote(
        self, pending: _Pending, requester: str | None = None, parent: object = None
    ) -> AccessToken:
        """:meth:`_check_remote` on this validator's loop (``parent``: the caller's trace
        context, from the sync facade's thread)."""
        await self._bind()
        remote = self._check_remote(pending, requester)
        sink = self._telemetry.sink
        return await (remote if sink is None else sink.remote(remote, _kind(pending), parent))

    async def _remote_first_use(self, proof: Proof) -> None:
        """:meth:`_first_use` for the sync facade, on its loop thread (a shared store)."""
        await self._bind()
        await self._first_use(proof)

    async def _check_remote(self, pending: _Pending, requester: str | None = None) -> AccessToken:
        """The half that waits for the network, then finishes like the local half (no scope
        check: the caller's)."""
        if isinstance(pending, _NeedIntrospection):
            introspector = pending.introspector
            return await introspector.introspect(pending.token, pending.digest, requester)
        header = pending.jws.header
        verify = await pending.keys.resolve(header.kid, header.alg)
        now = self._clock.time()
        return self._finish(pending.jws, verify, pending.digest, now, pending.issuer)

    def _finish(
        self,
        jws: CompactJWS,
        verify: Verifier,
        digest: bytes,
        now: float,
        issuer: str | None = None,
    ) -> AccessToken:
        if not verify(jws.signing_input, jws.signature):
            raise InvalidTokenError(Reason.BAD_SIGNATURE)
        if jws.header_b64 not in self._known_headers:
            self._remember_header(jws)
        settings = self.settings
        token = check_claims(
            jws.header.params,
            jws.claims,
            settings,
            now,
            fingerprint(digest),
            self._scope_memo,
            issuer,
        )
        # Remembered until it expires, but re-verified at least once per key-set TTL: a token
        # whose key has since left the key set must not live on in this cache.
        self._verified.put(
            digest, token, min(jws.claims["exp"] + settings.leeway, now + settings.jwks_ttl)
        )
        return token

    def _remember_header(self, jws: CompactJWS) -> None:
        """Keep the parse of a header that signed a valid token: the next token from the same
        key skips decoding it. Only verified headers get in, so junk cannot crowd them out."""
        known = self._known_headers
        if len(known) >= MAX_KNOWN_HEADERS:
            known.clear()
        known[jws.header_b64] = jws.header

    def _log_rejection(
        self,
        error: AuthError,
        token: object,
        scheme: str = BEARER,
        started: float = 0.0,
        waited: bool = False,
    ) -> None:
        """A refusal: its configuration diagnosis (the first time), its event (the INFO line
        ``token <fingerprint> refused: <reason>``) and its metrics."""
        if error.reason in self._undiagnosed:
            self._diagnose(error.reason, token)
        if isinstance(token, str) and len(token) > self.settings.max_token_size:
            token = None  # named "-", as a value that is no string
        self._telemetry.refused(error, token, scheme, started, waited)

    def _diagnose(self, reason: Reason, token: object) -> None:
        """One WARNING, the first time a reason that usually means misconfiguration refuses a
        token: the configured value, what the token carried, the likely fix."""
        with self._diagnosis_lock:
            if reason not in self._undiagnosed or not isinstance(token, str):
                return
            warning = refusal_warning(
                reason, token, text_fingerprint(token), self.settings, self._keys.keys
            )
            left = self._diagnoses.get(reason, MAX_DIAGNOSES) - 1
            self._diagnoses[reason] = left
            if warning is None and left > 0:
                return
            self._undiagnosed.discard(reason)
        if warning is not None:
            self._telemetry.emit(
                ConfigurationSuspected(
                    issuer=self.settings.issuer, reason=reason.value, message=warning
                )
            )

    # --- operations ------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Send this validator's events (:mod:`oauth_shield.events`) to ``listener``, a
        callable taking one event, called synchronously where the event happens; returns the
        function that unsubscribes it. A listener that raises is logged once and never breaks
        a validation."""
        return self._telemetry.subscribe(listener)

    async def health(self) -> dict[str, Any]:
        """A health document: whether tokens can be checked now, from what the validator
        knows (it fetches nothing). A plain JSON-able dict without any secret:
        ``status`` (``ok``, ``degraded`` or ``failing``), the issuer, the key set's state and
        age, the last fetch's result, introspection and the shared tier (docs/operations.md).
        """
        return health_document(self)


def _kind(pending: _Pending) -> str:
    """The ``token_kind`` of a validation that waits for the network."""
    return token_kind(pending.token) if isinstance(pending, _NeedIntrospection) else "jwt"


def readiness_error(failure: FetchError, what: str) -> ConfigurationError | IssuerUnavailableError:
    """What :meth:`TokenValidator.check` raises for a failed fetch of ``what``."""
    if failure.transient:
        return IssuerUnavailableError(f"{what} cannot be fetched right now: {failure.explain()}")
    return ConfigurationError(f"{what} cannot be used: {failure.explain()}")
