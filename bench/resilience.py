"""Load and faults: a protected API under steady load while its dependencies misbehave.

The system: a real ``oidc-provider`` (tests/provider), a real ``redis-server``, and the bench
Quart app (bench/apps.py, route ``/protected`` needs scope ``read``) in two uvicorn worker
processes under gunicorn, sharing that Redis. A lean client (h11 over asyncio streams) sends
requests open-loop at a fixed rate (so a slow phase cannot hide behind fewer requests), each of
one class:

- ``jwt``: valid RS256/ES256 tokens from the provider (a pool, so fresh and repeated): 200;
- ``rotated``: tokens signed with keys the provider made mid-run: 200;
- ``opaque_cached``: a few opaque tokens used all the time: 200, or the documented 503 when
  their cached verdict expires (60 s) while the provider cannot be reached;
- ``opaque_new``: an opaque token never seen before: 200, or the documented 503;
- ``bad``: a forged signature, another audience, ``alg: none``, garbage, a token without the
  scope, and in the last phase random kids: 400/401/403, never 200;
- ``bad_opaque``: an opaque token never issued: 401, or 503 while introspection is down;
- ``control``: ``/unprotected`` on the same server, no token: the latency the machine, the
  client and the framework add without any validation, to read the other classes against.

Phases, each ``seconds`` long, after a warm-up: steady; provider slow (2 s per answer);
provider down (connections reset); provider flapping (down and up every half second); key
rotation at the provider; Redis killed and restarted; a flood of random kids. Per phase it
reports statuses by class, p50/p99 latency by class as the client saw it and as the
application measured it (``Server-Timing``), the provider's fetch counts, and every request
whose status was not one its class allows. The key rotation comes at least one unknown-kid
cooldown (30 s) after the start-up fetch: the provider signs with a new key the moment it makes
it, and a refetch for an unknown kid is allowed once per cooldown (docs/keysets.md).

Run: ``./run bench resilience`` (about two minutes; ``--rounds`` sets the seconds per phase).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx

from oauth_shield.testing import loopback_socket
from tests.provider import OTHER_AUDIENCE, OIDCProvider
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
COOLDOWN = 30.0  # the validator's default jwks_cooldown
ALLOWED = {
    "jwt": {200},
    "rotated": {200},
    "opaque_cached": {200, 503},
    "opaque_new": {200, 503},
    "bad": {400, 401, 403},
    "bad_opaque": {401, 503},
    "control": {200},
}
#: Share of requests per class in every phase (``rotated`` replaces part of ``jwt`` once
#: there are rotated tokens; the flood phase sends ``bad`` random kids on top).
MIX = {
    "jwt": 0.55,
    "opaque_cached": 0.1,
    "opaque_new": 0.05,
    "bad": 0.1,
    "bad_opaque": 0.05,
    "control": 0.15,
}


@dataclass
class Phase:
    name: str
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    in_app: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: Counter[str] = field(default_factory=Counter)
    fetches: dict[str, int] = field(default_factory=dict)

    def record(self, kind: str, status: int, seconds: float, in_app_ms: float | None) -> None:
        self.statuses[kind][status] += 1
        self.latencies[kind].append(seconds * 1000)
        if in_app_ms is not None:
            self.in_app[kind].append(in_app_ms)
        if status not in ALLOWED[kind]:
            self.unexpected[f"{kind} -> {status}"] += 1

    def report(self) -> dict[str, Any]:
        classes = {}
        for kind, counts in sorted(self.statuses.items()):
            classes[kind] = {
                "requests": sum(counts.values()),
                "statuses": {str(status): n for status, n in sorted(counts.items())},
                **_percentiles(self.latencies[kind]),
                **_percentiles(self.in_app[kind], "in_app_"),
            }
        return {
            "requests": sum(c["requests"] for c in classes.values()),
            "classes": classes,
            "unexpected": dict(self.unexpected),
            "fetches": self.fetches,
        }


def _percentiles(values: list[float], prefix: str = "") -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {f"{prefix}p50_ms": None, f"{prefix}p99_ms": None}
    return {
        f"{prefix}p50_ms": round(statistics.median(ordered), 2),
        f"{prefix}p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Tokens:
    """Pools of tokens from the provider, minted ahead of the load (minting costs it CPU)."""

    def __init__(self, provider: OIDCProvider, new_opaque: int) -> None:
        self.provider = provider
        with ThreadPoolExecutor(8) as pool:

            def mint(client: str, n: int, **claims: str) -> list[str]:
                return list(pool.map(lambda _: provider.token(client, **claims), range(n)))

            self.jwt = mint("client-rs256", 150) + mint("client-es256", 150)
            self.opaque_cached = mint("client-opaque", 5)
            self.opaque_new = iter(mint("client-opaque", new_opaque))
            valid = self.jwt[0]
            head, payload, signature = valid.split(".")
            claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
            admin = _b64(json.dumps({**claims, "scope": "read admin"}).encode())
            none = _b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
            self.bad = [
                f"{head}.{admin}.{signature}",  # the payload changed under its signature
                mint("client-rs256", 1, resource=OTHER_AUDIENCE)[0],  # another audience
                f"{none}.{payload}.",
                mint("client-rs256", 1, scope="write")[0],  # lacks "read": 403
                "not-a-token-$$$",
            ]
        self.rotated: list[str] = []

    def random_kid(self) -> str:
        head, payload, signature = self.jwt[0].split(".")
        header = json.loads(base64.urlsafe_b64decode(head + "=="))
        header["kid"] = secrets.token_hex(8)
        return f"{_b64(json.dumps(header).encode())}.{payload}.{signature}"


@contextlib.contextmanager
def api(provider: OIDCProvider, redis: RedisServer) -> Iterator[str]:
    """The bench app in two worker processes sharing ``redis``; its base URL."""
    with loopback_socket() as probe:
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **provider.shared_api_env(redis.url)}
    # gunicorn with uvicorn's worker, not ``uvicorn --workers``: that path leaves Nagle on for
    # accepted connections (Kludex/uvicorn#3149), adding ~40 ms to keep-alive requests.
    command = [
        sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker",
        "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
        "bench.apps:quart_timed",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/unprotected").status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        time.sleep(2)  # every worker up and warm
        yield url
    finally:
        process.terminate()
        process.wait(10)


class Client:
    """A lean HTTP/1.1 client for the load: keep-alive connections over asyncio streams, h11.

    The load generator shares the machine with the system it measures, and its own delays count
    as the server's: httpx as the load generator measured p99 ~18 ms for ``/unprotected`` where
    this client measures ~6 ms on the same server. A connection the server closed while idle is
    replaced once, as HTTP clients do for idempotent requests.
    """

    Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection]

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.idle: list[Client.Connection] = []

    async def get(self, path: str, headers: list[tuple[str, str]]) -> tuple[int, float | None]:
        """The status, and the milliseconds spent in the application (``Server-Timing``)."""
        for reused in (bool(self.idle), False):
            if reused:
                connection = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                connection = (reader, writer, h11.Connection(h11.CLIENT))
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(connection, path, headers)
            except (OSError, asyncio.IncompleteReadError, h11.ProtocolError):
                connection[1].close()
                if not reused:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(
        self, connection: Connection, path: str, headers: list[tuple[str, str]]
    ) -> tuple[int, float | None]:
        reader, writer, h11_connection = connection
        request = h11.Request(method="GET", target=path, headers=[("Host", self.host), *headers])
        writer.write(h11_connection.send(request) + h11_connection.send(h11.EndOfMessage()))
        status, in_app = 0, None
        while True:
            event = h11_connection.next_event()
            if event is h11.NEED_DATA:
                h11_connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    if name == b"server-timing":
                        in_app = float(value.partition(b"dur=")[2])
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("closed by the server")
        if h11_connection.our_state is h11.DONE and h11_connection.their_state is h11.DONE:
            h11_connection.start_next_cycle()
            self.idle.append(connection)
        else:
            writer.close()
        return status, in_app

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


class Load:
    """Open-loop requests at ``rate`` per second, each of a class drawn from the mix."""

    def __init__(self, client: Client, tokens: Tokens, rate: float) -> None:
        self.client = client
        self.tokens = tokens
        self.rate = rate
        self.rng = random.Random(7)
        self.pending: set[asyncio.Task[None]] = set()
        self.flood = False

    def _pick(self) -> tuple[str, str]:
        kind = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        tokens = self.tokens
        if kind == "jwt":
            if tokens.rotated and self.rng.random() < 0.5:
                return "rotated", self.rng.choice(tokens.rotated)
            return kind, self.rng.choice(tokens.jwt)
        if kind == "opaque_cached":
            return kind, self.rng.choice(tokens.opaque_cached)
        if kind == "opaque_new":
            return kind, next(tokens.opaque_new)
        if kind == "bad_opaque":
            return kind, secrets.token_urlsafe(32)
        if kind == "control":
            return kind, ""
        if self.flood:
            return kind, tokens.random_kid()
        return kind, self.rng.choice(tokens.bad)

    async def _one(self, phase: Phase, kind: str, token: str) -> None:
        path, headers = "/protected", [("Authorization", f"Bearer {token}")]
        if kind == "control":
            path, headers = "/unprotected", []
        started = time.perf_counter()
        try:
            status, in_app = await self.client.get(path, headers)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, h11.ProtocolError):
            status, in_app = 0, None  # no answer at all
        phase.record(kind, status, time.perf_counter() - started, in_app)

    async def run(self, phase: Phase, seconds: float) -> None:
        start = time.perf_counter()
        for i in itertools.count():
            due = start + i / self.rate
            if due - start >= seconds:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            kind, token = self._pick()
            if self.flood and self.rng.random() < 0.5:
                kind, token = "bad", self.tokens.random_kid()
            task = asyncio.create_task(self._one(phase, kind, token))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def drain(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending)


async def _scenario(
    provider: OIDCProvider,
    redis: RedisServer,
    url: str,
    tokens: Tokens,
    seconds: float,
    rate: float,
) -> dict[str, Any]:
    started = time.monotonic()
    phases: dict[str, Any] = {}
    client = Client(url)
    load = Load(client, tokens, rate)

    async def phase(name: str, during: Callable[[], Any] | None = None) -> None:
        provider.reset_stats()
        current = Phase(name)
        running = asyncio.create_task(load.run(current, seconds))
        if during is not None:
            await during()
        await running
        await load.drain()
        stats = provider.stats()
        current.fetches = {k: stats[k] for k in ("discovery", "jwks", "introspection")}
        phases[name] = current.report()
        print(f"{name}: {json.dumps(phases[name])}", file=sys.stderr)

    async def flap() -> None:
        for i in range(int(seconds * 2)):
            await asyncio.to_thread(
                provider.set_faults, **({"mode": "reset"} if i % 2 == 0 else {})
            )
            await asyncio.sleep(0.5)
        await asyncio.to_thread(provider.clear_faults)

    async def rotate() -> None:
        await asyncio.sleep(seconds / 4)
        await asyncio.to_thread(provider.rotate_keys)
        for _ in range(40):  # new tokens keep coming from the new keys
            tokens.rotated.append(await asyncio.to_thread(provider.token, "client-rs256"))
            await asyncio.sleep(seconds / 80)

    async def restart_redis() -> None:
        await asyncio.sleep(seconds / 4)
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(seconds / 3)
        await asyncio.to_thread(redis.start)

    async def flood() -> None:
        load.flood = True

    # Warm-up, not reported: discovery, key sets, every worker's first requests.
    await load.run(Phase("warm-up"), 3.0)
    await load.drain()
    await phase("steady")
    provider.set_faults(delay_ms=2000)
    await phase("provider_slow_2s")
    provider.set_faults(mode="reset")
    await phase("provider_down")
    provider.clear_faults()
    await phase("provider_flapping", flap)
    await asyncio.sleep(max(0.0, started + COOLDOWN + 1 - time.monotonic()))
    await phase("key_rotation", rotate)
    await phase("redis_restart", restart_redis)
    await phase("random_kid_flood", flood)
    client.close()
    return phases


def suite(*, rounds: int = 10, rate: float = 150.0) -> dict[str, Any]:
    """``rounds``: seconds per phase."""
    seconds = float(rounds)
    if not OIDCProvider.node_available():
        raise SystemExit("Node.js is needed (tests/provider runs oidc-provider)")
    with OIDCProvider() as provider, RedisServer() as redis:
        tokens = Tokens(provider, new_opaque=int(rate * MIX["opaque_new"] * seconds * 9))
        with api(provider, redis) as url:
            phases = asyncio.run(_scenario(provider, redis, url, tokens, seconds, rate))
    unexpected = {name: p["unexpected"] for name, p in phases.items() if p["unexpected"]}
    accepted_bad = sum(
        p["classes"].get(kind, {}).get("statuses", {}).get("200", 0)
        for p in phases.values()
        for kind in ("bad", "bad_opaque")
    )
    jwt_p99 = {
        name: {
            "client": p["classes"]["jwt"]["p99_ms"],
            "in_app": p["classes"]["jwt"]["in_app_p99_ms"],
            "control_client": p["classes"]["control"]["p99_ms"],
        }
        for name, p in phases.items()
    }
    return {
        "rate_per_second": rate,
        "seconds_per_phase": seconds,
        "workers": WORKERS,
        "phases": phases,
        "summary": {
            "requests": sum(p["requests"] for p in phases.values()),
            "unexpected_statuses": unexpected,
            "bad_tokens_accepted": accepted_bad,
            "jwt_p99_ms_by_phase": jwt_p99,
            "jwt_in_app_p99_under_10ms": all(v["in_app"] < 10 for v in jwt_p99.values()),
        },
    }


if __name__ == "__main__":
    print(json.dumps(suite(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
