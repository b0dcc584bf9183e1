"""``SyncTokenValidator``: the async core for threads, Flask and workers, without a fork of it.

Theory of operation
-------------------
- One event loop runs in one daemon thread for the whole process, started on first need. Every
  ``SyncTokenValidator`` hands its network work to that loop, so key sets, introspection
  verdicts and single-flight are shared by all threads.
- The warm path never crosses threads: a token in the verified cache, an introspection verdict
  in the cache, or a JWT whose key is in the installed key set, is answered in the caller's
  thread (``TokenValidator._check_local`` is thread-safe by construction). A hop costs about as
  much as a whole verification, so only the part that waits for the network takes it.
- Every cross-thread wait has a timeout; an expired wait answers 503, never hangs a worker.
- A loop thread that died (a callback raised ``SystemExit``, someone stopped its loop) is
  replaced on the next need, and a caller waiting on it tries once more on the new one;
  validators move to the new loop by themselves, keeping their caches.
- After ``fork()`` the child has no loop thread (threads do not survive a fork): the first need
  starts a new one. Every validator drops what was bound to the parent's loop (HTTP
  connections, flights, the shared cache's client) while keeping its caches (``_fork``).
- ``close()`` is final: ``validate()`` afterwards raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from . import _fork
from ._arguments import ValidatorOptions, ValidatorOverrides
from ._claims import required_scopes
from ._config import DPoPMode, Settings
from ._dpop import DPoPRequest, DPoPSettings, Proof
from ._errors import AuthError, IssuerUnavailableError, Reason, TemporarilyUnavailableError
from ._health import health_document
from ._options import configured
from ._telemetry import BEARER, DPOP, Sink, token_kind
from ._token import AccessToken
from ._validator import CLOSED, TokenValidator
from .events import Listener

logger = logging.getLogger("oauth_shield.sync")

T = TypeVar("T")

#: Added to the HTTP timeout for the longest a thread waits for the loop (queueing, a
#: single-flight fetch it joins late, discovery before the key set).
WAIT_MARGIN = 5.0


#: How often a thread waiting for the loop checks that the loop thread is still alive.
LIVENESS_CHECK = 0.25
#: Longest the closing of what a dead loop held may take, before a new loop starts.
DISPOSE_TIMEOUT = 1.0


class LoopDiedError(RuntimeError):
    """The loop thread died while a caller waited for it."""


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="oauth_shield", daemon=True
        )
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and not self.loop.is_closed()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coroutine`` on the loop and wait for it; :class:`LoopDiedError` if the loop
        thread dies meanwhile, ``TimeoutError`` after ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(max(min(LIVENESS_CHECK, deadline - time.monotonic()), 0))
            except concurrent.futures.TimeoutError:
                if not self.alive:
                    future.cancel()
                    if inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED:
                        coroutine.close()  # never started: no "never awaited" warning
                    raise LoopDiedError from None
                if time.monotonic() >= deadline:
                    future.cancel()
                    raise

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    def dispose(self) -> None:
        """After the thread has ended: close what the validators left on its loop, on that
        loop, briefly (their connections cannot be closed anywhere else), then the loop."""
        if self.thread.is_alive() or self.loop.is_closed():
            return
        left = [each._validator for each in list(_validators)]

        async def release() -> None:
            bound = [each._release() for each in left if each._loop is self.loop]
            await asyncio.wait_for(asyncio.gather(*bound, return_exceptions=True), DISPOSE_TIMEOUT)

        closing = release()
        try:
            self.loop.run_until_complete(closing)
        except Exception:  # not here (a loop runs in this thread), or too slow: let them go
            closing.close()
            logger.debug("closing what the dead loop held failed", exc_info=True)
        finally:
            with contextlib.suppress(RuntimeError):  # running again after all: not ours to close
                self.loop.close()


_lock = threading.Lock()
_shared: _LoopThread | None = None
_validators: weakref.WeakSet[SyncTokenValidator] = weakref.WeakSet()


def _loop_thread() -> _LoopThread:
    """The process's loop thread: started on first need, and again if it died."""
    global _shared
    loop_thread = _shared
    if loop_thread is None or not loop_thread.alive:
        with _lock:
            if _shared is None or not _shared.alive:
                if _shared is not None:
                    logger.warning("the event loop thread had died; starting a new one")
                    _shared.dispose()
                _shared = _LoopThread()
            loop_thread = _shared
    return loop_thread


