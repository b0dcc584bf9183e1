"""SECURITY-CASES classes 5 (header semantics), 6 (JSON) and 7 (claims), through the validator.

Every hostile token here carries a valid signature by the issuer's real key: only the rule
under test stands between it and acceptance. (Exhaustive claim tables: tests/core.)
"""

from __future__ import annotations

import json
import time

import pytest

from oauth_shield import InsufficientScopeError, Reason, TokenValidator
from oauth_shield.testing import LocalIssuer, SigningKey, b64url
from tests.conftest import ValidatorFactory, refused

from .conftest import Hostile, header_for, raw_token


@pytest.fixture
def rsa(signing_keys: dict[str, SigningKey]) -> SigningKey:
    return signing_keys["RS256"]


# --- class 5: header semantics -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": []},
        {"crit": ["exp"]},
        {"crit": ["b64"], "b64": False},
        {"crit": "b64"},
        {"crit": None},
        {"b64": False},
        {"b64": True},
        {"zip": "DEF"},
        {"enc": "A128GCM"},
        {"cty": "JWT"},
        {"cty": "application/json"},
    ],
    ids=lambda extra: "-".join(f"{k}={v}" for k, v in extra.items()),
)
async def test_header_parameters_we_cannot_honour(
    hostile: Hostile, issuer: LocalIssuer, rsa: SigningKey, extra: dict[str, object]
) -> None:
    header = {"alg": "RS256", "typ": "at+jwt", "kid": rsa.kid, **extra}  # keeps "crit": null
    await hostile(raw_token(header, issuer.claims(), rsa), Reason.UNSUPPORTED_HEADER)


async def test_nested_jwt(hostile: Hostile, issuer: LocalIssuer, rsa: SigningKey) -> None:
    inner = issuer.token()
    await hostile(raw_token(header_for(rsa, cty="JWT"), json.dumps(inner).encode(), rsa))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RSA-OAEP-256", "enc": "A256GCM"},
        {"alg": "RSA-OAEP", "enc": "A128CBC-HS256", "zip": "DEF"},
        {"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "p2s": "c2FsdA", "p2c": 2_000_000_000},
        {"alg": "dir", "enc": "A256GCM"},
    ],
    ids=["oaep", "compressed", "pbes2-huge-iterations", "dir"],
)
async def test_jwe_is_refused_without_decryption(
    hostile: Hostile, header: dict[str, object]
) -> None:
    parts = [json.dumps(header).encode(), b"k" * 256, b"iv" * 6, b"c" * 1000, b"t" * 16]
    token = ".".join(b64url(part) for part in parts)
    started = time.perf_counter()
    await hostile(token, Reason.UNSUPPORTED_TOKEN)
    assert time.perf_counter() - started < 1.0  # nothing was derived or decrypted


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "dpop+jwt", "id_token", "at+jwt ", "", None, 1, ["at+jwt"]]
)
async def test_wrong_typ(
    hostile: Hostile, issuer: LocalIssuer, rsa: SigningKey, typ: object
) -> None:
    header = {"alg": "RS256", "kid": rsa.kid, "typ": typ}
    await hostile(raw_token(header, issuer.claims(), rsa), Reason.WRONG_TYPE)


async def test_missing_typ(hostile: Hostile, issuer: LocalIssuer) -> None:
    await hostile(issuer.token(header={"typ": None}), Reason.WRONG_TYPE)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
async def test_typ_is_compared_case_insensitively(
    validator: TokenValidator, issuer: LocalIssuer, typ: str
) -> None:
    assert (await validator.validate(issuer.token(header={"typ": typ}))).subject == "user-1"


async def test_id_token_offered_as_access_token(
    hostile: Hostile, issuer: LocalIssuer, make_validator: ValidatorFactory
) -> None:
    id_token = issuer.token(
        header={"typ": "JWT"},
        aud="client-1",
        nonce="n-0S6",
        auth_time=1,
        client_id=None,
        scope=None,
    )
    await hostile(id_token, Reason.WRONG_TYPE)
    relaxed = make_validator(profile="jwt")
    await refused(relaxed, id_token, Reason.AUDIENCE_MISMATCH)


# --- class 6: JSON -------------------------------------------------------------------------


def _claims_text(issuer: LocalIssuer, **overrides: object) -> str:
    return json.dumps(issuer.claims(**overrides))


