"""Shared parts of the DPoP tests: client keys made once, and one way to call the checks."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Generator
from typing import Any

import httpx
import pytest

from oauth_shield import AuthError, Reason
from oauth_shield._dpop import DPoPSettings, Nonces, Proof, check_proof
from oauth_shield.testing import DPoPKey, b64url
from tests.conftest import NOW

URL = "https://api.test/items"
TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"  # RFC 9449 §7.1's example token
DEFAULTS = DPoPSettings()


@functools.cache
def client_key(alg: str = "ES256", name: str = "") -> DPoPKey:
    """One key per algorithm (and name) for the session, with the tests' frozen clock."""
    return DPoPKey(alg, clock=lambda: NOW)


def digest(token: str = TOKEN) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def proof(key: DPoPKey | None = None, method: str = "GET", url: str = URL, **kw: Any) -> str:
    """A proof for ``method`` and ``url`` that comes with :data:`TOKEN` unless told."""
    kw.setdefault("access_token", TOKEN)
    return (key or client_key()).proof(method, url, **kw)


def check(
    value: Any,
    *,
    method: str = "GET",
    url: str | None = URL,
    token: str | None = TOKEN,
    now: float = NOW,
    settings: DPoPSettings = DEFAULTS,
    nonces: Nonces | None = None,
) -> Proof:
    return check_proof(
        value,
        method=method,
        url=url,
        token_digest=None if token is None else digest(token),
        now=now,
        settings=settings,
        nonces=nonces,
    )


def refused(value: Any, reason: Reason | None = None, **kw: Any) -> AuthError:
    """``check`` refuses ``value`` with an ``AuthError`` (for ``reason``) that says nothing of
    the proof: not in its message, its repr, its headers or its body."""
    with pytest.raises(AuthError) as caught:
        check(value, **kw)
    error = caught.value
    if reason is not None:
        assert error.reason is reason, f"expected {reason}, got {error.reason}"
    said = " ".join((str(error), repr(error), str(error.headers("api")), str(error.body())))
    if isinstance(value, str):
        for piece in {value, *value.split(".")}:
            assert len(piece) < 8 or piece not in said
    assert error.__cause__ is None
    return error


def encode(value: dict[str, Any] | bytes) -> str:
    """A base64url part from JSON (a dict) or from raw bytes."""
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64url(raw)


class DPoPClient(httpx.Auth):
    """What a DPoP client library does for each request to a resource server (RFC 9449 §7.1,
    §8, §9): ``Authorization: DPoP <token>``, a fresh proof with ``ath`` (and the last nonce
    the server sent), and one retry when the server answers ``use_dpop_nonce``."""

    def __init__(self, key: DPoPKey, token: str) -> None:
        self.key, self.token = key, token
        self.nonce: str | None = None
        self.proofs: list[str] = []  # every proof sent, for replay tests

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._sign(request)
        response = yield request
        nonce = response.headers.get("DPoP-Nonce")
        if nonce is not None:
            self.nonce = nonce
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code == 401 and 'error="use_dpop_nonce"' in challenge and nonce:
            self._sign(request)
            yield request

    def _sign(self, request: httpx.Request) -> None:
        proof = self.key.proof(
            request.method, str(request.url), access_token=self.token, nonce=self.nonce
        )
        self.proofs.append(proof)
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = proof
