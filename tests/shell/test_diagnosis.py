"""The first refusal that usually means a wrong setting explains itself (oauth_shield._diagnosis).

Before, an audience typo answered every caller 401 and left nothing in the log at the default
level. Now the first refusal of each such reason leaves one WARNING on ``oauth_shield.config``
naming the configured value, what the token carried (only ``aud``, ``iss``, ``typ``, ``alg``:
printable, bounded) and the fix; later ones cost a set lookup.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest

from oauth_shield import InvalidTokenError, Reason, SyncTokenValidator
from oauth_shield import _validator as validator_module
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.conftest import FrozenClock, ValidatorFactory, log_text, refused, secret_pieces


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "oauth_shield.config" and r.levelno == logging.WARNING
    ]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)  # the default level: INFO lines are not seen
    return caplog


def canaries() -> dict[str, str]:
    """Claims that must never reach a log line."""
    return {"sub": "sub-" + secrets.token_hex(8), "jti": "jti-" + secrets.token_hex(8)}


async def test_an_audience_typo_is_one_warning_naming_both_values(
    make_validator: ValidatorFactory, issuer: LocalIssuer, logs: pytest.LogCaptureFixture
) -> None:
    validator = make_validator(audience="https://api.test/")  # the token says https://api.test
    tokens = [issuer.token(**canaries()) for _ in range(3)]
    for token in tokens:
        await refused(validator, token, Reason.AUDIENCE_MISMATCH, caplog=logs)
    [warning] = warnings_of(logs)
    assert warning.startswith("token ")
    assert "its aud 'https://api.test' names none of audience ['https://api.test/']" in warning
    assert "add it to audience (OAUTH_SHIELD_AUDIENCE)" in warning
    said = log_text(logs)
    for token in tokens:
        for piece in secret_pieces(token):
            assert piece not in said
        for value in issuer.minted[token].values():
            if isinstance(value, str) and value.startswith(("sub-", "jti-")):
                assert value not in said


async def test_each_validator_warns_once_per_reason(
    make_validator: ValidatorFactory, issuer: LocalIssuer, logs: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        validator = make_validator(audience="https://other.test")
        for _ in range(2):
            await refused(validator, issuer.token(), Reason.AUDIENCE_MISMATCH)
        await refused(validator, issuer.token(header={"typ": "JWT"}), Reason.WRONG_TYPE)
    assert len(warnings_of(logs)) == 4  # two reasons, two validators


async def test_an_issuer_with_a_trailing_slash(
    make_validator: ValidatorFactory, issuer: LocalIssuer, logs: pytest.LogCaptureFixture
) -> None:
    validator = make_validator(issuer="https://issuer.test/", jwks_uri="https://issuer.test/jwks")
    await refused(validator, issuer.token(), Reason.ISSUER_MISMATCH)
    [warning] = warnings_of(logs)
    assert "its iss 'https://issuer.test' is not issuer 'https://issuer.test/'" in warning
    assert "remove the trailing slash from issuer: set it to 'https://issuer.test'" in warning


@pytest.mark.parametrize(
    ("typ", "profile", "expected"),
    [
        ("JWT", "rfc9068", "its typ is 'JWT', and profile 'rfc9068' requires at+jwt"),
        (None, "rfc9068", "its typ is (none), and profile 'rfc9068' requires at+jwt"),
        ("dpop+jwt", "jwt", "its typ 'dpop+jwt' is neither JWT nor at+jwt"),
    ],
)
async def test_a_typ_this_profile_refuses(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    logs: pytest.LogCaptureFixture,
    typ: str | None,
    profile: str,
    expected: str,
) -> None:
    validator = make_validator(profile=profile)
    await refused(validator, issuer.token(header={"typ": typ}), Reason.WRONG_TYPE)
    [warning] = [w for w in warnings_of(logs) if "refused" in w]
    assert expected in warning
    if profile == "rfc9068":
        assert "set profile='jwt' (OAUTH_SHIELD_PROFILE=jwt)" in warning


async def test_an_algorithm_outside_the_allowlist(
    make_validator: ValidatorFactory, issuer: LocalIssuer, logs: pytest.LogCaptureFixture
) -> None:
    validator = make_validator(algorithms=["ES256"])
    await refused(validator, issuer.token(alg="RS256"), Reason.UNSUPPORTED_ALGORITHM)
    [warning] = warnings_of(logs)
    assert "signed with alg 'RS256', which algorithms ['ES256'] does not include" in warning
    assert "add it to algorithms (OAUTH_SHIELD_ALGORITHMS)" in warning


async def test_no_key_in_the_set_for_the_tokens_algorithm(
    make_validator: ValidatorFactory, issuer: LocalIssuer, logs: pytest.LogCaptureFixture
) -> None:
    """The issuer signs with ES256 and it is allowed, but its key set offers no key for it
    (here it declares ES384): the classic 'every token refused, nothing in the log'."""
    issuer.published = [
        {**key.jwk, "alg": "ES384"} if key.alg == "ES256" else key.jwk for key in issuer.keys
    ]
    validator = make_validator()
    await refused(validator, issuer.token(alg="ES256"), Reason.UNKNOWN_KID)
    [warning] = warnings_of(logs)
    assert "no key in the issuer's key set can verify alg 'ES256'" in warning
    assert "usable keys fit ['EdDSA', 'RS256']; keys skipped: 1" in warning


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "none"}, Reason.UNSUPPORTED_ALGORITHM),
        ({"alg": "HS256"}, Reason.UNSUPPORTED_ALGORITHM),
        ({"alg": ["RS256"]}, Reason.UNSUPPORTED_ALGORITHM),
        ({"kid": "random-kid"}, Reason.UNKNOWN_KID),
    ],
)
async def test_forgeries_give_no_advice(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    logs: pytest.LogCaptureFixture,
    header: dict[str, Any],
    reason: Reason,
) -> None:
    """A forged alg or a random kid is not a setting to change: no warning, and never advice
    to enable none or HS256."""
    validator = make_validator()
    await validator.validate(issuer.token())  # keys installed
    await refused(validator, issuer.token(header=header), reason)
    assert warnings_of(logs) == []


async def test_hostile_refusals_stop_costing_anything_after_a_few(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of forged algs is examined MAX_DIAGNOSES times, then only costs a set lookup;
    a real misconfiguration of another reason is still explained."""
    examined = 0
    real = validator_module.refusal_warning

    def counting(*args: Any) -> str | None:
        nonlocal examined
        examined += 1
        return real(*args)

    monkeypatch.setattr(validator_module, "refusal_warning", counting)
    validator = make_validator(audience="https://other.test")
    forged = issuer.token(header={"alg": "none"})
    for _ in range(10 * validator_module.MAX_DIAGNOSES):
        await refused(validator, forged, Reason.UNSUPPORTED_ALGORITHM)
    assert examined == validator_module.MAX_DIAGNOSES
    await refused(validator, issuer.token(), Reason.AUDIENCE_MISMATCH)
    await refused(validator, issuer.token(), Reason.AUDIENCE_MISMATCH)
    assert examined == validator_module.MAX_DIAGNOSES + 1
    assert len(warnings_of(logs)) == 1


