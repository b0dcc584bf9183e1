"""The shared cache tier: an aiocache cache (Redis) behind the in-process caches.

Theory of operation
-------------------
- What is shared: the issuer's metadata, its key set, and introspection verdicts (the
  allowlisted fields of an answer, or the reason for a refusal). Keys are
  ``oauth_shield:<issuer hash>:<kind>[:<part>...]``, never a token or a piece of one. A
  verdict's key holds the token's SHA-256 and a hash of every setting the verdict depends on
  (see ``_introspector``), so two APIs sharing a Redis never read each other's verdicts. Key
  sets and metadata belong to the issuer and are shared by every API that trusts it.
- Every value is an envelope, ``<MAC>:<JSON>``; the JSON holds the format version, the key,
  the absolute (wall-clock) expiry and the value. A reader takes an entry only if it parses,
  names its own key and version, has not expired, and does not claim to live longer than the
  reader would keep such a value itself (plus :data:`CLOCK_SKEW`); anything else is a miss.
  Redis TTLs are housekeeping only: a value written back without one still expires.
- With a ``cache_secret`` the MAC is HMAC-SHA256 over that JSON text: a writer without the
  secret cannot forge, alter, move or prolong an entry. It can delete one, or write back a
  value it read while that value is still current (which changes nothing): a fetch at most.
  Without the secret (``insecure_shared_cache=True``) the MAC is empty and a writer can make
  any token valid: docs/deployment.md says exactly what it can do.
- Reads are bounded: ``GETRANGE`` fetches at most ``max_bytes``, the bytes are compared, never
  decoded first, and a value of the wrong Redis type is a miss, not an outage.
- Cross-process single-flight (:meth:`SharedCache.once`): the first process to miss takes a
  lease (``SET NX`` with a TTL), whose value is an envelope too; it asks the server and
  publishes the answer. The others poll for it, but only while the lease is genuine and
  current, and never beyond the fetch budget; then they ask the server themselves. A holder
  that died, or a squatter, costs one fetch budget at most; a forged lease costs nothing.
- Redis trouble never fails a request: every operation has a short timeout; the first error
  takes the tier out of use for a backoff (logged once per outage, with the recovery logged
  too), and requests go on with the in-process tier and the server, as without Redis.
- A connection belongs to one process and one event loop: after a fork, or when a validator
  moves to a new loop, :meth:`SharedCache.renew` makes a new client (one shared with the
  parent would interleave both processes' replies on one socket).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from ._clock import Clock
from ._config import Settings, shown
from ._errors import ConfigurationError
from ._json import parse_object
from ._secret import Secret
from ._telemetry import LOG_ONLY, Telemetry
from .events import SharedEntryRejected, SharedTierBack, SharedTierDown

logger = logging.getLogger("oauth_shield.shared")

#: Longest any one cache operation may take before the tier is considered down. Not shorter:
#: the clock runs on the event loop, and a busy worker's loop lag must not read as an outage.
OPERATION_TIMEOUT = 1.0
#: How long the tier stays out of use after an error.
OUTAGE_BACKOFF = 5.0
#: Shortest cache_secret accepted: a shorter one could be guessed offline from one entry.
MIN_CACHE_SECRET_LENGTH = 16
#: How often a waiter looks for the holder's answer.
POLL_INTERVAL = 0.02
#: The envelope's format; a reader refuses any other (a rolling upgrade costs one refetch).
FORMAT = 1
#: How far the clocks of machines sharing a Redis may disagree: an entry whose expiry lies
#: further ahead than the reader's own lifetime for it plus this is refused.
CLOCK_SKEW = 30.0
#: A lease outlives the holder's fetch budget by this much: publishing takes a moment too.
LEASE_MARGIN = 1.0
#: Keeps one HMAC key from ever authenticating anything but this cache's envelopes.
_MAC_CONTEXT = b"oauth_shield shared cache\n"

#: A value read from the tier and how many more seconds it may be used.
Entry = tuple[dict[str, Any], float]
#: The longest a reader keeps a value, given the value (a failure marker lives shorter).
Bound = Callable[[dict[str, Any]], float]


def number(value: object) -> float:
    """A number read from a shared document, or 0 for anything else."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _as_is(value: Any) -> Any:
    """Stands in for the cache's serializer: envelopes go to Redis as they are (a pickle
    serializer would run code chosen by whoever can write to Redis)."""
    return value


_UNANSWERED = object()


