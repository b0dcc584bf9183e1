"""``TokenValidator``: the async shell that drives the pure core.

A validation runs in two halves. ``_check_local`` is synchronous and does no I/O: the
verified-token cache, strict parsing, key lookup in the installed key set, the signature and
the claims. Most requests end there. When it needs something only the network can give (a key
set, a refetch for an unknown kid), it returns a ``_Pending`` describing what, and
``_check_remote`` awaits it and finishes. The sync facade runs the same first half in the
caller's thread and sends only the second half to the event loop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from hashlib import sha256
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Self, Unpack

import httpx

from . import _config as defaults
from ._arguments import ValidatorOverrides
from ._bearer import is_b64token
from ._cache import BoundedCache
from ._claimpaths import ClaimName
from ._claims import ScopeMemo, check_claims, grant, required_scopes
from ._clock import Clock, SystemClock
from ._config import AuthMethod, Profile, Settings, shown
from ._diagnosis import CONFIGURATION_REASONS, refusal_warning
from ._errors import (
    AuthError,
    ConfigurationError,
    InvalidTokenError,
    IssuerUnavailableError,
    Reason,
)
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
from ._options import configured
from ._secret import Secret, as_secret
from ._shared import SharedCache
from ._token import AccessToken, fingerprint, text_fingerprint

logger = logging.getLogger("oauth_shield.validator")
config_logger = logging.getLogger("oauth_shield.config")

#: Distinct verified JOSE headers remembered: a few per signing key is all an issuer uses.
MAX_KNOWN_HEADERS = 64
#: Refusals of a reason that may mean misconfiguration, but was decided before the signature
#: (a forged alg, a random kid), are examined this many times; then that reason never again.
MAX_DIAGNOSES = 16


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


def shared_cache(
    issuer: str,
    redis_url: str | None,
    cache: Any,
    secret: Secret | None,
    monotonic: Callable[[], float],
) -> SharedCache | None:
    """The shared tier, from a Redis URL or an aiocache instance (not both), if any."""
    if redis_url is not None and cache is not None:
        raise ConfigurationError("give redis_url or cache, not both")
    if redis_url is not None or cache is not None:
        # aiocache and redis are the `redis` extra: only the shared tier uses them.
        try:
            from aiocache import Cache

            if redis_url is not None:
                import redis  # noqa: F401 - aiocache needs it for redis://
        except ImportError:
            raise ImportError(
                "the shared cache (redis_url, cache) needs aiocache and redis: "
                "pip install 'oauth-shield[redis]'"
            ) from None
    if redis_url is not None:
        if not isinstance(redis_url, str) or not redis_url.startswith(("redis://", "rediss://")):
            raise ConfigurationError(
                f"redis_url must be a redis:// or rediss:// URL; given {shown(redis_url)}",
                field="redis_url",
            )
        try:
            cache = Cache.from_url(redis_url)
        except ValueError:  # a malformed port, IPv6 host or database number
            raise ConfigurationError(
                f"redis_url is not a valid Redis URL; given {shown(redis_url)}", field="redis_url"
            ) from None
    if cache is None:
        if secret is not None:
            raise ConfigurationError("cache_secret needs a shared cache (redis_url or cache)")
        return None
    return SharedCache(cache, issuer, secret=secret, monotonic=monotonic)


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
        process. Or ``cache_secret_file``.
    :param transport: an ``httpx`` transport for all requests to the issuer (TLS settings,
        proxies, tests).
    :param clock: the clock seam (see :class:`~oauth_shield._clock.Clock`), for tests.

    The remaining parameters tune limits and caches; docs/configuration.md lists each one with
    its default and the reason for it.
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
        scope_claims: str | Iterable[ClaimName] = ("scope",),
        required_claims: Mapping[ClaimName, object] | str | None = None,
        allowed_clients: str | Iterable[str] | None = None,
        client_claim: str = defaults.DEFAULT_CLIENT_CLAIM,
        require_scope_claim: bool = False,
        tenants: str | Iterable[str] | None = None,
        any_tenant: bool = False,
        preset: str | None = None,
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
        self._http = HTTPClient(
            timeout=http_timeout,
            max_bytes=max_response_bytes,
            transport=transport,
            allow_http=insecure_http,
        )
        self._owns_cache = redis_url is not None
        secret = as_secret(cache_secret, cache_secret_file, "cache_secret")
        self._shared = shared_cache(
            self.settings.issuer, redis_url, cache, secret, self._clock.monotonic
        )
        if self._shared is not None and cache_secret is None and cache_secret_file is None:
            config_logger.warning(
                "the shared cache is not authenticated: whoever can write to it can make "
                "tokens valid; set cache_secret (issuer %s)",
                self._named_issuers,
            )
        self._verified: BoundedCache[AccessToken] = BoundedCache(verified_cache_size)
        self._known_headers: dict[str, Header] = {}
        self._scope_memo = ScopeMemo()  # this validator's, bounded: never module state
        self._sources = KeySources(
            self.settings,
            self._http,
            self._clock,
            lambda issuer: self._shared_for(issuer, secret),
            self._verified.clear,
        )
        # One plain issuer: no selection, the one key set (today's direct path). Otherwise
        # each token's iss selects the key set that may verify it.
        settings = self.settings
        self._keys = self._sources.by_issuer[settings.issuer]
        single = len(settings.issuers) == 1 and not settings.issuer_rules.templates
        self._by_issuer = None if single else self._sources.by_issuer
        self._discovery = self._sources.discovery
        self._introspector = self._make_introspector()

    def _shared_for(self, issuer: str, secret: Secret | None) -> SharedCache | None:
        """The shared tier under ``issuer``'s namespace (the same cache and secret)."""
        shared = self._shared
        if shared is None or issuer == self.settings.issuer:
            return shared
        return SharedCache(shared.cache, issuer, secret=secret, monotonic=self._clock.monotonic)

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
        )

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
        await self.start()
        return self

    async def start(self) -> None:
        """Start warming the caches (metadata and key set) in the background, and return.

        Call it at application start-up so that the first requests do not wait for the key
        set; ``async with`` calls it. Fetch failures are logged and retried, never raised:
        use :meth:`check` to fail a start-up on a configuration that cannot work.
        """
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
        """Stop background work and close connections to the issuer."""
        if self._introspector is not None:
            await self._introspector.aclose()
        await self._sources.aclose()
        await self._http.aclose()
        if self._shared is not None and self._owns_cache:
            await self._shared.aclose()

    def _forget_loop(self) -> None:
        """After a fork: drop what belonged to the parent's event loop, keep the caches."""
        self._http.forget()
        self._sources.forget_loop()
        if self._introspector is not None:
            self._introspector.forget_loop()

    # --- validation ------------------------------------------------------------------

    async def validate(
        self,
        token: str,
        scopes: Iterable[str] | str | None = None,
        *,
        requester: str | None = None,
    ) -> AccessToken:
        """Validate ``token`` and require every scope in ``scopes``.

        Returns the :class:`AccessToken`. Raises :class:`AuthError` (and nothing else) for any
        token that is not acceptable, whatever its content: :class:`InvalidTokenError` (401),
        :class:`InsufficientScopeError` (403), :class:`TemporarilyUnavailableError` (503) when
        the issuer cannot be reached and nothing cached can answer.

        ``requester`` is an opaque id of who presented the token (adapters pass the client's
        address): introspection calls are charged to it first, so that one client can never
        spend the budget of the others. It is never logged; ``None`` is one anonymous requester
        shared by every caller that passes none (docs/introspection.md, "Fairness").
        """
        required = required_scopes(scopes)
        try:
            result = self._check_local(token, required)
            if isinstance(result, AccessToken):
                return result
            return await self._check_remote(result, required, requester)
        except AuthError as error:
            self._log_rejection(error, token)
            raise

    def _check_local(self, token: object, required: frozenset[str]) -> AccessToken | _Pending:
        """Everything that needs no I/O; safe to call from any thread."""
        if not isinstance(token, str):
            raise InvalidTokenError(Reason.MALFORMED_TOKEN)
        if len(token) > self.settings.max_token_size:
            raise InvalidTokenError(Reason.TOKEN_TOO_LARGE)
        if not token.isascii():
            raise InvalidTokenError(Reason.MALFORMED_TOKEN)
        digest = sha256(token.encode()).digest()  # token_digest(), without the call
        now = self._clock.time()
        cached = self._verified.get(digest, now)
        if cached is not None:
            return grant(cached, required)
        introspector = self._introspector
        if introspector is not None and (judged := introspector.lookup(digest)) is not None:
            return grant(judged, required)
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
        return self._finish(jws, found, digest, required, now, issuer)

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

    async def _check_remote(
        self, pending: _Pending, required: frozenset[str], requester: str | None = None
    ) -> AccessToken:
        """The half that waits for the network, then finishes like the local half."""
        if isinstance(pending, _NeedIntrospection):
            introspector = pending.introspector
            judged = await introspector.introspect(pending.token, pending.digest, requester)
            return grant(judged, required)
        header = pending.jws.header
        verify = await pending.keys.resolve(header.kid, header.alg)
        now = self._clock.time()
        return self._finish(pending.jws, verify, pending.digest, required, now, pending.issuer)

    def _finish(
        self,
        jws: CompactJWS,
        verify: Verifier,
        digest: bytes,
        required: frozenset[str],
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
        return grant(token, required)

    def _remember_header(self, jws: CompactJWS) -> None:
        """Keep the parse of a header that signed a valid token: the next token from the same
        key skips decoding it. Only verified headers get in, so junk cannot crowd them out."""
        known = self._known_headers
        if len(known) >= MAX_KNOWN_HEADERS:
            known.clear()
        known[jws.header_b64] = jws.header

    def _log_rejection(self, error: AuthError, token: object) -> None:
        if error.reason in self._undiagnosed:
            self._diagnose(error.reason, token)
        if not logger.isEnabledFor(logging.INFO):
            return
        name = "-"
        if isinstance(token, str) and len(token) <= self.settings.max_token_size:
            name = text_fingerprint(token)
        logger.info("token %s refused: %s", name, error.reason.value)

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
            config_logger.warning("%s (logged once per validator)", warning)


def readiness_error(failure: FetchError, what: str) -> ConfigurationError | IssuerUnavailableError:
    """What :meth:`TokenValidator.check` raises for a failed fetch of ``what``."""
    if failure.transient:
        return IssuerUnavailableError(f"{what} cannot be fetched right now: {failure.explain()}")
    return ConfigurationError(f"{what} cannot be used: {failure.explain()}")
