"""Claim rules and scopes (oauth_shield._claims), for both profiles, at a fixed ``now``."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import pytest

from oauth_shield import _claims
from oauth_shield._claims import (
    MAX_MEMO_SCOPE_LENGTH,
    MAX_SCOPE_MEMO,
    MAX_TIMESTAMP,
    ScopeMemo,
    check_claims,
    grant,
    parse_scope,
    required_scopes,
)
from oauth_shield._config import DEFAULT_LEEWAY, Settings
from oauth_shield._errors import (
    ConfigurationError,
    InsufficientScopeError,
    InvalidTokenError,
    Reason,
)
from oauth_shield._token import fingerprint, token_digest
from tests.conftest import AUDIENCE, ISSUER, NOW, secret_pieces

LEEWAY = DEFAULT_LEEWAY
DROP: Any = object()  # removes a member; None stays as JSON null


def header(**changes: Any) -> dict[str, Any]:
    base = {"alg": "RS256", "kid": "k1", "typ": "at+jwt", **changes}
    return {name: value for name, value in base.items() if value is not DROP}


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "client_id": "client-1",
        "scope": "read write",
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 300,
        "jti": "jti-1",
        **changes,
    }
    return {name: value for name, value in base.items() if value is not DROP}


def settings(profile: str = "rfc9068") -> Settings:
    return Settings(issuer=ISSUER, audience=(AUDIENCE,), profile=profile)  # type: ignore[arg-type]


def check(head: dict[str, Any], body: dict[str, Any], profile: str = "rfc9068") -> Any:
    return check_claims(head, body, settings(profile), NOW, "fp123456")


class Case(NamedTuple):
    header: dict[str, Any]
    claims: dict[str, Any]
    strict: Reason | None  # None: accepted
    jwt: Reason | None


H, C, R = header, claims, Reason
CASES: dict[str, Case] = {
    "valid": Case(H(), C(), None, None),
    # typ (RFC 9068 §2.1, §4)
    "typ-at+jwt-upper": Case(H(typ="AT+JWT"), C(), None, None),
    "typ-application/at+jwt": Case(H(typ="application/at+jwt"), C(), None, None),
    "typ-JWT": Case(H(typ="JWT"), C(), R.WRONG_TYPE, None),
    "typ-jwt": Case(H(typ="jwt"), C(), R.WRONG_TYPE, None),
    "typ-application/jwt": Case(H(typ="application/jwt"), C(), R.WRONG_TYPE, None),
    "typ-missing": Case(H(typ=DROP), C(), R.WRONG_TYPE, None),
    "typ-null": Case(H(typ=None), C(), R.WRONG_TYPE, R.WRONG_TYPE),
    "typ-int": Case(H(typ=1), C(), R.WRONG_TYPE, R.WRONG_TYPE),
    "typ-list": Case(H(typ=["at+jwt"]), C(), R.WRONG_TYPE, R.WRONG_TYPE),
    "typ-dpop+jwt": Case(H(typ="dpop+jwt"), C(), R.WRONG_TYPE, R.WRONG_TYPE),
    "typ-padded": Case(H(typ=" at+jwt"), C(), R.WRONG_TYPE, R.WRONG_TYPE),
    "typ-id-token": Case(H(typ="id_token+jwt"), C(), R.WRONG_TYPE, R.WRONG_TYPE),
    # cnf: sender-constrained tokens are never bearer tokens
    "cnf": Case(H(), C(cnf={"jkt": "abc"}), R.KEY_BOUND, R.KEY_BOUND),
    "cnf-null": Case(H(), C(cnf=None), R.KEY_BOUND, R.KEY_BOUND),
    # iss: exact string match
    "iss-missing": Case(H(), C(iss=DROP), R.MISSING_CLAIM, R.MISSING_CLAIM),
    "iss-prefix": Case(H(), C(iss=ISSUER[:-1]), R.ISSUER_MISMATCH, R.ISSUER_MISMATCH),
    "iss-suffix": Case(H(), C(iss=ISSUER + ".evil"), R.ISSUER_MISMATCH, R.ISSUER_MISMATCH),
    "iss-case": Case(H(), C(iss=ISSUER.upper()), R.ISSUER_MISMATCH, R.ISSUER_MISMATCH),
    "iss-slash": Case(H(), C(iss=ISSUER + "/"), R.ISSUER_MISMATCH, R.ISSUER_MISMATCH),
    "iss-list": Case(H(), C(iss=[ISSUER]), R.ISSUER_MISMATCH, R.ISSUER_MISMATCH),
    "iss-int": Case(H(), C(iss=1), R.ISSUER_MISMATCH, R.ISSUER_MISMATCH),
    "iss-null": Case(H(), C(iss=None), R.ISSUER_MISMATCH, R.ISSUER_MISMATCH),
    # aud
    "aud-list-with-ours": Case(H(), C(aud=["https://other.test", AUDIENCE]), None, None),
    "aud-list-without-ours": Case(
        H(), C(aud=["https://other.test"]), R.AUDIENCE_MISMATCH, R.AUDIENCE_MISMATCH
    ),
    "aud-empty-list": Case(H(), C(aud=[]), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "aud-list-non-string": Case(H(), C(aud=[AUDIENCE, 1]), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "aud-nested-list": Case(H(), C(aud=[[AUDIENCE]]), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "aud-int": Case(H(), C(aud=1), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "aud-dict": Case(H(), C(aud={AUDIENCE: True}), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "aud-null": Case(H(), C(aud=None), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "aud-missing": Case(H(), C(aud=DROP), R.MISSING_CLAIM, R.MISSING_CLAIM),
    "aud-prefix": Case(H(), C(aud=AUDIENCE[:-1]), R.AUDIENCE_MISMATCH, R.AUDIENCE_MISMATCH),
    "aud-suffix": Case(H(), C(aud=AUDIENCE + "/x"), R.AUDIENCE_MISMATCH, R.AUDIENCE_MISMATCH),
    "aud-case": Case(H(), C(aud=AUDIENCE.upper()), R.AUDIENCE_MISMATCH, R.AUDIENCE_MISMATCH),
    "aud-empty-string": Case(H(), C(aud=""), R.AUDIENCE_MISMATCH, R.AUDIENCE_MISMATCH),
    # exp
    "exp-missing": Case(H(), C(exp=DROP), R.MISSING_CLAIM, R.MISSING_CLAIM),
    "exp-string": Case(H(), C(exp=str(int(NOW) + 300)), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "exp-bool": Case(H(), C(exp=True), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "exp-null": Case(H(), C(exp=None), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "exp-negative": Case(H(), C(exp=-1), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "exp-beyond-max": Case(H(), C(exp=MAX_TIMESTAMP + 1), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "exp-max": Case(H(), C(exp=MAX_TIMESTAMP), None, None),
    "exp-float": Case(H(), C(exp=NOW + 300.5), None, None),
    "exp-at-leeway-edge": Case(H(), C(exp=NOW - LEEWAY), R.EXPIRED, R.EXPIRED),
    "exp-1s-before-edge": Case(H(), C(exp=NOW - LEEWAY + 1), None, None),
    "exp-zero": Case(H(), C(exp=0), R.EXPIRED, R.EXPIRED),
    # nbf
    "nbf-past": Case(H(), C(nbf=NOW - 100), None, None),
    "nbf-at-leeway-edge": Case(H(), C(nbf=NOW + LEEWAY), None, None),
    "nbf-1s-after-edge": Case(H(), C(nbf=NOW + LEEWAY + 1), R.NOT_YET_VALID, R.NOT_YET_VALID),
    "nbf-string": Case(H(), C(nbf="0"), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "nbf-bool": Case(H(), C(nbf=False), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "nbf-null": Case(H(), C(nbf=None), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "nbf-negative": Case(H(), C(nbf=-5), R.INVALID_CLAIM, R.INVALID_CLAIM),
    # iat
    "iat-at-leeway-edge": Case(H(), C(iat=NOW + LEEWAY), None, None),
    "iat-future": Case(H(), C(iat=NOW + LEEWAY + 1), R.ISSUED_IN_FUTURE, R.ISSUED_IN_FUTURE),
    "iat-missing": Case(H(), C(iat=DROP), R.MISSING_CLAIM, None),
    "iat-string": Case(H(), C(iat="now"), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "iat-bool": Case(H(), C(iat=True), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "iat-null": Case(H(), C(iat=None), R.INVALID_CLAIM, R.INVALID_CLAIM),
    "iat-beyond-max": Case(H(), C(iat=MAX_TIMESTAMP + 1), R.INVALID_CLAIM, R.INVALID_CLAIM),
}
for _name in ("sub", "client_id", "jti"):
    CASES |= {
        f"{_name}-missing": Case(H(), C(**{_name: DROP}), R.MISSING_CLAIM, None),
        f"{_name}-empty": Case(H(), C(**{_name: ""}), R.INVALID_CLAIM, R.INVALID_CLAIM),
        f"{_name}-int": Case(H(), C(**{_name: 1}), R.INVALID_CLAIM, R.INVALID_CLAIM),
        f"{_name}-list": Case(H(), C(**{_name: ["a"]}), R.INVALID_CLAIM, R.INVALID_CLAIM),
        f"{_name}-null": Case(H(), C(**{_name: None}), R.INVALID_CLAIM, R.INVALID_CLAIM),
    }
CASES["jwt-profile-minimal"] = Case(
    H(typ=DROP),
    {"iss": ISSUER, "aud": AUDIENCE, "exp": int(NOW) + 60},
    R.WRONG_TYPE,
    None,
)
CASES["scope-non-string"] = Case(H(), C(scope=["read"]), R.INVALID_CLAIM, R.INVALID_CLAIM)

PARAMS = [
    pytest.param(case.header, case.claims, expected, profile, id=f"{profile}-{name}")
    for name, case in CASES.items()
    for profile, expected in (("rfc9068", case.strict), ("jwt", case.jwt))
]


@pytest.mark.parametrize(("head", "body", "expected", "profile"), PARAMS)
def test_claim_rules(
    head: dict[str, Any], body: dict[str, Any], expected: Reason | None, profile: str
) -> None:
    if expected is None:
        # The same claims, read-only all the way down: lists come back as tuples.
        assert check(head, body, profile).to_dict() == body
    else:
        with pytest.raises(InvalidTokenError) as raised:
            check(head, body, profile)
        assert raised.value.reason is expected


def test_leeway_setting_moves_the_edges() -> None:
    strict = Settings(issuer=ISSUER, audience=(AUDIENCE,), leeway=0)
    with pytest.raises(InvalidTokenError, match="expired"):
        check_claims(header(), claims(exp=NOW), strict, NOW, "")
    assert check_claims(header(), claims(exp=NOW + 1), strict, NOW, "").subject == "user-1"
    with pytest.raises(InvalidTokenError):
        check_claims(header(), claims(nbf=NOW + 1), strict, NOW, "")


def test_one_of_several_configured_audiences() -> None:
    both = Settings(issuer=ISSUER, audience=("https://a.test", AUDIENCE))
    assert check_claims(header(), claims(aud=AUDIENCE), both, NOW, "").subject == "user-1"
    assert check_claims(header(), claims(aud=["https://a.test"]), both, NOW, "").subject


# --- the AccessToken -----------------------------------------------------------------


def test_access_token_fields() -> None:
    body = claims(scope="write read", extra={"secret": "canary-7f3a"})
    token = check(header(), body)
    assert (token.subject, token.client_id) == ("user-1", "client-1")
    assert token.scopes == {"read", "write"}
    assert token.expires_at == datetime.fromtimestamp(NOW + 300, UTC)
    assert token.expires_at.tzinfo is UTC
    assert token.fingerprint == "fp123456"
    assert isinstance(token.claims, MappingProxyType)
    assert token.claims["extra"] == {"secret": "canary-7f3a"}
    with pytest.raises(TypeError):
        token.claims["sub"] = "admin"  # type: ignore[index]
    with pytest.raises(TypeError):
        del token.claims["sub"]  # type: ignore[attr-defined]


def test_access_token_repr_shows_only_identity_and_scopes() -> None:
    raw = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLWJ5dGVz"
    body = claims(jti="jti-canary-91", extra="claim-canary-42", scope="read")
    token = check_claims(header(), body, settings(), NOW, fingerprint(token_digest(raw)))
    text = repr(token)
    assert "user-1" in text
    assert "client-1" in text
    assert "'read'" in text
    assert token.fingerprint in text
    for hidden in ("jti-canary-91", "claim-canary-42", ISSUER, *secret_pieces(raw)):
        assert hidden not in text


def test_access_token_pickles_with_its_claims_still_read_only() -> None:
    import pickle

    body = claims(extra={"nested": ["a", {"b": 1}]}, scope="read write")
    token = check_claims(header(), body, settings(), NOW, "fp123456")
    copy = pickle.loads(pickle.dumps(token))  # noqa: S301 - our own bytes
    assert repr(copy) == repr(token)
    assert copy.to_dict() == token.to_dict()
    assert copy.scopes == {"read", "write"} and copy.expires_at == token.expires_at
    assert isinstance(copy.claims, MappingProxyType)
    assert isinstance(copy.claims["extra"], MappingProxyType)
    with pytest.raises(TypeError):
        copy.claims["sub"] = "admin"  # type: ignore[index]


def test_jwt_profile_token_without_optional_claims() -> None:
    token = check(header(typ=DROP), {"iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 60}, "jwt")
    assert (token.subject, token.client_id, token.scopes) == (None, None, frozenset())


# --- scopes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("read write", {"read", "write"}),
        ("read  write", {"read", "write"}),
        (" read write ", {"read", "write"}),
        ("read read", {"read"}),
        ("READ", {"READ"}),
        ("read,write", {"read,write"}),
        ("read\twrite", {"read\twrite"}),
        ("read\nwrite", {"read\nwrite"}),
        ("", set()),
        (" ", set()),
    ],
    ids=repr,
)
def test_parse_scope(value: str, expected: set[str]) -> None:
    assert parse_scope(value) == expected
    assert check(header(), claims(scope=value)).scopes == expected


def test_absent_scope_is_empty() -> None:
    assert parse_scope() == frozenset()
    assert check(header(), claims(scope=DROP)).scopes == frozenset()


@pytest.mark.parametrize("value", [["read"], 1, None, True, {"read": 1}], ids=repr)
def test_non_string_scope(value: object) -> None:
    with pytest.raises(InvalidTokenError) as raised:
        parse_scope(value)
    assert raised.value.reason is Reason.INVALID_CLAIM


@pytest.mark.parametrize(
    ("granted", "required"),
    [("read write", set()), ("read write", {"read"}), ("read write", {"read", "write"})],
)
def test_grant_passes(granted: str, required: set[str]) -> None:
    token = check(header(), claims(scope=granted))
    assert grant(token, frozenset(required)) is token


@pytest.mark.parametrize(
    ("granted", "required"),
    [
        ("read", {"write"}),
        ("read", {"read", "write"}),
        ("read", {"READ"}),
        ("read,write", {"read"}),
        ("readwrite", {"read", "write"}),
        ("", {"read"}),
    ],
)
def test_grant_refuses_naming_every_required_scope(granted: str, required: set[str]) -> None:
    token = check(header(), claims(scope=granted))
    with pytest.raises(InsufficientScopeError) as raised:
        grant(token, frozenset(required))
    assert raised.value.scopes == tuple(sorted(required))


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (None, set()),
        ("", set()),
        ("read", {"read"}),
        ("read write", {"read", "write"}),
        ("  read   write ", {"read", "write"}),
        (["read", "write"], {"read", "write"}),
        (("read",), {"read"}),
        ({"read", "write"}, {"read", "write"}),
        (frozenset({"a:b"}), {"a:b"}),
        (iter(["read"]), {"read"}),
    ],
    ids=["none", "empty-string", "string", "two-in-string", "spaced-string", "list", "tuple",
         "set", "frozenset", "iterator"],
)  # fmt: skip
def test_required_scopes(scopes: Any, expected: set[str]) -> None:
    assert required_scopes(scopes) == expected


@pytest.mark.parametrize(
    "scopes",
    [["read write"], ['a"b'], ["a\\b"], ["caf\u00e9"], [""], [1], [None], [b"read"], b"read",
     ["read\n"], ["\t"], [["read"]], 42, ("ok", "not ok")],
    ids=repr,
)  # fmt: skip
def test_illegal_required_scopes(scopes: Any) -> None:
    for _ in range(2):  # the second call must not find a memoised answer either
        with pytest.raises(ConfigurationError, match="scope"):
            required_scopes(scopes)


def test_required_scopes_repeat_calls_agree() -> None:
    for _ in range(3):
        assert required_scopes("read") == {"read"}
        assert required_scopes(["read"]) == {"read"}
        assert required_scopes(("read", "write")) == {"read", "write"}
        assert required_scopes("write read") == {"read", "write"}


# --- memos: bounded, and a validator's own -----------------------------------------------------


def test_the_scope_memo_shares_one_frozenset_per_string() -> None:
    memo = ScopeMemo()
    first = check_claims(header(), claims(scope="read write"), settings(), NOW, "", memo)
    second = check_claims(header(), claims(scope="read write"), settings(), NOW, "", memo)
    assert first.scopes is second.scopes
    assert memo.strings() == ["read write"]


def test_the_scope_memo_keeps_short_strings_only() -> None:
    memo = ScopeMemo()
    huge = "read " + "x" * MAX_MEMO_SCOPE_LENGTH
    assert memo.parse(huge) == {"read", "x" * MAX_MEMO_SCOPE_LENGTH}
    assert memo.parse("a" * MAX_MEMO_SCOPE_LENGTH) == {"a" * MAX_MEMO_SCOPE_LENGTH}
    assert memo.strings() == ["a" * MAX_MEMO_SCOPE_LENGTH]
    with pytest.raises(InvalidTokenError):
        memo.parse(["read"])
    assert memo.parse() == frozenset()


def test_the_scope_memo_is_bounded() -> None:
    memo = ScopeMemo()
    for number in range(3 * MAX_SCOPE_MEMO):
        assert memo.parse(f"scope-{number}") == {f"scope-{number}"}
        assert len(memo) <= MAX_SCOPE_MEMO
    assert sum(map(len, memo.strings())) <= MAX_SCOPE_MEMO * MAX_MEMO_SCOPE_LENGTH


def test_no_scope_string_is_kept_in_module_state() -> None:
    memo = ScopeMemo()
    before = {name: len(value) for name, value in vars(_claims).items() if type(value) is dict}
    for number in range(50):
        check_claims(header(), claims(scope=f"read s{number}"), settings(), NOW, "", memo)
        parse_scope(f"write s{number}")
    after = {name: len(value) for name, value in vars(_claims).items() if type(value) is dict}
    assert after == before


def test_long_scope_requirements_are_not_memoised() -> None:
    long = " ".join(f"scope-{number}" for number in range(100))
    before = len(_claims._REQUIRED)
    assert required_scopes(long) == set(long.split())
    assert required_scopes(tuple(long.split())) == set(long.split())
    assert len(_claims._REQUIRED) == before
    assert required_scopes("read admin") == {"read", "admin"}  # a short one still is
