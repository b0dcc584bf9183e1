"""Stateless server nonces for DPoP (oauth_shield._nonce)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield import Secret
from oauth_shield._errors import ConfigurationError
from oauth_shield._nonce import DEFAULT_NONCE_PERIOD, NonceIssuer
from tests.conftest import NOW

SECRET = b"s" * 32
PERIOD = DEFAULT_NONCE_PERIOD
SLOT_START = (NOW // PERIOD) * PERIOD


def test_a_nonce_is_accepted_from_the_slot_before_to_the_slot_after() -> None:
    nonces = NonceIssuer(SECRET)
    nonce = nonces.current(SLOT_START)
    assert nonces.current(SLOT_START + PERIOD - 1) == nonce  # one nonce per slot
    assert nonces.current(SLOT_START + PERIOD) != nonce
    for when in (SLOT_START - PERIOD, SLOT_START, SLOT_START + 2 * PERIOD - 0.001):
        assert nonces.accepts(nonce, when)
    for when in (SLOT_START - PERIOD - 0.001, SLOT_START + 2 * PERIOD):
        assert not nonces.accepts(nonce, when)


def test_nonces_are_short_public_tokens() -> None:
    nonce = NonceIssuer(SECRET).current(NOW)
    assert len(nonce) == 22
    assert set(nonce) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_processes_that_share_the_secret_share_the_nonces() -> None:
    # Another interpreter, as another worker would be: same secret, same nonce.
    code = (
        "from oauth_shield._nonce import NonceIssuer;"
        f"print(NonceIssuer({SECRET!r}, context='api').current({NOW!r}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    here = NonceIssuer(Secret(SECRET.decode()), context="api")
    assert other.stdout.strip() == here.current(NOW)
    assert here.accepts(other.stdout.strip(), NOW)


def test_without_a_secret_each_issuer_has_its_own() -> None:
    first, second = NonceIssuer(), NonceIssuer()
    assert not first.shared
    assert NonceIssuer(SECRET).shared
    assert first.current(NOW) != second.current(NOW)
    assert not second.accepts(first.current(NOW), NOW)


def test_the_secret_and_the_context_both_matter() -> None:
    nonce = NonceIssuer(SECRET, context="api-1").current(NOW)
    assert not NonceIssuer(SECRET, context="api-2").accepts(nonce, NOW)
    assert not NonceIssuer(b"t" * 32, context="api-1").accepts(nonce, NOW)
    assert NonceIssuer(SECRET, context="api-1").accepts(nonce, NOW)


@pytest.mark.parametrize(
    "value",
    [None, 42, b"x" * 22, "", "x" * 22, "x" * 23, "é" * 22, "A" * 21 + "=", ["nonce"], 1.5],
)
def test_what_is_not_a_nonce(value: Any) -> None:
    assert not NonceIssuer(SECRET).accepts(value, NOW)


@given(st.text(max_size=30))
def test_accepts_never_raises(value: str) -> None:
    assert not NonceIssuer(SECRET).accepts(value, NOW) or value == NonceIssuer(SECRET).current(NOW)


def test_a_nonce_one_character_off_is_refused() -> None:
    nonces = NonceIssuer(SECRET)
    nonce = nonces.current(NOW)
    for index in range(len(nonce) - 1):  # the last character carries unused bits
        changed = nonce[:index] + ("A" if nonce[index] != "A" else "B") + nonce[index + 1 :]
        assert not nonces.accepts(changed, NOW)


@pytest.mark.parametrize(
    ("secret", "period"),
    [(b"short", PERIOD), ("s" * 31, PERIOD), (SECRET, 0), (SECRET, float("inf")), (42, PERIOD)],
)
def test_bad_configuration(secret: Any, period: float) -> None:
    with pytest.raises(ConfigurationError):
        NonceIssuer(secret, period=period)


def test_the_repr_shows_no_secret() -> None:
    nonces = NonceIssuer(SECRET)
    assert repr(nonces) == "NonceIssuer(period=300, shared=True)"
    assert "sss" not in repr(nonces)
