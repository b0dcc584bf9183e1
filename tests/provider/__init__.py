"""Launcher for a real OpenID Provider (npm ``oidc-provider``) used by the tests.

Why: oauth_shield must validate tokens minted by an independent, spec-following
authorization server, not only tokens the tests forge themselves. ``server.mjs``
next to this file wraps ``oidc-provider`` on 127.0.0.1 and adds test-only admin
endpoints under ``/__test__/`` (key rotation, request counters, fault injection).

Only the standard library and ``httpx`` are used, and files are located through
``__file__`` (no relative imports), so this works as ``tests.provider`` or as a
top-level ``provider`` package.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Protocol

import httpx

__all__ = ["API_AUDIENCE", "CLIENT_IDS", "OTHER_AUDIENCE", "OIDCProvider"]

API_AUDIENCE = "https://api.example.test"
OTHER_AUDIENCE = "https://other.example.test"
#: Clients server.mjs knows: RS256 / ES256 / opaque / 2-second RS256 tokens for
#: API_AUDIENCE, DPoP-bound ES256 JWTs / opaque tokens (RFC 9449), and the API's own
#: credentials for the introspection endpoint.
CLIENT_IDS = (
    "client-rs256",
    "client-es256",
    "client-opaque",
    "client-short",
    "client-dpop",
    "client-dpop-opaque",
    "resource-server",
)

PROVIDER_DIR = Path(__file__).resolve().parent
START_TIMEOUT = 30.0


class ProofMaker(Protocol):
    """A DPoP key as ``oauth_shield.testing.DPoPKey`` is one (named here without importing)."""

    def proof(self, method: str, url: str) -> str: ...


class OIDCProvider:
    """One ``node server.mjs`` process; use as a context manager or start()/stop()."""

    def __init__(self, *, port: int = 0, clients: dict[str, str] | None = None) -> None:
        # Random secrets by default so tests can use them as leak canaries.
        unknown = set(clients or {}) - set(CLIENT_IDS)
        if unknown:
            raise ValueError(f"server.mjs only knows {CLIENT_IDS}, not {sorted(unknown)}")
        self.clients: dict[str, str] = {cid: secrets.token_urlsafe(24) for cid in CLIENT_IDS}
        self.clients.update(clients or {})
        self.port = port
        self.issuer = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._http = httpx.Client()  # replaced on every start()

    # -- process lifecycle -------------------------------------------------

    @staticmethod
    def node_available() -> bool:
        """True if ``node`` >= 18 is on PATH (and npm too, if deps still need installing)."""
        node = shutil.which("node")
        if node is None:
            return False
        installed = (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir()
        if not installed and not shutil.which("npm"):
            return False
        try:
            out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
            return int(out.stdout.strip().lstrip("v").split(".")[0]) >= 18
        except (OSError, ValueError, subprocess.SubprocessError):
            return False

    @staticmethod
    def _ensure_node_modules() -> None:
        """``npm ci`` once; the lock keeps parallel test workers from racing."""
        marker = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
        if marker.exists():
            return
        tag = hashlib.sha256(str(PROVIDER_DIR).encode()).hexdigest()[:12]
        with open(Path(tempfile.gettempdir()) / f"oauth-shield-npm-{tag}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if marker.exists():
                return
            npm = shutil.which("npm") or "npm"
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=PROVIDER_DIR,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"npm ci failed in {PROVIDER_DIR}:\n{done.stderr[-4000:]}")

    def start(self) -> None:
        """Start node and wait (30 s max) for its one-line JSON handshake on stdout."""
        if self._proc is not None:
            return
        self._ensure_node_modules()
        # A fresh client per process: no keep-alive connections to a dead server.
        self._http = httpx.Client(timeout=10.0)
        env = {
            **os.environ,
            "PORT": str(self.port),
            "CLIENTS_JSON": json.dumps(self.clients),
            "EXIT_ON_STDIN_EOF": "1",  # node exits if we die without stop()
        }
        # stderr goes to a file: it can never fill a pipe and block node, and we
        # can show its tail when start-up fails.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [shutil.which("node") or "node", "server.mjs"],
            cwd=PROVIDER_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        line: list[bytes] = []
        stdout = self._proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        try:
            info = json.loads(line[0]) if line and line[0] else None
        except ValueError:
            info = None
        if not info:
            try:  # EOF on stdout usually means node is exiting: get its code
                code = self._proc.wait(2) if line == [b""] else self._proc.poll()
            except subprocess.TimeoutExpired:
                code = None
            why = f"exited with code {code}" if code is not None else "sent no handshake"
            tail = self._stderr_tail()
            self.stop()
            raise RuntimeError(
                f"oidc-provider {why} (limit {START_TIMEOUT:.0f}s); stdout={line!r}\n{tail}"
            )
        self.issuer, self.port = info["issuer"], info["port"]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            for pipe in (proc.stdin, proc.stdout):
                if pipe:
                    pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._http.close()

    def restart(self) -> None:
        """Stop and start on the same port (same issuer); keys and tokens are new."""
        self.stop()
        self.start()

    def __enter__(self) -> OIDCProvider:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stderr_tail(self, limit: int = 4000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def shared_api_env(self, redis_url: str) -> dict[str, str]:
        """The ``OAUTH_SHIELD_*`` settings of an API trusting this provider, its workers sharing
        ``redis_url`` (with a fresh ``cache_secret``): for apps run in other processes."""
        return {
            "OAUTH_SHIELD_ISSUER": self.issuer,
            "OAUTH_SHIELD_AUDIENCE": API_AUDIENCE,
            "OAUTH_SHIELD_CLIENT_ID": "resource-server",
            "OAUTH_SHIELD_CLIENT_SECRET": self.clients["resource-server"],
            "OAUTH_SHIELD_REDIS_URL": redis_url,
            "OAUTH_SHIELD_CACHE_SECRET": secrets.token_urlsafe(32),
        }

    # -- OAuth calls -------------------------------------------------------

    def _post(self, path: str, *, client_id: str | None = None, **kw: Any) -> httpx.Response:
        if client_id:
            kw["auth"] = httpx.BasicAuth(client_id, self.clients[client_id])
        resp = self._http.post(f"{self.issuer}{path}", **kw)
        if resp.status_code >= 400:
            raise RuntimeError(f"POST {path} -> {resp.status_code}: {resp.text}")
        return resp

    def token(
        self, client_id: str = "client-rs256", *, resource: str = API_AUDIENCE, scope: str = "read"
    ) -> str:
        """Client-credentials grant (client_secret_basic); returns the access_token.

        The token's format follows the client: JWT RS256/ES256, opaque, or a
        2-second RS256 JWT for ``client-short``. Scopes outside ``read write
        admin`` are silently dropped by the provider.
        """
        data = {"grant_type": "client_credentials", "resource": resource, "scope": scope}
        return str(self._post("/token", client_id=client_id, data=data).json()["access_token"])

    def dpop_token(
        self,
        key: ProofMaker,
        client_id: str = "client-dpop",
        *,
        resource: str = API_AUDIENCE,
        scope: str = "read",
    ) -> dict[str, Any]:
        """Client credentials with a DPoP proof by ``key`` (RFC 9449 §5): the token response,
        whose ``access_token`` is bound to the key and whose ``token_type`` is ``DPoP``.

        ``client-dpop`` gets an ES256 JWT with ``cnf.jkt``; ``client-dpop-opaque`` an opaque
        token whose introspection answer carries ``cnf.jkt``.
        """
        data = {"grant_type": "client_credentials", "resource": resource, "scope": scope}
        proof = key.proof("POST", f"{self.issuer}/token")
        resp = self._post("/token", client_id=client_id, data=data, headers={"DPoP": proof})
        return dict(resp.json())

    def introspect(self, token: str, client_id: str = "resource-server") -> dict[str, Any]:
        """RFC 7662 introspection, by default with the API's own credentials."""
        data = {"token": token, "token_type_hint": "access_token"}
        return dict(self._post("/token/introspection", client_id=client_id, data=data).json())

    def revoke(self, token: str, client_id: str) -> None:
        """RFC 7009 revocation by the client the (opaque) token was issued to."""
        self._post(
            "/token/revocation",
            client_id=client_id,
            data={"token": token, "token_type_hint": "access_token"},
        )

    # -- test-only admin endpoints -------------------------------------------

    def rotate_keys(self, *, drop_old: bool = False) -> list[str]:
        """New RSA+EC keys sign from now on; returns published kids, newest first."""
        path = "/__test__/rotate" + ("?drop_old=1" if drop_old else "")
        return list(self._post(path).json()["kids"])

    def stats(self) -> dict[str, int]:
        """Requests seen per endpoint (discovery, jwks, token, introspection, revocation, other)."""
        resp = self._http.get(f"{self.issuer}/__test__/stats")
        resp.raise_for_status()
        return dict(resp.json())

    def reset_stats(self) -> None:
        self._post("/__test__/stats/reset")

    def set_faults(self, **faults: Any) -> None:
        """Faults for discovery, jwks and introspection (not token, not /__test__/).

        ``delay_ms=2000``; ``mode="reset"`` (connection reset); ``mode="status",
        status=503`` (HTML error page); ``mode="html"`` (200 text/html).
        """
        self._post("/__test__/faults", json=faults)

    def clear_faults(self) -> None:
        self._post("/__test__/faults", json={})
