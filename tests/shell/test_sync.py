"""SyncTokenValidator: the async core from threads, one loop thread per process."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from oauth_shield import (
    AccessToken,
    InvalidTokenError,
    Reason,
    SyncTokenValidator,
    TemporarilyUnavailableError,
    _sync,
)
from oauth_shield.testing import LocalIssuer, SigningKey


@pytest.fixture
def make_sync(issuer: LocalIssuer, clock: Any) -> Iterator[Any]:
    made: list[SyncTokenValidator] = []

    def make(**overrides: Any) -> SyncTokenValidator:
        options = {
            "issuer": issuer.issuer,
            "audience": issuer.audience,
            "transport": issuer.transport(),
            "clock": clock,
            **overrides,
        }
        made.append(validator := SyncTokenValidator(**options))
        return validator

    yield make
    for validator in made:
        validator.close()


def test_a_token_validates_from_a_plain_thread(make_sync: Any, issuer: LocalIssuer) -> None:
    token = make_sync().validate(issuer.token(scope="read"), ["read"])
    assert isinstance(token, AccessToken)
    assert token.subject == "user-1"


def test_the_warm_path_makes_no_thread_hop(
    make_sync: Any, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    validator = make_sync()
    repeated = issuer.token()
    validator.validate(repeated)  # cold: one hop to fetch the key set

    def no_hop(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("crossed to the loop thread")

    monkeypatch.setattr(_sync._LoopThread, "run", no_hop)
    assert validator.validate(repeated).subject == "user-1"  # the verified-token cache
    assert (
        validator.validate(issuer.token(alg="ES256", sub="fresh")).subject == "fresh"
    )  # a cached key
    with pytest.raises(InvalidTokenError):
        validator.validate(issuer.token(aud="elsewhere"))  # refusals too


def test_n_threads_on_a_cold_cache_make_one_fetch(make_sync: Any, issuer: LocalIssuer) -> None:
    validator = make_sync()
    tokens = [issuer.token(alg="ES256", sub=f"user-{i}") for i in range(100)]
    barrier = threading.Barrier(20)

    def validate(token: str) -> str | None:
        if tokens.index(token) < 20:
            barrier.wait()
        return validator.validate(token).subject

    with ThreadPoolExecutor(max_workers=20) as pool:
        subjects = list(pool.map(validate, tokens))
    assert subjects == [f"user-{i}" for i in range(100)]
    assert issuer.requests["/jwks"] == 1


def test_validators_share_one_loop_thread(make_sync: Any, issuer: LocalIssuer) -> None:
    first, second = make_sync(), make_sync()
    first.validate(issuer.token())
    second.validate(issuer.token())
    assert len([t for t in threading.enumerate() if t.name == "oauth_shield"]) == 1


def test_a_cross_thread_wait_that_expires_answers_503(
    make_sync: Any, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    validator = make_sync()
    validator._wait = 0.2

    async def stuck(*args: Any) -> AccessToken:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    monkeypatch.setattr(validator._validator, "_check_remote", stuck)
    with pytest.raises(TemporarilyUnavailableError):
        validator.validate(issuer.token())


def test_an_unknown_kid_from_threads(make_sync: Any, issuer: LocalIssuer, clock: Any) -> None:
    validator = make_sync()
    validator.validate(issuer.token())
    clock.advance(1)  # the window (two fetches per jwks_cooldown) has room for one refetch
    stranger = SigningKey("ES256", kid="stranger")
    forged = [
        stranger.sign({"alg": "ES256", "typ": "at+jwt", "kid": f"k{i}"}, issuer.claims())
        for i in range(40)
    ]
    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(lambda t: _reason(validator, t), forged))
    assert outcomes == [Reason.UNKNOWN_KID] * 40
    assert issuer.requests["/jwks"] == 2


def _reason(validator: SyncTokenValidator, token: str) -> Reason | None:
    try:
        validator.validate(token)
    except InvalidTokenError as error:
        return error.reason
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_gets_a_fresh_loop(make_sync: Any, issuer: LocalIssuer, clock: Any) -> None:
    validator = make_sync(jwks_cooldown=0)
    validator.validate(issuer.token())  # the parent's loop thread now exists
    parent_loop = _sync._shared
    issuer.rotate()
    fresh = issuer.token()  # needs a refetch: network work, in the child, on a new loop
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            ok = validator.validate(fresh).subject == "user-1"
            code = 0 if ok and _sync._shared is not parent_loop else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _sync._shared is parent_loop  # the parent's loop is untouched
    assert validator.validate(fresh).subject == "user-1"


def test_close_is_idempotent_and_a_context_manager(issuer: LocalIssuer, clock: Any) -> None:
    with SyncTokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport(), clock=clock
    ) as validator:
        validator.validate(issuer.token())
    assert validator._validator._http._client is None
    validator.close()
    assert "issuer.test" in repr(validator)


def test_from_env(issuer: LocalIssuer, clock: Any) -> None:
    env = {"OAUTH_SHIELD_ISSUER": issuer.issuer, "OAUTH_SHIELD_AUDIENCE": issuer.audience}
    with SyncTokenValidator.from_env(env, transport=issuer.transport(), clock=clock) as validator:
        assert validator.validate(issuer.token()).subject == "user-1"
        assert validator.settings.audience == (issuer.audience,)


def test_an_expired_wait_names_what_it_waited_for(
    issuer: LocalIssuer, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer.clients["rs"] = "secret"
    with SyncTokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        transport=issuer.transport(),
        clock=clock,
        client_id="rs",
        client_secret="secret",
    ) as validator:
        validator._wait = 0.2

        async def stuck(*args: Any) -> AccessToken:
            await asyncio.sleep(30)
            raise AssertionError("unreachable")

        monkeypatch.setattr(validator._validator, "_check_remote", stuck)
        with pytest.raises(TemporarilyUnavailableError) as caught:
            validator.validate(issuer.opaque_token())
        assert caught.value.reason is Reason.INTROSPECTION_UNAVAILABLE
