"""The shared cache tier: an aiocache cache (Redis) behind the in-process caches.

Theory of operation
-------------------
- What is shared: the issuer's metadata, its key set, and introspection verdicts (the
  allowlisted fields of an answer, or the reason for a refusal). Keys are
  ``oauth_shield:<issuer hash>:<kind>[:<token SHA-256>]``: never a token or a piece of one.
  Values are JSON text of data that passed the same filters as the in-process caches.
- The in-process tier stays in front: a hit there costs no round trip; this tier is asked only
  on a miss, before the authorization server.
- Cross-process single-flight (:meth:`SharedCache.once`): the first process to miss takes a
  lease (``SET NX`` with a TTL), asks the server and publishes the answer; the others poll for
  it. A waiter that sees no answer when the lease ends (the holder died) asks the server
  itself, so a lost holder delays a request by one lease at most.
- Redis trouble never fails a request: every operation has a short timeout; the first error
  takes the tier out of use for a backoff (logged once per outage, with the recovery logged
  too), and requests go on with the in-process tier and the server, as without Redis.
- Trust: whoever can write to this cache could make tokens valid (a key set of their own, a
  positive verdict). With a ``cache_secret``, every value carries an HMAC-SHA256 over its key
  and its text, and a value that fails it is ignored (and logged): a writer without the
  secret can then only delete. Redis still belongs to the trust boundary: authenticate it,
  keep it private (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._json import parse_object
from ._secret import Secret

logger = logging.getLogger("oauth_shield.shared")

#: Longest any one cache operation may take before the tier is considered down. Not shorter:
#: the clock runs on the event loop, and a busy worker's loop lag must not read as an outage.
OPERATION_TIMEOUT = 1.0
#: How long the tier stays out of use after an error.
OUTAGE_BACKOFF = 5.0
#: How often a waiter looks for the holder's answer.
POLL_INTERVAL = 0.02


def number(value: object) -> float:
    """A number read from a shared document, or 0 for anything else."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class SharedCache:
    """A namespaced, failure-tolerant view of an aiocache cache."""

    def __init__(
        self,
        cache: Any,
        issuer: str,
        *,
        secret: Secret | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.namespace = "oauth_shield:" + hashlib.sha256(issuer.encode()).hexdigest()[:16]
        self._mac_key = None if secret is None else secret.reveal().encode()
        self._monotonic = monotonic
        self._down_until = -float("inf")
        self._down = False
        self._forged = False

    @property
    def available(self) -> bool:
        return self._monotonic() >= self._down_until

    def key(self, kind: str, digest: bytes | None = None) -> str:
        return f"{self.namespace}:{kind}" + (f":{digest.hex()}" if digest is not None else "")

    async def get(self, key: str) -> dict[str, Any] | None:
        """The object stored under ``key``, or ``None`` (missing, unreadable, or Redis down)."""
        text = await self._call(self.cache.get, key)
        if not isinstance(text, str):
            return None
        if self._mac_key is not None:
            mac, _, text = text.partition(":")
            if not hmac.compare_digest(mac, self._mac(key, text)):
                if not self._forged:  # once per process: a flood of forgeries is one line
                    self._forged = True
                    logger.error(
                        "a shared cache entry failed authentication; entries like it are ignored"
                    )
                return None
        return parse_object(text.encode())

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        if ttl <= 0:
            return
        text = json.dumps(value, separators=(",", ":"))
        if self._mac_key is not None:
            text = f"{self._mac(key, text)}:{text}"
        await self._call(self.cache.set, key, text, ttl=float(ttl))

    def _mac(self, key: str, text: str) -> str:
        """Bound to the key too: a valid entry moved under another key does not verify."""
        assert self._mac_key is not None
        return hmac.new(self._mac_key, f"{key}\n{text}".encode(), hashlib.sha256).hexdigest()

    async def once(
        self,
        key: str,
        produce: Callable[[], Awaitable[tuple[dict[str, Any], float]]],
        *,
        lease: float,
        accept: Callable[[dict[str, Any]], bool] = lambda value: True,
    ) -> dict[str, Any]:
        """The shared value under ``key`` if ``accept`` takes it, else one process's ``produce()``.

        ``produce`` returns the value and its TTL; it raises when there is nothing to share
        (the server failed), and then nothing is published.
        """
        found = await self.get(key)
        if found is not None and accept(found):
            return found
        lock, token = key + ":lock", secrets.token_hex(8)
        # Stored raw (no serializer), as aiocache's own RedLock does, so that the release
        # script's compare-and-delete matches it.
        taken = await self._call(
            self.cache.add, lock, token, ttl=float(lease), dumps_fn=str, default=False
        )
        if taken is not False:
            try:
                # Look again: the last holder may have published and released between our
                # miss and our lease.
                found = await self.get(key)
                if found is not None and accept(found):
                    return found
                value, ttl = await produce()
                await self.set(key, value, ttl)
                return value
            finally:
                await self._call(self.cache._redlock_release, self.cache.build_key(lock), token)
        deadline = time.monotonic() + lease  # real time: the lease expires in Redis, in real time
        while self.available and time.monotonic() < deadline:
            await asyncio.sleep(POLL_INTERVAL)
            found = await self.get(key)
            if found is not None and accept(found):
                return found
        return (await produce())[0]  # the holder is gone, or Redis is: ask ourselves

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
        except ValueError:  # aiocache's add() on an existing key: the lease is taken
            return False
        except Exception as error:  # any backend error: connection, timeout, protocol
            failure = type(error).__name__
        if failure is None:
            if self._down:
                self._down = False
                logger.warning("shared cache is back")
            return result
        self._down_until = self._monotonic() + OUTAGE_BACKOFF
        if not self._down:
            self._down = True
            logger.warning(
                "shared cache unavailable (%s); using the in-process cache, retrying in %.0f s",
                failure,
                OUTAGE_BACKOFF,
            )
        return default

    async def aclose(self) -> None:
        # aiocache's RedisCache.close() calls redis-py's deprecated close(): close the client
        # with its own aclose() when there is one (it closes the connection pool too).
        client = getattr(self.cache, "client", None)
        close = getattr(client, "aclose", None) or self.cache.close
        try:
            await close()
        except Exception:  # closing a broken connection pool must not fail a shutdown
            logger.debug("closing the shared cache failed", exc_info=True)
