"""TokenValidator as a whole: the verified-token cache, inputs of any type, what it logs,
and property-based checks that only AuthError ever escapes validate()."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauth_shield import (
    AccessToken,
    AuthError,
    ConfigurationError,
    InsufficientScopeError,
    Reason,
    TokenValidator,
)
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.conftest import FrozenClock, ValidatorFactory, log_text, refused, secret_pieces

PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --- the verified-token cache ------------------------------------------------------------


async def test_a_repeated_token_skips_the_signature_check(
    validator: TokenValidator, issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.token()
    first = await validator.validate(token)
    calls = []
    monkeypatch.setattr(validator, "_finish", lambda *a: calls.append(a))  # would break if called
    assert await validator.validate(token) is first
    assert calls == []


async def test_every_hit_rechecks_expiry(
    validator: TokenValidator, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    token = issuer.token(exp=int(clock.time()) + 60)
    await validator.validate(token)
    clock.advance(60 + 29)
    await validator.validate(token)  # still inside the 30 s leeway
    clock.advance(1)
    await refused(validator, token, Reason.EXPIRED)


async def test_every_hit_checks_the_scopes_it_is_asked_for(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    token = issuer.token(scope="read write")
    await validator.validate(token, ["read"])
    assert (await validator.validate(token, "read write")).scopes == {"read", "write"}
    error = await refused(validator, token, Reason.INSUFFICIENT_SCOPE, scopes=["read", "admin"])
    assert isinstance(error, InsufficientScopeError) and error.scopes == ("admin", "read")


async def test_the_cache_is_bounded_and_keyed_by_digests_only(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    validator = make_validator(verified_cache_size=3)
    tokens = [issuer.token(sub=f"user-{i}") for i in range(5)]
    for token in tokens:
        await validator.validate(token)
    stored = validator._verified.items()
    assert len(stored) == 3
    assert [key for key, _ in stored] == [hashlib.sha256(t.encode()).digest() for t in tokens[2:]]
    dump = repr(stored)
    for token in tokens:
        assert all(piece not in dump for piece in secret_pieces(token))


async def test_a_zero_sized_cache_verifies_every_time(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    validator = make_validator(verified_cache_size=0)
    token = issuer.token()
    assert await validator.validate(token) is not await validator.validate(token)
    assert len(validator._verified) == 0


# --- the result ---------------------------------------------------------------------------


async def test_the_access_token(
    validator: TokenValidator, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    raw = issuer.token(scope="read write", exp=int(clock.time()) + 120)
    token = await validator.validate(raw)
    assert isinstance(token, AccessToken)
    assert (token.subject, token.client_id, token.scopes) == (
        "user-1",
        "client-1",
        {"read", "write"},
    )
    assert token.expires_at is not None and token.expires_at.timestamp() == int(clock.time()) + 120
    assert token.has_scopes(["read"]) and not token.has_scopes(["read", "admin"])
    with pytest.raises(TypeError):
        token.claims["sub"] = "admin"  # type: ignore[index]
    with pytest.raises(AttributeError):
        token.subject = "admin"  # type: ignore[misc]
    for text in (repr(token), str(token)):
        assert all(piece not in text for piece in secret_pieces(raw))
        assert token.fingerprint in text


# --- inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, 42, b"a.b.c", ["a", "b"], object(), "", "\ud800", "é"])
async def test_inputs_of_any_type(validator: TokenValidator, token: Any) -> None:
    error = await refused(validator, token)
    assert error.status_code == 401


async def test_an_oversized_token_is_refused_before_any_work(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    huge = issuer.token(pad="x" * 10_000)
    started = time.perf_counter()
    await refused(validator, huge, Reason.TOKEN_TOO_LARGE)
    await refused(validator, "a" * 50_000_000, Reason.TOKEN_TOO_LARGE)
    assert time.perf_counter() - started < 0.5
    assert validator._keys.keys is None  # nothing was even fetched


async def test_an_opaque_token_without_introspection(validator: TokenValidator) -> None:
    await refused(validator, "2YotnFZFEjr1zCsicMWpAA", Reason.UNSUPPORTED_TOKEN)


@pytest.mark.parametrize("scopes", [["read write"], ['re"ad'], ["ré"], [""], [42], ["a\\b"]])
async def test_illegal_required_scopes_are_a_programming_error(
    validator: TokenValidator, issuer: LocalIssuer, scopes: list[Any]
) -> None:
    with pytest.raises(ConfigurationError):
        await validator.validate(issuer.token(), scopes)


async def test_a_scope_string_is_split_not_iterated(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    await refused(
        validator, issuer.token(scope="r e a d"), Reason.INSUFFICIENT_SCOPE, scopes="read"
    )


# --- lifecycle and logs -------------------------------------------------------------------


async def test_entering_the_context_warms_the_key_set(
    issuer: LocalIssuer, clock: FrozenClock
) -> None:
    async with TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport(), clock=clock
    ) as validator:
        for _ in range(20):
            if validator._keys.keys is not None:
                break
            await asyncio.sleep(0)
        assert issuer.requests["/jwks"] == 1
    assert "issuer.test" in repr(validator)


async def test_refusals_are_logged_with_reason_and_fingerprint_only(
    validator: TokenValidator, issuer: LocalIssuer, all_logs: pytest.LogCaptureFixture
) -> None:
    token = issuer.token(aud="https://elsewhere.test")
    await refused(validator, token, Reason.AUDIENCE_MISMATCH, caplog=all_logs)
    line = [r for r in all_logs.records if r.name == "oauth_shield.validator"][-1]
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:8]
    assert line.levelno == logging.INFO
    assert line.getMessage() == f"token {fingerprint} refused: audience_mismatch"


# --- properties ---------------------------------------------------------------------------


@PROPERTY
@given(
    token=st.one_of(st.text(max_size=300), st.from_regex(r"[A-Za-z0-9_.-]{1,200}", fullmatch=True))
)
async def test_any_string_ends_in_auth_error(validator: TokenValidator, token: str) -> None:
    with pytest.raises(AuthError):
        await validator.validate(token)


@PROPERTY
@given(data=st.data())
async def test_a_mutated_valid_token_is_refused_unless_unchanged(
    validator: TokenValidator,
    issuer: LocalIssuer,
    signing_keys: dict[str, SigningKey],
    data: st.DataObject,
) -> None:
    alg = data.draw(st.sampled_from(["RS256", "ES256", "EdDSA"]))
    original = issuer.token(key=signing_keys[alg])
    position = data.draw(st.integers(0, len(original) - 1))
    edit = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
    char = data.draw(st.sampled_from("AQgw_-.=+/ \x00é" + original[position]))
    mutated = {
        "replace": original[:position] + char + original[position + 1 :],
        "insert": original[:position] + char + original[position:],
        "delete": original[:position] + original[position + 1 :],
        "truncate": original[:position],
    }[edit]
    try:
        await validator.validate(mutated)
    except AuthError:
        return
    assert mutated == original


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROPERTY
@given(
    claims=st.dictionaries(
        st.sampled_from(
            ["iss", "aud", "exp", "nbf", "iat", "sub", "client_id", "jti", "scope", "cnf", "x"]
        ),
        _json_values,
    ),
    header=st.dictionaries(st.text(max_size=6), _json_values, max_size=4),
)
async def test_arbitrary_signed_claims_and_headers_only_end_in_auth_error(
    validator: TokenValidator,
    issuer: LocalIssuer,
    signing_keys: dict[str, SigningKey],
    claims: dict[str, Any],
    header: dict[str, Any],
) -> None:
    key = signing_keys["ES256"]
    token = key.sign({**header, "alg": "ES256", "typ": "at+jwt", "kid": key.kid}, claims)
    try:
        accepted = await validator.validate(token)
    except AuthError:
        return
    # Acceptance is only possible if the claims really satisfy every rule.
    assert claims["iss"] == issuer.issuer and "cnf" not in claims
    assert accepted.subject == claims["sub"]


async def test_nothing_of_a_refused_token_reaches_the_logs(
    validator: TokenValidator, issuer: LocalIssuer, all_logs: pytest.LogCaptureFixture
) -> None:
    tokens = [
        issuer.token(aud="x"),
        issuer.token()[:-4] + "AAAA",
        issuer.token(alg="ES256", iss="y"),
    ]
    for token in tokens:
        await refused(validator, token, caplog=all_logs)
    text = log_text(all_logs)
    for token in tokens:
        assert all(piece not in text for piece in secret_pieces(token))


async def test_a_cached_token_is_verified_again_after_the_key_set_ttl(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validator = make_validator(jwks_ttl=120)
    token = issuer.token(exp=int(clock.time()) + 3600)
    await validator.validate(token)
    finished = []
    original = validator._finish
    monkeypatch.setattr(validator, "_finish", lambda *a: finished.append(1) or original(*a))
    clock.advance(119)
    await validator.validate(token)
    assert finished == []  # answered from the cache
    clock.advance(1)
    await validator.validate(token)
    assert finished == [1]  # checked against the (refreshed) key set again


async def test_claims_are_read_only_all_the_way_down(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    authorization_details = [{"type": "payment", "actions": ["read"]}]
    raw = issuer.token(
        aud=[issuer.audience, "https://other.test"], authorization_details=authorization_details
    )
    token = await validator.validate(raw)
    assert token.claims["aud"] == (issuer.audience, "https://other.test")
    with pytest.raises(TypeError):
        token.claims["authorization_details"][0]["actions"] += ("write",)  # type: ignore[index]
    with pytest.raises(AttributeError):
        token.claims["aud"].append("x")  # type: ignore[attr-defined]
    plain = token.to_dict()
    assert plain["authorization_details"] == authorization_details
    plain["aud"].append("mine")  # a copy: the shared token is untouched
    assert (await validator.validate(raw)).claims["aud"] == (issuer.audience, "https://other.test")
