"""API keys: the format, storage as hashes only, constant-time checks, the CLI."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from oauth_shield import (
    ConfigurationError,
    InsufficientScopeError,
    InvalidTokenError,
    Reason,
    apikeys,
)
from oauth_shield.apikeys import APIKeyStore, new_key
from tests.conftest import FrozenClock


def test_a_new_key_has_the_prefix_and_only_its_hash_is_stored() -> None:
    key, stored = new_key(["read", "write"])
    assert key.startswith("osk_") and len(key) == 4 + 10 + 1 + 43
    assert stored.key_id == key[:14]
    assert stored.digest == hashlib.sha256(key.encode()).digest()
    line = stored.line()
    assert key not in line and key[15:] not in line and key[15:] not in repr(stored)
    assert line == f"{stored.key_id} sha256={stored.digest.hex()} scopes=read,write"


def test_a_stored_line_validates_its_key(clock: FrozenClock) -> None:
    key, stored = new_key(["read"], datetime.fromtimestamp(clock.time() + 60, UTC))
    store = APIKeyStore.parse(f"# keys\n{stored.line()}  # for the batch job\n")
    store._clock = clock
    token = store.validate(key, ["read"])
    assert (token.subject, token.client_id, token.scopes) == (
        stored.key_id,
        stored.key_id,
        {"read"},
    )
    assert token.claims["auth"] == "api_key"
    assert key not in repr(token)
    with pytest.raises(InsufficientScopeError):
        store.validate(key, ["admin"])
    clock.advance(60)
    with pytest.raises(InvalidTokenError) as expired:
        store.validate(key)
    assert expired.value.reason is Reason.API_KEY_EXPIRED


@pytest.mark.parametrize(
    "presented",
    [
        None,
        42,
        "",
        "osk_",
        "Bearer osk_x",
        "osk_abcdefghij_short",
        "osk_ABCDEFGHIJ_" + "a" * 43,
        "x" * 10_000,
    ],
)
def test_malformed_keys(presented: object) -> None:
    _, stored = new_key()
    with pytest.raises(InvalidTokenError) as refused:
        APIKeyStore([stored]).validate(presented)
    assert refused.value.reason is Reason.INVALID_API_KEY


def test_a_wrong_secret_or_an_unknown_id_costs_one_constant_time_compare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, stored = new_key()
    store = APIKeyStore([stored])
    compared = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", spy)
    wrong_secret = key[:-1] + ("a" if key[-1] != "a" else "b")
    unknown_id = "osk_zzzzzzzzzz" + key[14:]
    for presented in (wrong_secret, unknown_id):
        with pytest.raises(InvalidTokenError):
            store.validate(presented)
    assert compared == [(32, 32), (32, 32)]


def test_keys_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    (key1, one), (key2, two) = new_key(["a"]), new_key(["b"])
    environ = {"OAUTH_SHIELD_API_KEYS": f"{one.line()};{two.line()}"}
    assert len(APIKeyStore.from_env(environ=environ)) == 2
    path = tmp_path / "keys"
    path.write_text(f"{one.line()}\n\n# retired:\n# {two.line()}\n")
    from_file = APIKeyStore.from_env(environ={"OAUTH_SHIELD_API_KEYS_FILE": str(path)})
    assert from_file.validate(key1).scopes == {"a"}
    with pytest.raises(InvalidTokenError):
        from_file.validate(key2)
    assert APIKeyStore.configured({}) is None
    with pytest.raises(ConfigurationError):
        APIKeyStore.from_env(environ={**environ, "OAUTH_SHIELD_API_KEYS_FILE": str(path)})
    with pytest.raises(ConfigurationError):
        APIKeyStore.from_file(tmp_path / "missing")


@pytest.mark.parametrize(
    "line",
    [
        "osk_abcdefghij",
        "osk_abcdefghij sha256=abc",
        f"osk_abcdefghij sha256={'0' * 64} owner=bob",
        f"osk_abcdefghij sha256={'0' * 64} expires=soon",
        f'osk_abcdefghij sha256={"0" * 64} scopes=re"ad',
        f"osk_abcdefghij_secretpart sha256={'0' * 64}",
    ],
)
def test_malformed_lines_fail_at_load(line: str) -> None:
    with pytest.raises(ConfigurationError):
        APIKeyStore.parse(line)


def test_the_cli_prints_a_key_once_with_its_line() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "oauth_shield",
            "apikey",
            "new",
            "--scopes",
            "read",
            "--expires",
            "2030-01-01",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = next(
        line.strip()
        for line in out.splitlines()
        if line.strip().startswith("osk_") and "sha256" not in line
    )
    stored_line = next(line.strip() for line in out.splitlines() if "sha256=" in line)
    assert stored_line.endswith("scopes=read expires=2030-01-01T00:00:00Z")
    assert APIKeyStore.parse(stored_line).validate(key).scopes == {"read"}


def test_an_expiry_without_an_offset_is_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Auckland")  # a local time far from UTC must not leak in
    time.tzset()
    try:
        line = f"osk_abcdefghij sha256={'0' * 64} expires=2030-01-01T00:00:00"
        (stored,) = APIKeyStore.parse(line)._keys.values()
        assert stored.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
        _, made = new_key(expires_at=datetime(2030, 1, 1))
        assert made.line().endswith("expires=2030-01-01T00:00:00Z")
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("scope", ["read,write", "two words", 'quo"te', ""])
def test_a_key_only_takes_scopes_its_line_can_hold(scope: str) -> None:
    with pytest.raises(ConfigurationError, match="scope"):
        new_key([scope])


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [(["--expires", "soon"], "--expires"), (["--scopes", "a,b"], "--scopes")],
)
def test_the_cli_answers_bad_arguments_with_usage(arguments: list[str], complaint: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oauth_shield", "apikey", "new", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage:") and complaint in done.stderr
    assert "Traceback" not in done.stderr
