"""TokenValidator with DPoP (RFC 9449): the policy, the order of the checks, the caches, the
replay store (in memory and in a real Redis), nonces, and the sync facade."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from oauth_shield import (
    AccessToken,
    ConfigurationError,
    DPoPRequest,
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidTokenError,
    MissingTokenError,
    Reason,
    SyncTokenValidator,
    TemporarilyUnavailableError,
    TokenValidator,
    UseDPoPNonceError,
)
from oauth_shield.testing import DPoPKey, LocalIssuer
from tests.conftest import SHARED_CACHE_SECRET, SHARED_CLIENT, FrozenClock, ValidatorFactory
from tests.redis_server import RedisServer

URL = "https://api.test/items"
CLIENT = ("resource-server", "rs-secret")


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey("ES256")


@pytest.fixture
def dpop_key(key: DPoPKey, clock: FrozenClock) -> DPoPKey:
    key.clock = clock.time  # proofs made at the test's frozen time
    return key


def request(
    key: DPoPKey, token: str, method: str = "GET", url: str = URL, **kw: Any
) -> DPoPRequest:
    return DPoPRequest([key.proof(method, url, access_token=token, **kw)], method, url)


@pytest.fixture
def allowed(make_validator: ValidatorFactory, issuer: LocalIssuer) -> TokenValidator:
    issuer.clients[CLIENT[0]] = CLIENT[1]
    return make_validator(dpop="allowed", client_id=CLIENT[0], client_secret=CLIENT[1])


async def test_a_bound_jwt_with_its_proof(
    allowed: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    token = issuer.dpop_token(dpop_key)
    found = await allowed.validate(token, "read", dpop=request(dpop_key, token))
    assert isinstance(found, AccessToken)
    assert found.dpop_bound and found.jkt == dpop_key.jkt
    assert dpop_key.jkt in repr(found)  # a thumbprint is public: it names the key, not the token
    # The steady state: the token is known, a new proof is all that is checked.
    again = await allowed.validate(token, "read", dpop=request(dpop_key, token))
    assert again is found


async def test_a_bound_opaque_token_through_introspection(
    allowed: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    token = issuer.dpop_token(dpop_key, opaque=True)
    issuer.opaque[token]["token_type"] = "DPoP"  # RFC 9449 §6.2, as oidc-provider answers
    found = await allowed.validate(token, dpop=request(dpop_key, token))
    assert found.jkt == dpop_key.jkt
    assert found.claims["cnf"]["jkt"] == dpop_key.jkt  # kept, so a cached answer is checked again
    await allowed.validate(token, dpop=request(dpop_key, token))
    assert issuer.requests["/introspect"] == 1


async def test_a_bound_token_presented_as_bearer_is_refused(
    allowed: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    for token in (issuer.dpop_token(dpop_key), issuer.dpop_token(dpop_key, opaque=True)):
        with pytest.raises(InvalidTokenError) as caught:
            await allowed.validate(token)
        assert caught.value.reason is Reason.KEY_BOUND
        await allowed.validate(token, dpop=request(dpop_key, token))  # cached, then bearer again
        with pytest.raises(InvalidTokenError):
            await allowed.validate(token)


async def test_allowed_accepts_bearer_tokens_too(
    allowed: TokenValidator, issuer: LocalIssuer
) -> None:
    token = await allowed.validate(issuer.token())
    assert not token.dpop_bound and token.jkt is None


async def test_a_proof_with_a_bearer_token_is_refused(
    allowed: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    token = issuer.token()
    with pytest.raises(InvalidTokenError) as caught:
        await allowed.validate(token, dpop=request(dpop_key, token))
    assert caught.value.reason is Reason.DPOP_NOT_BOUND
    assert caught.value.scheme == "DPoP"


async def test_a_thief_with_its_own_key(
    allowed: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    token = issuer.dpop_token(dpop_key)
    thief = DPoPKey("ES256", clock=dpop_key.clock)
    with pytest.raises(InvalidTokenError) as caught:
        await allowed.validate(token, dpop=request(thief, token))
    assert caught.value.reason is Reason.DPOP_KEY_MISMATCH


async def test_a_replayed_proof_is_refused_and_binding_comes_before_replay(
    allowed: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    token = issuer.dpop_token(dpop_key, scope="read")
    presented = request(dpop_key, token)
    await allowed.validate(token, dpop=presented)
    with pytest.raises(InvalidDPoPProofError) as caught:
        await allowed.validate(token, dpop=presented)
    assert caught.value.reason is Reason.DPOP_REPLAYED
    # A refused request (403) does not use up its proof: only accepted ones fill the store.
    other = request(dpop_key, token)
    with pytest.raises(InsufficientScopeError):
        await allowed.validate(token, "admin", dpop=other)
    await allowed.validate(token, "read", dpop=other)


async def test_junk_proofs_cost_no_introspection(
    allowed: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    token = issuer.dpop_token(dpop_key, opaque=True)
    for presented in (
        DPoPRequest(["not.a.proof"], "GET", URL),
        DPoPRequest([], "GET", URL),
        DPoPRequest(["a", "b"], "GET", URL),
        DPoPRequest([dpop_key.proof("GET", URL + "/", access_token=token)], "GET", URL),
        DPoPRequest([dpop_key.proof("GET", URL, access_token="another")], "GET", URL),
    ):
        with pytest.raises(InvalidDPoPProofError):
            await allowed.validate(token, dpop=presented)
    assert issuer.requests["/introspect"] == 0


async def test_required_refuses_bearer_tokens(
    make_validator: ValidatorFactory, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    validator = make_validator(dpop="required")
    with pytest.raises(InvalidDPoPProofError) as caught:
        await validator.validate(issuer.token())
    assert caught.value.reason is Reason.DPOP_MISSING
    token = issuer.dpop_token(dpop_key)
    assert (await validator.validate(token, dpop=request(dpop_key, token))).dpop_bound


async def test_disabled_is_todays_behaviour(
    validator: TokenValidator, issuer: LocalIssuer, dpop_key: DPoPKey
) -> None:
    token = issuer.dpop_token(dpop_key)
    with pytest.raises(InvalidTokenError) as caught:
        await validator.validate(token)
    assert caught.value.reason is Reason.KEY_BOUND
    with pytest.raises(MissingTokenError) as other:  # the DPoP scheme is one it does not know
        await validator.validate(token, dpop=request(dpop_key, token))
    assert other.value.reason is Reason.OTHER_SCHEME and other.value.scheme == "Bearer"
    assert not (await validator.validate(issuer.token())).dpop_bound


async def test_nonces_end_to_end(
    make_validator: ValidatorFactory, issuer: LocalIssuer, dpop_key: DPoPKey, clock: FrozenClock
) -> None:
    secret = "n" * 32
    validator = make_validator(dpop="required", dpop_nonce=True, dpop_nonce_secret=secret)
    token = issuer.dpop_token(dpop_key)
    with pytest.raises(UseDPoPNonceError) as caught:
        await validator.validate(token, dpop=request(dpop_key, token))
    nonce = caught.value.headers("api")["DPoP-Nonce"]
    assert nonce == validator.dpop_nonce()
    await validator.validate(token, dpop=request(dpop_key, token, nonce=nonce))
    # Another process sharing the secret accepts it; a nonce from one without it is refused.
    twin = make_validator(dpop="required", dpop_nonce=True, dpop_nonce_secret=secret)
    await twin.validate(token, dpop=request(dpop_key, token, nonce=nonce))
    stranger = make_validator(dpop="required", dpop_nonce=True)
    with pytest.raises(UseDPoPNonceError):
        await stranger.validate(token, dpop=request(dpop_key, token, nonce=nonce))
    clock.advance(1000)  # three periods on: the nonce is stale
    token = issuer.dpop_token(dpop_key)
    with pytest.raises(UseDPoPNonceError):
        await validator.validate(token, dpop=request(dpop_key, token, nonce=nonce))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"dpop": "sometimes"}, "dpop"),
        ({"dpop": "allowed", "dpop_algorithms": ["HS256"]}, "dpop_algorithms"),
        ({"dpop": "allowed", "dpop_iat_window": 3600}, "dpop_iat_window"),
        ({"dpop": "allowed", "dpop_public_url": "api.test"}, "dpop_public_url"),
        ({"dpop": "allowed", "dpop_forwarded": "yes"}, "dpop_forwarded"),
        ({"dpop": "allowed", "dpop_replay_outage": "open"}, "dpop_replay_outage"),
        ({"dpop": "allowed", "dpop_replay_cache_size": 0}, "dpop_replay_cache_size"),
        ({"dpop": "allowed", "dpop_nonce": True, "dpop_nonce_secret": "short"}, None),
        ({"dpop": "allowed", "dpop_nonce_secret": "x" * 32}, "dpop_nonce_secret"),
        ({"dpop_nonce": True}, "dpop"),
        ({"dpop_public_url": "https://api.test"}, "dpop"),
    ],
)
def test_settings_are_checked_eagerly(
    options: dict[str, Any], field: str | None, issuer: LocalIssuer
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TokenValidator(issuer=issuer.issuer, audience=issuer.audience, **options)
    assert caught.value.field == field or field is None
    assert field is None or field in str(caught.value)


def test_settings_from_keys(issuer: LocalIssuer) -> None:
    validator = TokenValidator.from_env(
        {
            "OAUTH_SHIELD_ISSUER": issuer.issuer,
            "OAUTH_SHIELD_AUDIENCE": issuer.audience,
            "OAUTH_SHIELD_DPOP": "required",
            "OAUTH_SHIELD_DPOP_ALGORITHMS": "ES256, EdDSA",
            "OAUTH_SHIELD_DPOP_IAT_WINDOW": "30",
            "OAUTH_SHIELD_DPOP_NONCE": "true",
            "OAUTH_SHIELD_DPOP_NONCE_SECRET": "s" * 32,
        }
    )
    assert validator.dpop_mode == "required"
    assert validator.dpop_settings.algorithms == {"ES256", "EdDSA"}
    assert validator.dpop_settings.iat_window == 30
    assert validator.dpop_nonce() is not None
    with pytest.raises(ConfigurationError, match="OAUTH_SHIELD_DPOP_REPLAY_OUTAGE"):
        TokenValidator.from_env(
            {
                "OAUTH_SHIELD_ISSUER": issuer.issuer,
                "OAUTH_SHIELD_AUDIENCE": issuer.audience,
                "OAUTH_SHIELD_DPOP": "allowed",
                "OAUTH_SHIELD_DPOP_REPLAY_OUTAGE": "open",
            }
        )


# --- the sync facade ----------------------------------------------------------------------


def test_the_sync_facade_checks_in_the_callers_thread(
    issuer: LocalIssuer, clock: FrozenClock, dpop_key: DPoPKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SyncTokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        transport=issuer.transport(),
        clock=clock,
        dpop="allowed",
    ) as validator:
        token = issuer.dpop_token(dpop_key)
        assert validator.validate(token, dpop=request(dpop_key, token)).dpop_bound  # one hop
        hops: list[object] = []
        monkeypatch.setattr(validator, "_on_loop", lambda *a: hops.append(a))
        presented = request(dpop_key, token)
        assert validator.validate(token, dpop=presented).jkt == dpop_key.jkt
        with pytest.raises(InvalidDPoPProofError) as caught:
            validator.validate(token, dpop=presented)
        assert caught.value.reason is Reason.DPOP_REPLAYED
        with pytest.raises(InvalidTokenError):
            validator.validate(token)
        assert hops == []  # the warm path, replay store included, made no hop


# --- the replay store in a real Redis -----------------------------------------------------


def shared_options(issuer: LocalIssuer, redis: RedisServer, **extra: Any) -> dict[str, Any]:
    issuer.clients[SHARED_CLIENT[0]] = SHARED_CLIENT[1]
    return {
        "redis_url": redis.url,
        "cache_secret": SHARED_CACHE_SECRET,
        "dpop": "allowed",
        **extra,
    }


async def test_a_replay_to_another_process_is_refused(
    make_validator: ValidatorFactory, issuer: LocalIssuer, redis: RedisServer, dpop_key: DPoPKey
) -> None:
    first = make_validator(**shared_options(issuer, redis))
    second = make_validator(**shared_options(issuer, redis))
    token = issuer.dpop_token(dpop_key)
    presented = request(dpop_key, token)
    await first.validate(token, dpop=presented)
    with pytest.raises(InvalidDPoPProofError) as caught:
        await second.validate(token, dpop=presented)
    assert caught.value.reason is Reason.DPOP_REPLAYED
    keys = redis.command("KEYS", "*:dpop:*").decode("latin-1")
    assert token not in keys and presented.proofs[0] not in keys  # digests only
    # Another API sharing the Redis has its own replay space.
    other_api = make_validator(**shared_options(issuer, redis, audience=["https://other.test"]))
    other = issuer.dpop_token(dpop_key, aud="https://other.test")
    await other_api.validate(other, dpop=request(dpop_key, other))


@pytest.mark.parametrize("outage", ["fail_closed", "memory"])
async def test_redis_down(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    redis: RedisServer,
    dpop_key: DPoPKey,
    outage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    validator = make_validator(**shared_options(issuer, redis, dpop_replay_outage=outage))
    token = issuer.dpop_token(dpop_key)
    await validator.validate(token, dpop=request(dpop_key, token))  # the key set is known
    redis.stop()
    try:
        caplog.set_level(logging.WARNING, logger="oauth_shield.dpop")
        for _ in range(3):
            presented = request(dpop_key, token)
            if outage == "fail_closed":
                with pytest.raises(TemporarilyUnavailableError) as caught:
                    await validator.validate(token, dpop=presented)
                assert caught.value.reason is Reason.REPLAY_STORE_UNAVAILABLE
            else:
                await validator.validate(token, dpop=presented)
                with pytest.raises(InvalidDPoPProofError):  # still refused in this process
                    await validator.validate(token, dpop=presented)
        said = [r.getMessage() for r in caplog.records if r.name == "oauth_shield.dpop"]
        assert len(said) == 1 and outage in said[0]  # logged once per outage
    finally:
        redis.start()


def test_the_sync_facade_with_the_replay_store_in_redis(
    issuer: LocalIssuer, clock: FrozenClock, redis: RedisServer, dpop_key: DPoPKey
) -> None:
    """Two sync validators (two Flask processes) share the replay store: one hop each."""
    made = [
        SyncTokenValidator(
            issuer=issuer.issuer,
            audience=issuer.audience,
            transport=issuer.transport(),
            clock=clock,
            **shared_options(issuer, redis),
        )
        for _ in range(2)
    ]
    try:
        token = issuer.dpop_token(dpop_key)
        presented = request(dpop_key, token)
        assert made[0].validate(token, dpop=presented).dpop_bound
        with pytest.raises(InvalidDPoPProofError) as caught:
            made[1].validate(token, dpop=presented)
        assert caught.value.reason is Reason.DPOP_REPLAYED
        assert caught.value.scheme == "DPoP"
    finally:
        for validator in made:
            validator.close()


@pytest.mark.parametrize("proofs", [None, [None], [42], [b"bytes"], ["ok", None], 42, (None,)])
async def test_proofs_of_the_wrong_type_are_refused_not_raised(
    allowed: TokenValidator,
    issuer: LocalIssuer,
    clock: FrozenClock,
    dpop_key: DPoPKey,
    proofs: Any,
) -> None:
    """An adapter that passes ``headers.get("DPoP")`` (``None``) or raw header bytes gets a
    refusal, as for any other request it could not make sense of."""
    token = issuer.dpop_token(dpop_key)
    with pytest.raises((InvalidDPoPProofError, MissingTokenError)):
        await allowed.validate(token, dpop=DPoPRequest(proofs, "GET", URL))
    facade = SyncTokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, dpop="allowed",
        transport=issuer.transport(), clock=clock,
    )  # fmt: skip
    with facade, pytest.raises((InvalidDPoPProofError, MissingTokenError)):
        facade.validate(token, dpop=DPoPRequest(proofs, "GET", URL))
