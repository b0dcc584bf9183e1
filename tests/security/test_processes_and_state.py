"""Processes and state (SECURITY-CASES.md, class 12).

A validator made before ``fork()`` (gunicorn ``--preload``, Celery, multiprocessing) in every
state it can be in: cold, warm, stale-if-error, mid-fetch, a thread inside a cache. Used from a
second event loop, after ``close()``, after its loop thread died. No socket, lock or loop-bound
object is shared across processes: every child behaves like a fresh process that happens to
have warm caches, and the parent is unaffected. The forks are real, and so are the Redis server
and, where connections matter, the HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiocache import Cache

from oauth_shield import (
    AccessToken,
    AuthError,
    SyncTokenValidator,
    TokenValidator,
    _sync,
)
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock
from tests.redis_server import RedisServer

CLIENT = ("resource-server", "rs-secret")
CACHE_SECRET = "processes-cache-secret-0123456789"

# Python 3.12+ warns about fork() in a process with threads: these forks are the point.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
forks = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")


def in_child(work: Callable[[], Any], timeout: float = 10.0) -> Any:
    """``work()`` in a forked child: what it returned (through JSON), ``"raised <Type>:
    <message>"`` for an exception, or ``"hung"`` if it did not finish within ``timeout``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            try:
                result: dict[str, Any] = {"value": work()}
            except BaseException as error:
                result = {"value": f"raised {type(error).__name__}: {error}"}
            os.write(write, json.dumps(result, default=str).encode())
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([read], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                return "hung"
            chunk = os.read(read, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))["value"]


def subject(validate: Callable[[], AccessToken]) -> str:
    """The subject of the validated token, or the reason it was refused."""
    try:
        return validate().subject or "-"
    except AuthError as error:
        return f"refused: {error.reason.value}"


class LoopThread:
    """An event loop running in a thread, as an async server's own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Preloaded:
    """A validator as a preloaded app holds it at the fork: the sync facade, or the async
    validator on a loop thread of the parent."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.sync: SyncTokenValidator | None = None
        self.loop: LoopThread | None = None
        if kind == "sync":
            self.sync = SyncTokenValidator(**options)
            self.validator = self.sync._validator
        else:
            self.loop = LoopThread()
            self.validator = TokenValidator(**options)

    def validate(self, token: str) -> str:
        """In the parent."""
        if self.sync is not None:
            return subject(lambda: self.sync.validate(token))  # type: ignore[union-attr]
        return subject(lambda: self.loop.run(self.validator.validate(token)))  # type: ignore[union-attr]

    def on_its_loop(self, coroutine: Any) -> Any:
        """Run ``coroutine`` where the validator's network work runs (in the parent)."""
        if self.loop is not None:
            return self.loop.run(coroutine)
        return _sync._loop_thread().run(coroutine, 10)

    def in_child(self) -> None:
        """First thing in a forked child: the async validator gets a loop thread of the
        child's own (the parent's thread does not exist here; its loop is left untouched)."""
        if self.loop is not None:
            self._parents = self.loop
            self.loop = LoopThread()

    def wait_for_fetch(self, before: int) -> None:
        """Until a key-set fetch started in the background has finished (5 s at most)."""
        deadline = time.monotonic() + 5
        while self.validator._keys.fetches == before and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        if self.sync is not None:
            self.sync.close()
        else:
            assert self.loop is not None
            self.loop.run(self.validator.aclose())
            self.loop.close()


@pytest.fixture
def preload(issuer: LocalIssuer, clock: FrozenClock) -> Iterator[Callable[..., Preloaded]]:
    issuer.clients[CLIENT[0]] = CLIENT[1]
    made: list[Preloaded] = []

    def make(kind: str, **overrides: Any) -> Preloaded:
        options = {
            "issuer": issuer.issuer,
            "audience": issuer.audience,
            "transport": issuer.transport(),
            "clock": clock,
            "client_id": CLIENT[0],
            "client_secret": CLIENT[1],
            **overrides,
        }
        made.append(preloaded := Preloaded(kind, **options))
        return preloaded

    yield make
    for preloaded in made:
        preloaded.close()


