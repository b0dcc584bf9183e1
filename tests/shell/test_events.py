"""oauth_shield.events: what listeners receive, that a broken listener breaks nothing, and that
oauth_shield's own WARNING lines are written from the same events."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest

from oauth_shield import AuthError, Reason, SyncTokenValidator, TokenValidator, events
from oauth_shield._token import text_fingerprint
from oauth_shield.apikeys import APIKeyStore, new_key
from oauth_shield.http import Guard, RequestCredentials
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock, ValidatorFactory, secret_pieces


async def test_a_refusal_is_an_event_naming_the_token_by_its_fingerprint(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    told: list[events.Event] = []
    validator.subscribe(told.append)
    expired = issuer.token(exp=1)
    with pytest.raises(AuthError):
        await validator.validate(expired)
    refused = [event for event in told if isinstance(event, events.TokenRefused)]
    assert refused == [
        events.TokenRefused(
            issuer=issuer.issuer,
            reason="expired",
            error="invalid_token",
            status=401,
            fingerprint=text_fingerprint(expired),
            scheme="bearer",
            token_kind="jwt",
        )
    ]
    said = repr(told)
    assert not [piece for piece in secret_pieces(expired) if piece in said]
    with pytest.raises(dataclasses.FrozenInstanceError):
        refused[0].reason = "other"  # type: ignore[misc]


async def test_events_come_in_order_from_every_source(
    make_validator: ValidatorFactory, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = make_validator(jwks_ttl=60)
    told: list[str] = []
    validator.subscribe(lambda event: told.append(event.kind))
    await validator.validate(issuer.token())
    issuer.fault = lambda request: httpx.Response(500)
    clock.advance(61)
    await validator.validate(issuer.token())  # stale keys, the refresh failed
    issuer.fault = None
    await validator.check()
    assert told == [
        "key_set_fetched",
        "key_set_fetched",
        "stale_keys_used",
        "key_set_fetched",
        "issuer_back",
    ]


async def test_process_wide_listeners_and_unsubscribing(issuer: LocalIssuer) -> None:
    told: list[events.Event] = []
    unsubscribe = events.subscribe(told.append)
    try:
        made = TokenValidator(
            issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport()
        )
        with pytest.raises(AuthError):
            await made.validate("not a token")
    finally:
        unsubscribe()
    with pytest.raises(AuthError):
        await made.validate("still not a token")
    await made.aclose()
    assert [event.kind for event in told] == ["token_refused"]
    with pytest.raises(TypeError):
        events.subscribe("not callable")  # type: ignore[arg-type]


async def test_a_listener_that_raises_breaks_nothing_and_is_logged_once(
    validator: TokenValidator, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: events.Event) -> None:
        raise ValueError("listener bug")

    later: list[events.Event] = []
    validator.subscribe(broken)
    validator.subscribe(later.append)
    caplog.set_level(logging.ERROR, logger="oauth_shield.events")
    token = issuer.token()
    assert (await validator.validate(token)).subject == "user-1"
    for _ in range(3):
        with pytest.raises(AuthError) as caught:
            await validator.validate(issuer.token(exp=1))
        assert caught.value.reason is Reason.EXPIRED
    errors = [record for record in caplog.records if record.name == "oauth_shield.events"]
    assert len(errors) == 1 and "an event listener raised" in errors[0].getMessage()
    assert [event.kind for event in later].count("token_refused") == 3  # the others still get it


async def test_the_warning_lines_are_the_events_log_lines(
    make_validator: ValidatorFactory, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oauth_shield")
    validator = make_validator(jwks_cooldown=0)
    told: list[events.Event] = []
    validator.subscribe(told.append)
    await validator.validate(issuer.token())
    new = issuer.rotate(keep_old=True)
    await validator.validate(issuer.token())
    with pytest.raises(AuthError):
        await validator.validate(issuer.token(aud="https://elsewhere.test"))
    lines = {(r.name, r.levelname, r.getMessage()) for r in caplog.records}
    rotated = next(e for e in told if isinstance(e, events.KeySetRotated))
    assert rotated.added == (new.kid,) and rotated.removed == ()
    assert (
        "oauth_shield.keys",
        "INFO",
        f"key set rotated: kids added ['{new.kid}'], removed [] (1 keys in, 0 out)",
    ) in lines
    suspected = next(e for e in told if isinstance(e, events.ConfigurationSuspected))
    assert suspected.reason == "audience_mismatch"
    assert (
        "oauth_shield.config",
        "WARNING",
        f"{suspected.message} (logged once per validator)",
    ) in (lines)


async def test_api_key_refusals_are_events_but_not_log_lines(
    validator: TokenValidator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="oauth_shield")
    key, stored = new_key(["read"])
    guard = Guard(validator, api_keys=APIKeyStore([stored]))
    told: list[events.Event] = []
    validator.subscribe(told.append)
    wrong = key[:-3] + "zzz"
    with pytest.raises(AuthError):
        await guard.authenticate(RequestCredentials(api_keys=[wrong]), api_keys=True)
    assert [(e.kind, getattr(e, "scheme", None)) for e in told] == [("token_refused", "api_key")]
    assert told[0].fingerprint == text_fingerprint(wrong)  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.name == "oauth_shield.validator"]


def test_the_sync_facade_has_the_same_events() -> None:
    issuer = LocalIssuer()
    told: list[Any] = []
    with issuer.serve(), SyncTokenValidator(issuer=issuer.issuer, audience=issuer.audience) as v:
        v.subscribe(told.append)
        assert v.validate(issuer.token()).subject == "user-1"
        with pytest.raises(AuthError):
            v.validate(issuer.token(exp=1))
        health = v.health()
    assert [event.kind for event in told] == ["key_set_fetched", "token_refused"]
    assert health["status"] == "ok"


async def test_health_before_any_fetch_is_degraded_and_fetches_nothing(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    document = await validator.health()
    assert document == {
        "status": "degraded",
        "issuer": issuer.issuer,
        "keys": {
            "state": "none",
            "age_seconds": None,
            "expires_in_seconds": None,
            "count": 0,
            "last_fetch": "none",
        },
        "introspection": "absent",
        "shared_cache": "absent",
    }
    assert sum(issuer.requests.values()) == 0
