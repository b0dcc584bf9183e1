"""Real servers for tests that must see what a server does to a request: uvicorn (h11 and
httptools), hypercorn, gunicorn (uvicorn workers or its own sync workers), and a raw-socket
client that sends a request target exactly as written."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from oauth_shield.testing import loopback_socket, serve_asgi

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def uvicorn_server(app: Any, *, http: str = "h11", root_path: str = "") -> Iterator[str]:
    """``app`` under uvicorn in a thread, with the given HTTP parser and ``--root-path``."""
    with serve_asgi(app, lifespan="on", http=http, root_path=root_path) as url:
        yield url


@contextlib.contextmanager
def hypercorn_server(app: Any, *, root_path: str = "") -> Iterator[str]:
    """``app`` under hypercorn (asyncio) in a thread."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = loopback_socket()
    sock.listen(128)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.root_path = root_path
    config.accesslog = None
    config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def run() -> None:
        started.set()
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    started.wait(5)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    _wait_until_listening(url)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()
        with contextlib.suppress(OSError):  # hypercorn closes the descriptor it was given
            sock.close()


@contextlib.contextmanager
def gunicorn_server(
    target: str, *, env: Mapping[str, str], worker: str = "uvicorn.workers.UvicornWorker"
) -> Iterator[str]:
    """``module:app`` under gunicorn in a subprocess (two workers), configured by ``env``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "-k", worker, "-w", "2"]
    command += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", target]
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_listening(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        if process.stderr is not None:
            process.stderr.close()


def _wait_until_listening(url: str, process: subprocess.Popen[str] | None = None) -> None:
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read() if process.stderr else ''}")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {url}")


def raw_request(
    url: str, target: str, headers: Mapping[str, str] | None = None, method: str = "GET"
) -> tuple[int, bytes]:
    """Send ``method target HTTP/1.1`` byte for byte (no client normalises the target);
    the status and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((host, int(port)), 10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return status, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


__all__ = ["gunicorn_server", "hypercorn_server", "raw_request", "serve_asgi", "uvicorn_server"]