@pytest.fixture
def served(issuer: LocalIssuer) -> Iterator[LocalIssuer]:
    """The issuer over real HTTP on loopback: its connections are real sockets."""
    with issuer.serve():
        yield issuer


def shared_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "oauth_shield.shared"]


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


def child(preloaded: Preloaded, *tokens: str) -> list[str]:
    """In a forked child: validate ``tokens`` one after the other."""
    preloaded.in_child()
    return [preloaded.validate(token) for token in tokens]


# --- forked children, in every state ----------------------------------------------------


@forks
@pytest.mark.parametrize("tier", ["insecure", "cache_secret", "cache="])
@KINDS
def test_a_forked_child_gets_a_fresh_redis_connection(
    preload: Callable[..., Preloaded],
    issuer: LocalIssuer,
    redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    tier: str,
) -> None:
    """The reported attack: the child's command went out on the parent's socket, and the
    parent read the child's reply (another user's verdict) as the answer to its own next
    command, accepting a token the issuer never issued."""
    caplog.set_level(logging.WARNING)
    options: dict[str, Any] = {"redis_url": redis.url, "cache_secret": CACHE_SECRET}
    if tier == "insecure":
        options = {"redis_url": redis.url, "insecure_shared_cache": True}
    elif tier == "cache=":  # the caller's own aiocache cache: its pool is copied in the child
        options = {"cache": Cache(Cache.REDIS, port=redis.port), "cache_secret": CACHE_SECRET}
    parent = preload(kind, **options)
    other = preload(kind, redis_url=redis.url, cache_secret=CACHE_SECRET)  # another process
    if tier == "insecure":
        other = preload(kind, redis_url=redis.url, insecure_shared_cache=True)
    assert parent.validate(issuer.opaque_token(sub="alice")) == "alice"  # connected to Redis
    bob = issuer.opaque_token(sub="bob")
    assert other.validate(bob) == "bob"  # bob's verdict is in Redis, not in the parent
    assert in_child(lambda: child(parent, bob)) == ["bob"]
    assert parent.validate("never-issued-by-anyone-0123456789") == "refused: inactive"
    assert parent.validate(bob) == "bob"
    assert issuer.requests["/introspect"] == 3  # alice, bob, and the forged one
    assert shared_warnings(caplog) == []  # the parent's Redis connection never faltered
    if "cache" in options:  # the caller's cache: the caller closes it
        parent.on_its_loop(options["cache"].client.aclose())


@forks
@KINDS
def test_a_child_forked_cold_fetches_for_itself(
    preload: Callable[..., Preloaded], issuer: LocalIssuer, kind: str
) -> None:
    parent = preload(kind)
    token = issuer.token()
    assert in_child(lambda: [*child(parent, token), issuer.requests["/jwks"]]) == ["user-1", 1]
    assert parent.validate(token) == "user-1"
    assert issuer.requests["/jwks"] == 1  # the parent's own: a child counts in its own copy