class SharedCache:
    """A namespaced, authenticated, failure-tolerant view of an aiocache cache."""

    def __init__(
        self,
        cache: Any,
        issuer: str,
        *,
        secret: Secret | None = None,
        max_bytes: int = 1 << 20,
        url: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.namespace = _namespace(issuer)
        self._mac_key = None if secret is None else secret.reveal().encode()
        self._max_bytes = max_bytes
        self._url = url  # the client is ours: made from this URL, made again after a fork
        self._redis = is_redis(cache)
        self._monotonic = monotonic
        self._wall = wall
        self._down_until = -math.inf
        self._down = False
        self._forged = False
        self.telemetry: Telemetry = LOG_ONLY  # the validator's (events, metrics)
        self.hits: dict[str, int] = {}  # per kind (jwks, metadata, introspection): found...
        self.misses: dict[str, int] = {}  # ...or not, at the first look of once()
        self.issuer = issuer

    @property
    def available(self) -> bool:
        return self._monotonic() >= self._down_until

    @property
    def down(self) -> bool:
        """Whether the last operation failed (the tier is out of use, or being retried)."""
        return self._down or self._down_until == math.inf

    def key(self, kind: str, *parts: str, issuer: str | None = None) -> str:
        """The key of a ``kind`` of entry, under the namespace of ``issuer`` (default: the
        validator's first): one tier serves every issuer of a validator, each apart."""
        namespace = self.namespace if issuer is None else _namespace(issuer)
        return ":".join((namespace, kind, *parts))

    # --- values ------------------------------------------------------------------------

    async def get(self, key: str, bound: Bound) -> Entry | None:
        """The value stored under ``key`` and its remaining life, or ``None`` for a miss:
        missing, unreadable, forged, expired, too long-lived, or Redis down."""
        if self._redis:
            found = await self._call(
                self.cache.raw, "getrange", self.cache.build_key(key), 0, self._max_bytes
            )
        else:
            found = await self._call(self.cache.get, key, loads_fn=_as_is)
        if isinstance(found, str):
            found = found.encode("utf-8", "surrogatepass")
        if not isinstance(found, bytes) or not found:
            return None
        return self._open(key, found, bound)

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        if ttl <= 0:
            return
        text = self._seal(key, value, ttl)
        if text is None or len(text) > self._max_bytes:
            return  # a reader would refuse it anyway
        # A float: aiocache sends PSETEX (milliseconds; 0 is refused), never the deprecated SETEX.
        await self._call(self.cache.set, key, text, ttl=max(float(ttl), 0.001), dumps_fn=_as_is)

    async def add_until(self, key: str, expires_at: float) -> bool | None:
        """Remember ``key`` until the wall-clock time ``expires_at`` unless it is there
        already, atomically (``SET key 1 NX PXAT``): ``True`` if it was not there, ``False``
        if it was, ``None`` if the cache cannot answer (down, or in its backoff)."""
        if expires_at <= self._wall():
            return True  # nothing to remember: the caller's window is over
        if self._redis:
            pxat = math.ceil(expires_at * 1000)  # Redis's own clock ends it; the key holds no value
            found = await self._call(
                self.cache.raw, "set", self.cache.build_key(key), b"1", nx=True, pxat=pxat,
                default=_UNANSWERED,
            )  # fmt: skip
            return None if found is _UNANSWERED else found is True
        ttl = max(expires_at - self._wall(), 0.001)
        found = await self._call(self.cache.add, key, "1", ttl=ttl, default=_UNANSWERED)
        if found is _UNANSWERED:  # add() raises ValueError for a key that exists
            return False if self.available else None
        return True

    def _seal(self, key: str, value: dict[str, Any], ttl: float) -> str | None:
        envelope = {"v": FORMAT, "key": key, "exp": self._wall() + ttl, "value": value}
        try:
            text = json.dumps(envelope, separators=(",", ":"), allow_nan=False)  # ASCII only
        except ValueError:
            return None
        mac = "" if self._mac_key is None else self._mac(text.encode()).decode()
        return f"{mac}:{text}"

    def _open(self, key: str, stored: bytes, bound: Bound) -> Entry | None:
        mac, colon, text = stored.partition(b":")
        if not colon or len(stored) > self._max_bytes:
            return None
        # Bytes, not str: compare_digest refuses str with non-ASCII characters (TypeError).
        if self._mac_key is not None and not hmac.compare_digest(mac, self._mac(text)):
            if not self._forged:  # once per process: a flood of forgeries is one line
                self._forged = True
                self.telemetry.emit(SharedEntryRejected(issuer=self.issuer))
            return None
        envelope = parse_object(text)
        if envelope is None or envelope.get("v") != FORMAT or envelope.get("key") != key:
            return None
        value, expires = envelope.get("value"), envelope.get("exp")
        if not isinstance(value, dict) or not number(expires):
            return None
        left, longest = number(expires) - self._wall(), bound(value)
        if not 0 < left <= longest + CLOCK_SKEW:
            logger.debug("a shared cache entry was expired or too long-lived; ignored")
            return None
        return value, min(left, longest)

    def _mac(self, text: bytes) -> bytes:
        """The key and expiry are inside ``text``: a moved or prolonged entry does not verify."""
        assert self._mac_key is not None
        return hmac.new(self._mac_key, _MAC_CONTEXT + text, hashlib.sha256).hexdigest().encode()

    # --- cross-process single-flight ---------------------------------------------------

    async def once(
        self,
        key: str,
        produce: Callable[[], Awaitable[tuple[dict[str, Any], float]]],
        *,
        budget: float,
        bound: Bound,
        accept: Callable[[dict[str, Any]], bool] = lambda value: True,
    ) -> Entry:
        """The shared value under ``key`` if ``accept`` takes it, else one process's
        ``produce()``, published for the others. ``produce`` returns the value and its TTL and
        takes at most ``budget`` seconds."""
        found = await self.get(key, bound)
        kind = key.split(":", 3)[2]
        if found is not None and accept(found[0]):
            self.hits[kind] = self.hits.get(kind, 0) + 1
            return found
        self.misses[kind] = self.misses.get(kind, 0) + 1
        lock, lease = key + ":lock", budget + LEASE_MARGIN
        token = self._seal(lock, {"holder": secrets.token_hex(8)}, lease)
        taken = await self._call(
            self.cache.add, lock, token, ttl=lease, dumps_fn=_as_is, default=False
        )
        if taken is not False:
            try:
                # Look again: the last holder may have published and released between our
                # miss and our lease.
                found = await self.get(key, bound)
                if found is not None and accept(found[0]):
                    return found
                return await self._produce(key, produce)
            finally:
                await self._call(self.cache._redlock_release, self.cache.build_key(lock), token)
        held = await self.get(lock, lambda lease_value: lease)  # a genuine, current lease only
        wait = 0.0 if held is None else min(held[1], budget)
        deadline = time.monotonic() + wait  # real time, as Redis TTLs
        while True:
            # Looked at once even without a lease: its holder may have just published.
            found = await self.get(key, bound)
            if found is not None and accept(found[0]):
                return found
            if not self.available or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        return await self._produce(key, produce)  # the holder is gone, or Redis is: ask ourselves

    async def _produce(
        self, key: str, produce: Callable[[], Awaitable[tuple[dict[str, Any], float]]]
    ) -> Entry:
        value, ttl = await produce()
        await self.set(key, value, ttl)
        return value, ttl

    # --- the connection ----------------------------------------------------------------

    async def _call(
        self,
        operation: Callable[..., Awaitable[Any]],
        *args: Any,
        default: Any = None,
        **kwargs: Any,
    ) -> Any:
        if not self.available:
            return default
        failure = None
        try:
            async with asyncio.timeout(OPERATION_TIMEOUT):
                result = await operation(*args, **kwargs)
        except ValueError:  # add() on an existing key (the lease is taken), or a value
            return default  # that does not decode: either way Redis is fine
        except Exception as error:  # any backend error: connection, timeout, protocol
            if str(error).startswith("WRONGTYPE"):  # a key of another type: a miss
                return default
            failure = type(error).__name__
        if failure is None:
            if self._down:
                self._down = False
                self.telemetry.emit(SharedTierBack(issuer=self.issuer))
            return result
        self._down_until = self._monotonic() + OUTAGE_BACKOFF
        first, self._down = not self._down, True
        self.telemetry.emit(
            SharedTierDown(
                issuer=self.issuer, error_type=failure, retry_in=OUTAGE_BACKOFF, first=first
            )
        )
        return default

    def renew(self, keep: Callable[[object], None]) -> None:
        """A client of this process and loop's own; the old one goes to ``keep`` unclosed."""
        old = self.cache
        if self._url is not None:
            self.cache = redis_cache(self._url)
            keep(old)
        elif not renew_client(old, keep):
            self._down_until = math.inf
            logger.warning(
                "the cache given as cache= cannot be renewed in a new process or event loop; "
                "this validator goes on without the shared tier (use redis_url, or create "
                "the validator after the fork)"
            )

    async def aclose(self) -> None:
        """Close our own client (the caller closes a cache it gave us); a new one, not yet
        connected, takes its place for whichever loop comes next."""
        if self._url is None:
            return
        # aiocache's RedisCache.close() calls redis-py's deprecated close(): close the client
        # with its own aclose() (it closes the connection pool too).
        try:
            await self.cache.client.aclose()
        except Exception:  # closing a broken connection pool must not fail a shutdown
            logger.debug("closing the shared cache failed", exc_info=True)
        self.cache = redis_cache(self._url)


def shared_cache(
    settings: Settings,
    redis_url: str | None,
    cache: Any,
    secret: Secret | None,
    insecure: bool,
    clock: Clock,
) -> SharedCache | None:
    """The shared tier, from a Redis URL or an aiocache instance (not both), if any.

    It needs a ``cache_secret``: without one, whoever can write to the cache can make any
    token valid, so running without it is an explicit choice (``insecure_shared_cache``).
    """
    if redis_url is not None and cache is not None:
        raise ConfigurationError("give redis_url or cache, not both")
    if redis_url is not None and (
        not isinstance(redis_url, str) or not redis_url.startswith(("redis://", "rediss://"))
    ):
        raise ConfigurationError(
            f"redis_url must be a redis:// or rediss:// URL; given {shown(redis_url)}",
            field="redis_url",
        )
    if not isinstance(insecure, bool):
        raise ConfigurationError(
            "insecure_shared_cache must be True or False", field="insecure_shared_cache"
        )
    if redis_url is not None:
        cache = redis_cache(redis_url)  # read first: a malformed URL is the first thing to fix
    if redis_url is None and cache is None:
        if secret is not None:
            raise ConfigurationError(
                "cache_secret needs a shared cache (redis_url or cache)",
                field="cache_secret",
                mentions=("redis_url",),
            )
        return None
    try:  # aiocache and redis are the `redis` extra: only the shared tier uses them
        import aiocache  # noqa: F401
    except ImportError:
        raise ImportError(
            "the shared cache (redis_url, cache) needs aiocache and redis: "
            "pip install 'oauth-shield[redis]'"
        ) from None
    if secret is None and not insecure:
        raise ConfigurationError(
            "a shared cache needs cache_secret (or cache_secret_file): without it, whoever can "
            "write to the cache can make any token valid (insecure_shared_cache=True runs "
            "without it)",
            field="redis_url" if redis_url is not None else None,
            mentions=("cache_secret", "cache_secret_file", "insecure_shared_cache"),
        )
    if secret is not None and insecure:
        raise ConfigurationError(
            "give cache_secret or insecure_shared_cache=True, not both",
            mentions=("cache_secret", "insecure_shared_cache"),
        )
    if secret is not None and len(secret.reveal()) < MIN_CACHE_SECRET_LENGTH:
        raise ConfigurationError(
            f"cache_secret must be at least {MIN_CACHE_SECRET_LENGTH} characters (32 random "
            "bytes are best)",
            field="cache_secret",
        )
    options: dict[str, Any] = {
        "secret": secret,
        # A key set of max_response_bytes, JSON-escaped (at most 3x) in its envelope.
        "max_bytes": 3 * settings.max_response_bytes + 4096,
        "monotonic": clock.monotonic,
        "wall": clock.time,
    }
    return SharedCache(cache, settings.issuer, url=redis_url, **options)


@functools.lru_cache(maxsize=256)
def _namespace(issuer: str) -> str:
    """Where an issuer's entries live: a digest, so no issuer text ends up in a key."""
    return "oauth_shield:" + hashlib.sha256(issuer.encode()).hexdigest()[:16]


def redis_cache(url: str) -> Any:
    """An aiocache ``RedisCache`` on redis-py's client for ``url``: redis-py reads all of it
    (``rediss://``, an ACL user and password, the database, options); aiocache's own
    ``from_url`` knows neither TLS nor ACL users."""
    try:
        import redis.asyncio
        from aiocache.backends.redis import RedisCache
    except ImportError:
        raise ImportError(
            "the shared cache (redis_url, cache) needs aiocache and redis: "
            "pip install 'oauth-shield[redis]'"
        ) from None
    cache = RedisCache()
    try:
        database = urlsplit(url).path.strip("/")
        if database and not database.isdigit():  # redis-py would quietly use database 0
            raise ValueError(database)
        cache.client = redis.asyncio.Redis.from_url(url)
    except (ValueError, TypeError):  # a malformed port, IPv6 host or database number
        raise ConfigurationError(
            f"redis_url is not a valid Redis URL; given {shown(url)}", field="redis_url"
        ) from None
    return cache


def is_redis(cache: Any) -> bool:
    try:
        from aiocache.backends.redis import RedisBackend
    except ImportError:
        return False
    return isinstance(cache, RedisBackend)


def renew_client(cache: Any, keep: Callable[[object], None]) -> bool:
    """Give an aiocache cache a client of its own in this process, if that can be done."""
    if getattr(cache, "NAME", None) == "memory":
        return True  # in-process: nothing is connected
    if not is_redis(cache):
        return False
    import redis.asyncio

    old = cache.client
    pool = old.connection_pool
    try:
        fresh = redis.asyncio.ConnectionPool(
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            **pool.connection_kwargs,
        )
    except Exception:  # a pool of a kind we cannot copy
        logger.debug("cannot copy the shared cache's connection pool", exc_info=True)
        return False
    client = redis.asyncio.Redis(connection_pool=fresh)
    client.auto_close_connection_pool = True
    cache.client = client
    keep(old)
    return True