async def test_what_a_token_carries_is_printable_and_bounded(
    make_validator: ValidatorFactory,
    logs: pytest.LogCaptureFixture,
    signing_keys: dict[str, SigningKey],
) -> None:
    """``aud`` comes from the token: control characters and length are its author's choice."""
    hostile = LocalIssuer(keys=[signing_keys["ES256"]])
    validator = make_validator(transport=hostile.transport())
    aud = ["https://x.test/\r\nCRITICAL forged\x1b[2J" + "y" * 5000, *(f"a{i}" for i in range(9))]
    await refused(validator, hostile.token(aud=aud), Reason.AUDIENCE_MISMATCH)
    [warning] = warnings_of(logs)
    assert warning.isprintable() and "\x1b" not in warning
    assert len(warning) < 1200
    assert "'https://x.test/??CRITICAL forged?[2Jyyy" in warning
    assert "and 6 more]" in warning


async def test_an_introspected_token_is_not_decoded(
    make_validator: ValidatorFactory, issuer: LocalIssuer, logs: pytest.LogCaptureFixture
) -> None:
    validator = make_validator(client_id="rs", client_secret="s" * 16)
    opaque = issuer.opaque_token(aud="https://elsewhere.test")
    await refused(validator, opaque, Reason.AUDIENCE_MISMATCH, caplog=logs)
    [warning] = warnings_of(logs)
    assert "the introspection answer's aud names none of audience ['https://api.test']" in warning


def test_the_sync_facade_warns_too(
    issuer: LocalIssuer, logs: pytest.LogCaptureFixture, clock: FrozenClock
) -> None:
    with SyncTokenValidator(
        issuer=issuer.issuer,
        audience="https://other.test",
        transport=issuer.transport(),
        clock=clock,
    ) as validator:
        for _ in range(3):
            with pytest.raises(InvalidTokenError) as raised:
                validator.validate(issuer.token())
            assert raised.value.reason is Reason.AUDIENCE_MISMATCH
    assert len(warnings_of(logs)) == 1


def test_the_configuration_reasons_are_few() -> None:
    """A reason joins the set only if a setting can cause it; each costs one lookup."""
    from oauth_shield._diagnosis import CONFIGURATION_REASONS

    assert Reason.AUDIENCE_MISMATCH in CONFIGURATION_REASONS
    assert not {Reason.MALFORMED_TOKEN, Reason.BAD_SIGNATURE, Reason.EXPIRED} & (
        CONFIGURATION_REASONS
    )