@forks
@KINDS
def test_a_child_forked_warm_keeps_the_caches_and_opens_its_own_connections(
    preload: Callable[..., Preloaded],
    served: LocalIssuer,
    redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    caplog.set_level(logging.WARNING)
    parent = preload(kind, transport=None, redis_url=redis.url, cache_secret=CACHE_SECRET)
    assert parent.validate(served.token()) == "user-1"  # a keep-alive connection to the issuer
    assert parent.validate(served.opaque_token(sub="a")) == "a"  # and one to Redis
    http, shared = parent.validator._http._client, parent.validator._shared.cache.client  # type: ignore[union-attr]

    fresh_jwt, fresh_opaque = served.token(alg="ES256", sub="b"), served.opaque_token(sub="c")

    def in_the_child() -> list[object]:  # (the issuer is served by the parent: mint before)
        found: list[object] = child(parent, fresh_jwt, fresh_opaque)
        validator = parent.validator
        return [
            *found,
            validator._http._client is not http,
            validator._shared.cache.client is not shared,
        ]  # type: ignore[union-attr]

    assert in_child(in_the_child) == ["b", "c", True, True]
    assert parent.validate(served.opaque_token(sub="d")) == "d"
    assert parent.validator._http._client is http  # the parent's own, still in use
    # The issuer (served by the parent) saw the child too: no second key-set fetch.
    counts = [served.requests[path] for path in ("/.well-known/openid-configuration", "/jwks")]
    assert (counts, served.requests["/introspect"]) == ([1, 1], 3)
    assert shared_warnings(caplog) == []


@forks
@KINDS
def test_a_child_forked_in_stale_if_error_refreshes_like_its_parent(
    preload: Callable[..., Preloaded], issuer: LocalIssuer, clock: FrozenClock, kind: str
) -> None:
    """Forked while the issuer failed and the keys were stale: when the issuer is back and has
    withdrawn a key, the child refreshes and refuses that key, as the parent does (it used to
    trust it for up to jwks_max_stale: background refreshes need a loop, and the stale path
    never asked for one)."""
    parent = preload(kind)
    withdrawn = issuer.keys[0]
    assert parent.validate(issuer.token(key=withdrawn)) == "user-1"
    issuer.fault = lambda request: httpx.Response(503) if request.url.path == "/jwks" else None
    clock.advance(301)  # past jwks_ttl: the refresh fails, the keys are used stale
    assert parent.validate(issuer.token(key=withdrawn)) == "user-1"
    assert parent.validator._keys._state.failed
    issuer.fault = None
    issuer.published = [key.jwk for key in issuer.keys[1:]]  # back, without that key
    clock.advance(2)  # past the retry backoff

    def after_the_refresh() -> list[str]:
        before = parent.validator._keys.fetches
        found = [parent.validate(issuer.token(alg="ES256"))]  # served stale; starts a refresh
        parent.wait_for_fetch(before)
        return [*found, parent.validate(issuer.token(key=withdrawn))]

    expected = ["user-1", "refused: unknown_kid"]
    assert in_child(lambda: (parent.in_child(), after_the_refresh())[1]) == expected
    assert after_the_refresh() == expected  # the parent, the same


@forks
@KINDS
def test_a_child_forked_mid_fetch_fetches_for_itself(
    preload: Callable[..., Preloaded], issuer: LocalIssuer, kind: str
) -> None:
    parent_pid, entered, release = os.getpid(), threading.Event(), threading.Event()

    def hold(request: httpx.Request) -> None:
        if request.url.path == "/jwks" and os.getpid() == parent_pid:
            entered.set()
            release.wait(10)  # the parent's fetch stays in flight across the fork

    issuer.fault = hold
    parent = preload(kind)
    token = issuer.token()
    pending = threading.Thread(target=parent.validate, args=(token,))
    pending.start()
    try:
        assert entered.wait(5)
        assert in_child(lambda: child(parent, token)) == ["user-1"]
    finally:
        release.set()
        pending.join(10)
    assert parent.validate(token) == "user-1"
    assert issuer.requests["/jwks"] == 1


@forks
@KINDS
@pytest.mark.parametrize("cache", ["verified", "introspection"])
def test_a_child_forked_while_a_thread_is_inside_a_cache_put_does_not_hang(
    preload: Callable[..., Preloaded], issuer: LocalIssuer, kind: str, cache: str
) -> None:
    parent = preload(kind)
    validator = parent.validator
    held = validator._verified if cache == "verified" else validator._introspector._positive  # type: ignore[union-attr]
    inside, leave = threading.Event(), threading.Event()

    def writer() -> None:
        with held._lock:  # as a thread in the middle of put() when the process forks
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    fresh = issuer.token(sub="fresh") if cache == "verified" else issuer.opaque_token(sub="fresh")
    try:
        assert inside.wait(5)
        assert in_child(lambda: child(parent, fresh), timeout=3) == ["fresh"]
    finally:
        leave.set()
        thread.join(5)
    assert parent.validate(fresh) == "fresh"


# --- event loops ----------------------------------------------------------------------


def test_a_validator_moves_to_a_new_event_loop_when_its_own_has_ended(
    served: LocalIssuer, redis: RedisServer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """``asyncio.run()`` twice, or a test framework's loop per test: 'Event loop is closed'
    used to escape validate() on the second loop."""
    caplog.set_level(logging.WARNING)
    served.clients[CLIENT[0]] = CLIENT[1]
    validator = TokenValidator(
        issuer=served.issuer,
        audience=served.audience,
        clock=clock,
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
        redis_url=redis.url,
        cache_secret=CACHE_SECRET,
    )
    first, second = served.opaque_token(sub="first"), served.opaque_token(sub="second")
    assert asyncio.run(validator.validate(first)).subject == "first"  # connections on loop 1
    assert asyncio.run(validator.validate(second)).subject == "second"  # on loop 2
    assert asyncio.run(validator.validate(served.token())).subject == "user-1"
    assert asyncio.run(validator.validate(first)).subject == "first"  # the caches were kept
    asyncio.run(validator.aclose())
    assert served.requests["/introspect"] == 2
    assert shared_warnings(caplog) == []  # the Redis connection moved too: no outage


async def test_a_validator_used_from_a_second_running_loop_says_what_to_do(
    issuer: LocalIssuer, clock: FrozenClock
) -> None:
    other = LoopThread()
    validator = TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport(), clock=clock
    )
    token = issuer.token()
    try:
        assert other.run(validator.validate(token)).subject == "user-1"
        # A token checked without the network (the verified cache, a cached key) needs no
        # loop: it works from any of them...
        assert (await validator.validate(token)).subject == "user-1"
        assert (await validator.validate(issuer.token(alg="ES256"))).subject == "user-1"
        # ...one that needs the network (a key rotated in) says what to do, every time.
        new_key = issuer.rotate()
        for _ in range(2):
            with pytest.raises(RuntimeError, match="one validator per event loop"):
                await validator.validate(issuer.token(key=new_key))
    finally:
        other.run(validator.aclose())
        other.close()


# --- close() is final ------------------------------------------------------------------


async def test_validate_after_aclose_says_the_validator_is_closed(
    issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport(), clock=clock
    )
    token = issuer.token()
    await validator.validate(token)
    await validator.aclose()
    for attempt in (token, issuer.token(alg="ES256"), "junk"):
        with pytest.raises(RuntimeError, match="this validator is closed"):
            await validator.validate(attempt)
    assert validator._http._client is None  # nothing was built again
    async with validator:  # entering it again opens it
        assert (await validator.validate(issuer.token(alg="ES256"))).subject == "user-1"
    assert issuer.requests["/jwks"] == 1


def test_validate_after_close_says_the_sync_validator_is_closed(
    issuer: LocalIssuer, clock: FrozenClock
) -> None:
    options = {"issuer": issuer.issuer, "audience": issuer.audience, "clock": clock}
    with SyncTokenValidator(transport=issuer.transport(), **options) as validator:
        token = validator.validate(issuer.token())
    assert token.subject == "user-1"
    with pytest.raises(RuntimeError, match="this validator is closed"):
        validator.validate(issuer.token())
    never_used = SyncTokenValidator(transport=issuer.transport(), **options)
    never_used.close()
    with pytest.raises(RuntimeError, match="this validator is closed"):
        never_used.validate(issuer.token())
    assert issuer.requests["/jwks"] == 1


# --- the sync facade's loop thread -------------------------------------------------------


def kill_loop_thread() -> Any:
    """End the process's loop thread from outside (as a stray ``loop.stop()`` would)."""
    doomed = _sync._loop_thread()
    doomed.loop.call_soon_threadsafe(doomed.loop.stop)
    doomed.thread.join(5)
    assert not doomed.thread.is_alive()
    return doomed


def test_a_dead_loop_thread_is_replaced(
    issuer: LocalIssuer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oauth_shield.sync")
    with SyncTokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        transport=issuer.transport(),
        clock=clock,
        jwks_cooldown=0,
    ) as validator:
        validator._wait = 2.0  # a dead loop used to cost every cold validation this, then 503
        assert validator.validate(issuer.token()).subject == "user-1"
        dead = kill_loop_thread()
        issuer.rotate()
        assert validator.validate(issuer.token()).subject == "user-1"  # a new key: network work
        assert validator.validate(issuer.token(sub="again")).subject == "again"
    assert _sync._shared is not None and _sync._shared.alive
    assert dead.loop.is_closed()  # what it held was closed on it, then the loop itself
    said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.sync"]
    assert said == ["the event loop thread had died; starting a new one"]


class FirstRequestHangs(httpx.AsyncBaseTransport):
    """The issuer, except that the first request never gets an answer."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self.entered = threading.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.entered.is_set():
            self.entered.set()
            await asyncio.sleep(3600)
        return self.issuer.handle(request)


def test_a_caller_waiting_when_the_loop_thread_dies_is_served_on_a_new_one(
    issuer: LocalIssuer, clock: FrozenClock
) -> None:
    hangs = FirstRequestHangs(issuer)
    with SyncTokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=hangs, clock=clock
    ) as validator:
        validator._wait = 3.0
        result: list[str] = []
        waiting = threading.Thread(
            target=lambda: result.append(subject(lambda: validator.validate(issuer.token())))
        )
        waiting.start()
        assert hangs.entered.wait(5)
        loop = _sync._loop_thread().loop
        loop.call_soon_threadsafe(loop.stop)  # the loop thread ends under the waiting caller
        waiting.join(10)
    assert result == ["user-1"]


# --- downstream token caches ---------------------------------------------------------------


def downstream_auth(issuer: LocalIssuer) -> Any:
    from oauth_shield.downstream import ClientCredentialsAuth

    issuer.clients["service"] = "downstream-secret"
    transport = httpx.MockTransport(issuer.handle)
    return ClientCredentialsAuth(
        token_endpoint="https://issuer.test/token",
        client_id="service",
        client_secret="downstream-secret",
        transport=transport,
        async_transport=transport,
    )


def fetched(auth: Any) -> str:
    """The Authorization a downstream call carries, the token fetched on the way."""
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"].split(" ")[0])
        return httpx.Response(200)

    with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
        client.get("https://api.test/x")
    return seen[0]


@forks
def test_a_child_forked_while_a_thread_fetches_a_downstream_token_does_not_hang(
    issuer: LocalIssuer,
) -> None:
    auth = downstream_auth(issuer)
    tokens = auth._tokens()
    inside, leave = threading.Event(), threading.Event()

    def fetching() -> None:
        with tokens.lock:  # as a thread waiting on the token endpoint when the process forks
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=fetching)
    thread.start()
    try:
        assert inside.wait(5)
        assert in_child(lambda: fetched(auth), timeout=3) == "Bearer"
    finally:
        leave.set()
        thread.join(5)
    assert fetched(auth) == "Bearer"


def test_a_downstream_token_survives_a_second_event_loop(issuer: LocalIssuer) -> None:
    """The refresh task of the first loop cannot be awaited on the second: before, the second
    loop's first call failed with 'attached to a different loop' while it was in flight."""
    auth = downstream_auth(issuer)
    tokens = auth._tokens()
    served: list[str] = []

    async def call() -> None:
        def api(request: httpx.Request) -> httpx.Response:
            served.append(request.headers["Authorization"].split(" ")[0])
            return httpx.Response(200)

        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api)) as client:
            await client.get("https://api.test/x")

    async def abandon_a_refresh() -> None:
        never = asyncio.get_running_loop().create_future()
        tokens.task = asyncio.ensure_future(never)  # in flight when this loop ends

    asyncio.run(abandon_a_refresh())
    asyncio.run(call())
    assert served == ["Bearer"]
