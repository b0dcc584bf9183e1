"""Helpers for the hostile-input suite (../shared/SECURITY-CASES.md, one file per class)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from oauth_shield import Reason, TokenValidator
from oauth_shield.testing import LocalIssuer, SigningKey, b64url, sign_compact
from tests.conftest import refused

Hostile = Callable[..., Awaitable[None]]


@pytest.fixture
def hostile(
    validator: TokenValidator, issuer: LocalIssuer, all_logs: pytest.LogCaptureFixture
) -> Hostile:
    """Refuse ``token`` (with ``reason``), say nothing of it, and stay healthy afterwards:
    a valid token is accepted next, so no hostile input can poison any cache."""

    async def check(token: Any, reason: Reason | None = None, *, scopes: Any = None) -> None:
        await refused(validator, token, reason, scopes=scopes, caplog=all_logs)
        accepted = await validator.validate(issuer.token(scope="read"), ["read"])
        assert accepted.subject == "user-1"

    return check


def raw_token(
    header: bytes | dict[str, Any], payload: bytes | dict[str, Any], key: SigningKey
) -> str:
    """A token signed by ``key`` over raw header and payload bytes (for malformed JSON)."""
    return sign_compact(header, payload, key.private, key.alg)


def header_for(key: SigningKey, **extra: Any) -> dict[str, Any]:
    header = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid, **extra}
    return {name: value for name, value in header.items() if value is not None}


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token with an arbitrary signature (or none)."""
    encode = lambda value: b64url(json.dumps(value).encode())  # noqa: E731
    return f"{encode(header)}.{encode(payload)}.{b64url(signature)}"