def _after_fork_in_child() -> None:
    """The parent's loop thread does not exist here; its loop is kept, untouched (``_fork``)."""
    global _shared, _lock
    _fork.keep(_shared)
    _shared = None
    _lock = threading.Lock()


def _close_soon(validator: TokenValidator) -> None:
    loop_thread = _shared
    if loop_thread is not None and loop_thread.alive:
        asyncio.run_coroutine_threadsafe(validator.aclose(), loop_thread.loop)


@atexit.register
def _shutdown() -> None:
    loop_thread = _shared
    if loop_thread is None:
        return
    for validator in list(_validators):
        validator.close()
    loop_thread.stop()


_fork.on_fork(_after_fork_in_child)


class SyncTokenValidator:
    """The same validation as :class:`TokenValidator`, for synchronous code.

    Takes exactly the same arguments, typed by :class:`ValidatorOptions`. Safe to share between
    threads (one per process is the intended use); background work runs on one event loop
    thread shared by the process.

    >>> validator = SyncTokenValidator(issuer="https://as.example.com",   # doctest: +SKIP
    ...                                audience="https://api.example.com")
    >>> token = validator.validate(raw_token, scopes=["read"])
    """

    def __init__(self, **options: Unpack[ValidatorOptions]) -> None:
        self._validator = TokenValidator(**options)
        self._wait = self._validator.settings.http_timeout + WAIT_MARGIN
        self._closed = False
        _validators.add(self)
        # Flask has no serving lifecycle: a validator dropped with its app still closes its
        # connections (on the loop thread, without waiting).
        weakref.finalize(self, _close_soon, self._validator)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Unpack[ValidatorOverrides]
    ) -> Self:
        """Configured from ``OAUTH_SHIELD_*`` variables, as :meth:`TokenValidator.from_env`."""
        source = os.environ if environ is None else environ
        return configured(cls, source, dict(overrides), TokenValidator)

    @property
    def settings(self) -> Settings:
        """The validated settings of the validator inside (read-only)."""
        return self._validator.settings

    def __repr__(self) -> str:
        return "Sync" + repr(self._validator)

    def validate(
        self,
        token: str,
        scopes: Iterable[str] | str | None = None,
        *,
        requester: str | None = None,
        dpop: DPoPRequest | None = None,
    ) -> AccessToken:
        """Validate ``token`` and require ``scopes``; raises :class:`AuthError` and nothing else
        for anything about the token (see :meth:`TokenValidator.validate`, its ``requester``
        and its ``dpop``). After :meth:`close` it raises ``RuntimeError("this validator is
        closed")``, a programming error, before it looks at the token.

        With ``dpop``, the proof, a known token and the per-process replay store are checked
        in the calling thread; only a token that needs the network, or a replay store in
        Redis, takes the hop to the loop thread."""
        if self._closed:
            raise RuntimeError(CLOSED)
        validator = self._validator
        required = required_scopes(scopes)
        sink = validator._telemetry.sink  # None unless telemetry is on: the one check
        if sink is not None:
            return self._observed(sink, token, required, requester, dpop)
        try:
            if dpop is None:  # the hot path, written out
                result = validator._check_local(token, required)
                if isinstance(result, AccessToken):
                    return result
                return validator._as_bearer(self._fetched(result, requester), required)
            proof, found = validator._dpop_local(token, dpop)
            if not isinstance(found, AccessToken):
                found = self._fetched(found, requester)
            return self._with_proof(found, proof, required)
        except AuthError as error:
            validator._refused(error, token, dpop)
            raise

    def _observed(
        self,
        sink: Sink,
        token: str,
        required: frozenset[str],
        requester: str | None,
        dpop: DPoPRequest | None,
    ) -> AccessToken:
        """:meth:`validate` with telemetry on (see ``TokenValidator._observed``); the network
        half's span is a child of this thread's current span."""
        validator = self._validator
        started, waited = time.perf_counter(), False
        verified = validator._verified
        misses = verified.misses
        try:
            proof = None
            if dpop is None:
                result = validator._check_local(token, required)
            else:
                proof, result = validator._dpop_local(token, dpop)
            if isinstance(result, AccessToken):
                if verified.misses == misses:
                    verified.hits += 1
            else:
                waited = True
                result = self._fetched(result, requester, sink.parent())
                if proof is None:
                    result = validator._as_bearer(result, required)
            if proof is not None:
                result = self._with_proof(result, proof, required)
        except AuthError as error:
            validator._refused(error, token, dpop, started, waited)
            raise
        sink.accepted(result, BEARER if dpop is None else DPOP, token_kind(token), started, waited)
        return result

    def _with_proof(
        self, token: AccessToken, proof: Proof, required: frozenset[str]
    ) -> AccessToken:
        """The binding and the scopes, then the replay store: in this thread when it is this
        process's, on the loop thread when it is in Redis."""
        validator = self._validator
        accepted = validator._bound(token, proof, required)
        if not validator._first_use_here(proof):
            self._on_loop(
                lambda: validator._remote_first_use(proof), Reason.REPLAY_STORE_UNAVAILABLE
            )
        return accepted

    def _fetched(self, pending: Any, requester: str | None, parent: object = None) -> AccessToken:
        """The token's remote half, on the loop thread (``parent``: the caller's trace)."""
        validator = self._validator
        return self._on_loop(
            lambda: validator._remote(pending, requester, parent), pending.waits_for
        )

    @property
    def dpop_settings(self) -> DPoPSettings:
        """See :attr:`TokenValidator.dpop_settings`."""
        return self._validator.dpop_settings

    @property
    def dpop_mode(self) -> DPoPMode:
        """See :attr:`TokenValidator.dpop_mode`."""
        return self._validator.dpop_mode

    def dpop_nonce(self) -> str | None:
        """See :meth:`TokenValidator.dpop_nonce`."""
        return self._validator.dpop_nonce()

    def _on_loop(self, work: Callable[[], Coroutine[Any, Any, T]], waits_for: Reason) -> T:
        """``work()`` on the loop thread; once more on a new one if that thread dies."""
        failure = "timed out"
        for _ in range(2):
            coroutine = work()
            try:
                return _loop_thread().run(coroutine, self._wait)
            except LoopDiedError:
                failure = "the loop thread died"
            except concurrent.futures.TimeoutError:
                break
            except RuntimeError:  # no loop at all: interpreter shutdown
                coroutine.close()
                failure = "no event loop"
                break
        logger.warning("validation on the event loop thread failed: %s", failure)
        raise TemporarilyUnavailableError(waits_for)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Send this validator's events to ``listener`` (see
        :meth:`TokenValidator.subscribe`); returns the function that unsubscribes it."""
        return self._validator.subscribe(listener)

    def health(self) -> dict[str, Any]:
        """The health document (see :meth:`TokenValidator.health`), read in this thread."""
        return health_document(self._validator)

    def start(self) -> None:
        """Start warming the caches on the loop thread, and return at once (see
        :meth:`TokenValidator.start`)."""
        if self._closed:
            raise RuntimeError(CLOSED)
        loop = _loop_thread().loop
        asyncio.run_coroutine_threadsafe(self._validator.start(), loop)

    def check(self) -> None:
        """Fetch the metadata and key set now, and raise :class:`ConfigurationError` or
        :class:`IssuerUnavailableError` if tokens cannot be checked (see
        :meth:`TokenValidator.check`). Waits at most ``http_timeout`` plus a margin."""
        if self._closed:
            raise RuntimeError(CLOSED)
        try:
            _loop_thread().run(self._validator.check(), self._wait)
        except concurrent.futures.TimeoutError:
            raise IssuerUnavailableError(
                f"the key set of {self.settings.issuer} did not arrive in {self._wait:g} s"
            ) from None

    def close(self) -> None:
        """Close connections to the issuer (the shared loop thread stays for others). Final:
        :meth:`validate` raises ``RuntimeError`` afterwards."""
        if self._closed:
            return
        self._closed = True
        loop_thread = _shared
        if loop_thread is not None and loop_thread.alive:
            try:
                loop_thread.run(self._validator.aclose(), self._wait)
                return
            except (concurrent.futures.TimeoutError, RuntimeError):
                logger.warning("closing a validator timed out")
        self._validator._closed = True  # nothing of it runs anywhere: closed as it is

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