@pytest.mark.parametrize(
    "payload",
    [
        lambda c: c[:-1] + ',"sub":"admin"}',
        lambda c: c[:-1] + ',"\\u0073ub":"admin"}',
        lambda c: c.encode("utf-16"),
        lambda c: c.encode("utf-16-le"),
        lambda c: c.encode("utf-32"),
        lambda c: b"\xef\xbb\xbf" + c.encode(),
        lambda c: c.replace('"user-1"', '"user-\xff"').encode("latin-1"),
        lambda c: c.replace('"user-1"', '"user-\xc0\xaf"').encode("latin-1"),
        lambda c: c.replace('"user-1"', '"\xed\xa0\x80"').encode("latin-1"),
        lambda c: c.replace('"user-1"', '"\\ud800"'),
        lambda c: c.replace('"user-1"', '"\\udfff-user"'),
        lambda c: c[:-1] + ',"x":' + "[" * 64 + "]" * 64 + "}",
        lambda c: c[:-1] + ',"x":' + '{"a":' * 64 + "1" + "}" * 64 + "}",
        lambda c: c + "x",
        lambda c: c + "{}",
        lambda c: c.replace('"user-1"', '"user\x01"'),
    ],
    ids=[
        "duplicate-sub",
        "escaped-duplicate",
        "utf-16",
        "utf-16-le",
        "utf-32",
        "bom",
        "invalid-utf8",
        "overlong",
        "cesu-surrogate",
        "lone-high-surrogate",
        "lone-low-surrogate",
        "deep-arrays",
        "deep-objects",
        "trailing-data",
        "second-object",
        "raw-control",
    ],
)
async def test_hostile_json_in_the_payload(
    hostile: Hostile, issuer: LocalIssuer, rsa: SigningKey, payload: object
) -> None:
    raw = payload(_claims_text(issuer))  # type: ignore[operator]
    await hostile(
        raw_token(header_for(rsa), raw if isinstance(raw, bytes) else raw.encode(), rsa),
        Reason.MALFORMED_TOKEN,
    )


@pytest.mark.parametrize(
    "header",
    [
        b'{"alg":"RS256","alg":"none","typ":"at+jwt","kid":"rs256-key"}',
        b'{"alg":"none","\\u0061lg":"RS256","typ":"at+jwt","kid":"rs256-key"}',
        b'{"alg":"RS256","typ":"at+jwt","kid":"rs256-key","kid":"other"}',
        '{"alg":"RS256","typ":"at+jwt","kid":"rs256-key"}'.encode("utf-16"),
    ],
    ids=["duplicate-alg", "escaped-duplicate-alg", "duplicate-kid", "utf-16"],
)
async def test_hostile_json_in_the_header(
    hostile: Hostile, issuer: LocalIssuer, rsa: SigningKey, header: bytes
) -> None:
    await hostile(raw_token(header, issuer.claims(), rsa), Reason.MALFORMED_TOKEN)


@pytest.mark.parametrize(
    ("exp", "reason"),
    [
        ("NaN", Reason.MALFORMED_TOKEN),
        ("Infinity", Reason.MALFORMED_TOKEN),
        ("-Infinity", Reason.MALFORMED_TOKEN),
        ("1e400", Reason.MALFORMED_TOKEN),
        ("9" * 5000, Reason.MALFORMED_TOKEN),
        ("1" + "0" * 50, Reason.INVALID_CLAIM),
        ("1.8e9x", Reason.MALFORMED_TOKEN),
        ("-1", Reason.INVALID_CLAIM),
        ('"1900000000"', Reason.INVALID_CLAIM),
        ("true", Reason.INVALID_CLAIM),
        ("null", Reason.INVALID_CLAIM),
    ],
)
async def test_hostile_numbers(
    hostile: Hostile, issuer: LocalIssuer, rsa: SigningKey, exp: str, reason: Reason
) -> None:
    claims = _claims_text(issuer, exp=424242)
    await hostile(raw_token(header_for(rsa), claims.replace("424242", exp).encode(), rsa), reason)


@pytest.mark.parametrize(
    "iss",
    [
        "https://issuer.t\u0435st",
        "https://issuer.test\u0000",
        "https://issuer.test\u200b",
        "https://ıssuer.test",
    ],
    ids=["cyrillic-e", "nul", "zero-width", "dotless-i"],
)
async def test_lookalike_issuers(hostile: Hostile, issuer: LocalIssuer, iss: str) -> None:
    await hostile(issuer.token(iss=iss), Reason.ISSUER_MISMATCH)


