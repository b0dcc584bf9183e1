"""Requests per second of a route protected by oauth_shield, unprotected, and by the best peer.

Each framework's app (bench/apps.py) runs in its own process, one worker: Quart and FastAPI
under uvicorn, Flask under gunicorn (gthread, 4 threads). It serves one view three times:
``/unprotected``, ``/protected`` (oauth_shield's extension, scope ``read``) and ``/peer``
(the best peer arrangement from bench/tokens.py: joserfc with a hand-written key cache, as a
decorator; see bench/apps.py). wrk (Debian's package) loads it with one thread and 16
connections for ``seconds``; the three routes alternate, in a fresh random order each round,
for ``rounds`` rounds on the same server. The token is the same valid one every time (the
steady state of a client session); every route is checked to answer 200 with it before timing.

Per route: requests per second, p50 and p99 latency as wrk saw them, and the server's CPU time
per request. Two ratios per pair of routes and per round, medians reported:
- ``rps_ratio``: requests per second of the first route over the second's, as wrk saw them;
- ``cpu_ratio``: the same computed from the server process's own CPU time per request
  (/proc), the capacity a saturated worker has. On a shared 2-core machine, where wrk and the
  server compete for the cores with each other and with other tenants, this is the stable one;
  both are reported.
Pairs: ``protected/unprotected`` (the cost of protection, at most 1) and ``protected/peer``
(above 1: oauth_shield serves more requests than the peer). FastAPI's third route is
``/middleware``, the same view behind ``BearerAuthMiddleware``: ``protected/middleware`` near 1
says the dependency costs what the middleware does; its fourth, ``/noop-dependency``, the view
behind a ``Security`` dependency that does nothing, with the shield's signature: what FastAPI
itself charges for any such dependency, so ``protected/noop-dependency`` is the shield's own
cost. ``quart-otel`` is the Quart app again with
OpenTelemetry on (``BENCH_OTEL=1``, see bench/apps.py); ``otel_cost_us`` is its protected
route's server CPU per request minus the plain Quart app's.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from oauth_shield.testing import LocalIssuer, loopback_socket

ROOT = Path(__file__).resolve().parent.parent


def _uvicorn(app: str) -> Callable[[int], list[str]]:
    return lambda port: [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


SERVERS: dict[str, Callable[[int], list[str]]] = {
    "quart": _uvicorn("bench.apps:quart_app"),
    "quart-otel": _uvicorn("bench.apps:quart_app"),  # with SERVER_ENV below
    "fastapi": _uvicorn("bench.apps:fastapi_app"),
    "flask": lambda port: [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "--threads",
        "4",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "bench.apps:flask_app",
    ],
}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
#: Extra environment of a server.
SERVER_ENV = {"quart-otel": {"BENCH_OTEL": "1"}}


@contextlib.contextmanager
def server(framework: str, issuer: LocalIssuer) -> Iterator[tuple[str, int]]:
    with loopback_socket() as probe:
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OAUTH_SHIELD_ISSUER": issuer.issuer,
        "OAUTH_SHIELD_AUDIENCE": issuer.audience,
        **SERVER_ENV.get(framework, {}),
    }
    process = subprocess.Popen(SERVERS[framework](port), cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/unprotected").status_code == 200:
                    break
            time.sleep(0.05)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (gunicorn's worker)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


def measured(url: str, pid: int, seconds: int, headers: dict[str, str]) -> dict[str, float]:
    """One wrk run, plus the server's CPU time per request during it."""
    before = cpu_seconds(pid)
    result = wrk(url, seconds, headers)
    result["cpu_us_per_request"] = (cpu_seconds(pid) - before) / (result["rps"] * seconds) * 1e6
    return result


def wrk(url: str, seconds: int, headers: dict[str, str]) -> dict[str, float]:
    command = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    if done.returncode:  # the command line holds a token: report without it
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    output = done.stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


ROUTES = ("unprotected", "protected", "peer")
PAIRS = (("protected", "unprotected"), ("protected", "peer"))
#: FastAPI compares its Security dependency with the ASGI middleware in front of the same view.
FRAMEWORK_ROUTES = {
    "fastapi": ("unprotected", "protected", "middleware", "noop-dependency"),
    "quart-otel": ("unprotected", "protected"),
}
FRAMEWORK_PAIRS = {
    "fastapi": (
        ("protected", "unprotected"),
        ("protected", "middleware"),
        ("protected", "noop-dependency"),  # the shield's own cost, FastAPI's taken out
        ("noop-dependency", "unprotected"),  # what FastAPI charges for any Security dependency
    ),
    "quart-otel": (("protected", "unprotected"),),
}


def _ratios(runs: dict[str, list[dict[str, float]]], a: str, b: str) -> dict[str, float]:
    """Route ``a``'s capacity over route ``b``'s, medians of per-round ratios."""
    pairs = list(zip(runs[a], runs[b], strict=True))
    return {
        "rps_ratio": round(statistics.median(x["rps"] / y["rps"] for x, y in pairs), 3),
        "cpu_ratio": round(
            statistics.median(y["cpu_us_per_request"] / x["cpu_us_per_request"] for x, y in pairs),
            3,
        ),
    }


def suite(*, rounds: int = 11, seconds: int = 2) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk (./run bench installs it)")
    issuer = LocalIssuer()
    results: dict[str, Any] = {}
    rng = random.Random(7)
    with issuer.serve():
        token = issuer.token(scope="read", exp=int(time.time()) + 3600)
        auth = {"Authorization": f"Bearer {token}"}
        for framework in SERVERS:
            routes = FRAMEWORK_ROUTES.get(framework, ROUTES)
            pairs = FRAMEWORK_PAIRS.get(framework, PAIRS)
            with server(framework, issuer) as (url, pid):
                for route in routes:
                    status = httpx.get(f"{url}/{route}", headers=auth).status_code
                    if status != 200:
                        raise SystemExit(f"{framework} /{route} answered {status} to a valid token")
                runs: dict[str, list[dict[str, float]]] = {route: [] for route in routes}
                for _ in range(rounds):
                    order = list(routes)
                    rng.shuffle(order)
                    for route in order:
                        runs[route].append(measured(f"{url}/{route}", pid, seconds, auth))
            results[framework] = {
                route: {
                    key: round(statistics.median(run[key] for run in values), 2)
                    for key in values[0]
                }
                for route, values in runs.items()
            } | {"ratios": {f"{a}/{b}": _ratios(runs, a, b) for a, b in pairs}}
    if "quart" in results and "quart-otel" in results:
        with_otel = results["quart-otel"]["protected"]["cpu_us_per_request"]
        without = results["quart"]["protected"]["cpu_us_per_request"]
        results["quart-otel"]["otel_cost_us"] = round(with_otel - without, 2)
    return results
