"""Shared parts of the DPoP tests: client keys made once, and one way to call the checks."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

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