# --- class 7: claims -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://issuer.tes"}, Reason.ISSUER_MISMATCH),
        ({"iss": "https://issuer.test/"}, Reason.ISSUER_MISMATCH),
        ({"iss": "https://ISSUER.test"}, Reason.ISSUER_MISMATCH),
        ({"iss": "https://issuer.test.attacker"}, Reason.ISSUER_MISMATCH),
        ({"iss": ["https://issuer.test"]}, Reason.ISSUER_MISMATCH),
        ({"aud": "https://api.tes"}, Reason.AUDIENCE_MISMATCH),
        ({"aud": "https://api.test/"}, Reason.AUDIENCE_MISMATCH),
        ({"aud": "HTTPS://api.test"}, Reason.AUDIENCE_MISMATCH),
        ({"aud": ["https://other.test"]}, Reason.AUDIENCE_MISMATCH),
        ({"aud": []}, Reason.INVALID_CLAIM),
        ({"aud": [["https://api.test"]]}, Reason.INVALID_CLAIM),
        ({"aud": {"https://api.test": True}}, Reason.INVALID_CLAIM),
        ({"aud": 1}, Reason.INVALID_CLAIM),
        ({"iss": None}, Reason.MISSING_CLAIM),
        ({"aud": None}, Reason.MISSING_CLAIM),
        ({"exp": None}, Reason.MISSING_CLAIM),
        ({"iat": None}, Reason.MISSING_CLAIM),
        ({"sub": None}, Reason.MISSING_CLAIM),
        ({"client_id": None}, Reason.MISSING_CLAIM),
        ({"jti": None}, Reason.MISSING_CLAIM),
        ({"sub": 42}, Reason.INVALID_CLAIM),
        ({"client_id": ["c"]}, Reason.INVALID_CLAIM),
        ({"jti": ""}, Reason.INVALID_CLAIM),
        ({"scope": ["read"]}, Reason.INVALID_CLAIM),
        ({"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}, Reason.KEY_BOUND),
        ({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}, Reason.KEY_BOUND),
    ],
)
async def test_claims_that_do_not_hold(
    hostile: Hostile, issuer: LocalIssuer, claims: dict[str, object], reason: Reason
) -> None:
    await hostile(issuer.token(**claims), reason)


@pytest.mark.parametrize(
    ("offset", "claim", "reason"),
    [
        (-30, "exp", Reason.EXPIRED),  # exactly at exp + leeway
        (-3600, "exp", Reason.EXPIRED),
        (31, "nbf", Reason.NOT_YET_VALID),
        (3600, "nbf", Reason.NOT_YET_VALID),
        (31, "iat", Reason.ISSUED_IN_FUTURE),
    ],
)
async def test_time_claims_at_and_beyond_the_leeway(
    hostile: Hostile, issuer: LocalIssuer, clock: object, offset: int, claim: str, reason: Reason
) -> None:
    now = int(clock.time())  # type: ignore[attr-defined]
    await hostile(issuer.token(**{claim: now + offset}), reason)


@pytest.mark.parametrize(("offset", "claim"), [(-29, "exp"), (30, "nbf"), (30, "iat")])
async def test_time_claims_inside_the_leeway(
    validator: TokenValidator, issuer: LocalIssuer, clock: object, offset: int, claim: str
) -> None:
    now = int(clock.time())  # type: ignore[attr-defined]
    assert await validator.validate(issuer.token(**{claim: now + offset}))


@pytest.mark.parametrize(
    "scope",
    [
        "READ",
        "reads",
        "xread",
        "read-write",
        "read,write",
        "read\twrite",
        "read\u200b",
        " Read ",
        "",
        "write",
    ],
)
async def test_scopes_that_only_look_like_the_required_one(
    validator: TokenValidator, issuer: LocalIssuer, scope: str, all_logs: pytest.LogCaptureFixture
) -> None:
    error = await refused(
        validator,
        issuer.token(scope=scope),
        Reason.INSUFFICIENT_SCOPE,
        scopes=["read"],
        caplog=all_logs,
    )
    assert isinstance(error, InsufficientScopeError)
    assert error.status_code == 403 and error.scopes == ("read",)
    assert 'scope="read"' in error.www_authenticate()
