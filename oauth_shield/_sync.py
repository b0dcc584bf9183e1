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
- After ``fork()`` the child has no loop thread (threads do not survive a fork): the first need
  starts a new one, and every validator drops what was bound to the parent's loop (HTTP
  connections, flights) while keeping its caches.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from ._arguments import ValidatorOptions, ValidatorOverrides
from ._claims import required_scopes
from ._errors import AuthError, IssuerUnavailableError, Reason, TemporarilyUnavailableError
from ._options import configured
from ._token import AccessToken
from ._validator import TokenValidator

logger = logging.getLogger("oauth_shield.sync")

T = TypeVar("T")

#: Added to the HTTP timeout for the longest a thread waits for the loop (queueing, a
#: single-flight fetch it joins late, discovery before the key set).
WAIT_MARGIN = 5.0


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="oauth_shield", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


_lock = threading.Lock()
_shared: _LoopThread | None = None
_validators: weakref.WeakSet[SyncTokenValidator] = weakref.WeakSet()


def _loop_thread() -> _LoopThread:
    global _shared
    loop_thread = _shared
    if loop_thread is None:
        with _lock:
            if _shared is None:
                _shared = _LoopThread()
            loop_thread = _shared
    return loop_thread


def _after_fork_in_child() -> None:
    global _shared, _lock
    _shared = None
    _lock = threading.Lock()
    for validator in list(_validators):
        validator._validator._forget_loop()


def _close_soon(validator: TokenValidator) -> None:
    loop_thread = _shared
    if loop_thread is not None and loop_thread.loop.is_running():
        asyncio.run_coroutine_threadsafe(validator.aclose(), loop_thread.loop)


@atexit.register
def _shutdown() -> None:
    loop_thread = _shared
    if loop_thread is None:
        return
    for validator in list(_validators):
        validator.close()
    loop_thread.stop()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
    def settings(self) -> Any:
        return self._validator.settings

    def __repr__(self) -> str:
        return "Sync" + repr(self._validator)

    def validate(
        self,
        token: str,
        scopes: Iterable[str] | str | None = None,
        *,
        requester: str | None = None,
    ) -> AccessToken:
        """Validate ``token`` and require ``scopes``; raises :class:`AuthError` and nothing else
        for anything about the token (see :meth:`TokenValidator.validate`, and its
        ``requester``)."""
        validator = self._validator
        required = required_scopes(scopes)
        try:
            result = validator._check_local(token, required)
            if isinstance(result, AccessToken):
                return result
            remote = validator._check_remote(result, required, requester)
            return self._on_loop(remote, result.waits_for)
        except AuthError as error:
            validator._log_rejection(error, token)
            raise

    def _on_loop(self, coroutine: Coroutine[Any, Any, T], waits_for: Reason) -> T:
        failure: str | None = None
        try:
            return _loop_thread().run(coroutine, self._wait)
        except concurrent.futures.TimeoutError:
            failure = "timed out"
        except RuntimeError:  # the loop is gone: interpreter shutdown
            coroutine.close()
            failure = "no event loop"
        logger.warning("validation on the event loop thread failed: %s", failure)
        raise TemporarilyUnavailableError(waits_for)

    def start(self) -> None:
        """Start warming the caches on the loop thread, and return at once (see
        :meth:`TokenValidator.start`)."""
        loop = _loop_thread().loop
        asyncio.run_coroutine_threadsafe(self._validator.start(), loop)

    def check(self) -> None:
        """Fetch the metadata and key set now, and raise :class:`ConfigurationError` or
        :class:`IssuerUnavailableError` if tokens cannot be checked (see
        :meth:`TokenValidator.check`). Waits at most ``http_timeout`` plus a margin."""
        try:
            _loop_thread().run(self._validator.check(), self._wait)
        except concurrent.futures.TimeoutError:
            raise IssuerUnavailableError(
                f"the key set of {self.settings.issuer} did not arrive in {self._wait:g} s"
            ) from None

    def close(self) -> None:
        """Close connections to the issuer (the shared loop thread stays for others)."""
        if self._closed:
            return
        self._closed = True
        loop_thread = _shared
        if loop_thread is not None and loop_thread.loop.is_running():
            try:
                loop_thread.run(self._validator.aclose(), self._wait)
            except (concurrent.futures.TimeoutError, RuntimeError):
                logger.warning("closing a validator timed out")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
