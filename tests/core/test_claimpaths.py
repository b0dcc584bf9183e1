"""Claim paths (oauth_shield._claimpaths): how ``scope_claims``, ``required_claims`` and
``allowed_clients`` are configured (as arguments and as ``OAUTH_SHIELD_*`` strings), and
reading a path from a token's claims."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield import ConfigurationError, InvalidTokenError, Reason, TokenValidator
from oauth_shield._claimpaths import (
    MAX_CLAIM_PATH_DEPTH,
    MISSING,
    check_clients,
    check_required,
    check_required_claims,
    check_scope_claims,
    claim_at,
    claim_path,
)
from tests.conftest import AUDIENCE, ISSUER

# --- names, pointers and tuples -------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ("scp", ("scp",)),
        ("cognito:groups", ("cognito:groups",)),
        ("https://example.com/roles", ("https://example.com/roles",)),  # a name, not a path
        ("realm_access.roles", ("realm_access.roles",)),  # a dot never nests
        (("realm_access", "roles"), ("realm_access", "roles")),
        (["resource_access", "orders-api", "roles"], ("resource_access", "orders-api", "roles")),
        ("/realm_access/roles", ("realm_access", "roles")),
        ("/https:~1~1example.com~1roles", ("https://example.com/roles",)),
        ("/a~0b/c~01", ("a~b", "c~1")),  # RFC 6901 §4: ~01 is ~1, not /
        ("/" + "/".join("abcdefgh"), tuple("abcdefgh")),  # the deepest allowed
    ],
)
def test_claim_paths(entry: Any, path: tuple[str, ...]) -> None:
    assert claim_path(entry, "scope_claims") == path


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "/",  # one empty member
        "//roles",
        "/realm_access/",
        "/a~2b",  # not an RFC 6901 escape
        "/a~",
        (),
        ("realm_access", ""),
        ("a", 1),
        tuple("abcdefghi"),  # nine members deep
        "/" + "/".join("abcdefghi"),
        1,
        None,
        b"scp",
        {"scp": 1},
    ],
    ids=repr,
)
def test_bad_claim_paths_are_configuration_errors(entry: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        claim_path(entry, "scope_claims")
    assert str(raised.value).startswith("scope_claims")
    assert raised.value.field == "scope_claims"


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


@given(st.lists(names, min_size=1, max_size=MAX_CLAIM_PATH_DEPTH))
def test_a_json_pointer_round_trips(path: list[str]) -> None:
    pointer = "/" + "/".join(name.replace("~", "~0").replace("/", "~1") for name in path)
    assert claim_path(pointer, "scope_claims") == tuple(path)


@given(st.text(max_size=60))
def test_any_scope_claims_string_is_paths_or_a_configuration_error(text: str) -> None:
    try:
        paths = check_scope_claims(text)
    except ConfigurationError as error:
        field = error.field
    else:
        field = None
        assert paths and all(path and all(path) for path in paths)
    assert field in (None, "scope_claims")


@given(st.text(max_size=80))
def test_any_required_claims_string_is_rules_or_a_configuration_error(text: str) -> None:
    try:
        rules = check_required_claims(text)
    except ConfigurationError as error:
        field = error.field
    else:
        field = None
        assert all(path and all(path) for path, _ in rules)
    assert field in (None, "required_claims")


# --- scope_claims ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "paths"),
    [
        ("scope", (("scope",),)),
        ("scp roles", (("scp",), ("roles",))),
        ("scp, roles,scp", (("scp",), ("roles",))),  # repeats dropped, order kept
        ("/realm_access/roles cognito:groups", (("realm_access", "roles"), ("cognito:groups",))),
        ('["scp", "/realm_access/roles", "my claim, with a comma"]',
         (("scp",), ("realm_access", "roles"), ("my claim, with a comma",))),
        (("scp", ("realm_access", "roles")), (("scp",), ("realm_access", "roles"))),
        (["permissions"], (("permissions",),)),
    ],
)  # fmt: skip
def test_scope_claims_forms(value: Any, paths: tuple[tuple[str, ...], ...]) -> None:
    assert check_scope_claims(value) == paths


@pytest.mark.parametrize(
    "value",
    ["", " , ", "[]", '["scp"', '{"scp": 1}', "[1]", '["/a~2"]', [], {"scp": True}, 3, None,
     [f"c{i}" for i in range(17)]],
    ids=repr,
)  # fmt: skip
def test_bad_scope_claims(value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        TokenValidator(issuer=ISSUER, audience=AUDIENCE, scope_claims=value)
    assert str(raised.value).startswith("scope_claims")


def test_an_unparsable_scope_claims_key_is_named() -> None:
    environ = {
        "OAUTH_SHIELD_ISSUER": ISSUER,
        "OAUTH_SHIELD_AUDIENCE": AUDIENCE,
        "OAUTH_SHIELD_SCOPE_CLAIMS": '["scp", ',
    }
    with pytest.raises(ConfigurationError) as raised:
        TokenValidator.from_env(environ)
    assert str(raised.value) == ("OAUTH_SHIELD_SCOPE_CLAIMS is not a JSON array: '[\"scp\", '")
    assert raised.value.field == "OAUTH_SHIELD_SCOPE_CLAIMS"


def test_every_new_setting_comes_from_the_environment() -> None:
    validator = TokenValidator.from_env(
        {
            "OAUTH_SHIELD_ISSUER": '["https://a.test", "https://login.test/{tenantid}/v2.0"]',
            "OAUTH_SHIELD_AUDIENCE": AUDIENCE,
            "OAUTH_SHIELD_JWKS_URI": '{"https://login.test/{tenantid}/v2.0": "https://login.test/keys"}',
            "OAUTH_SHIELD_TENANTS": (
                "72F988BF-86F1-41AF-91AB-2D7CD011DB47, 00000000-0000-0000-0000-000000000001"
            ),
            "OAUTH_SHIELD_SCOPE_CLAIMS": "scp /realm_access/roles",
            "OAUTH_SHIELD_REQUIRED_CLAIMS": '{"ver": "2.0", "/ext/level": [1, 2], "beta": true}',
            "OAUTH_SHIELD_ALLOWED_CLIENTS": "app-1, app-2",
            "OAUTH_SHIELD_CLIENT_CLAIM": "azp",
            "OAUTH_SHIELD_REQUIRE_SCOPE_CLAIM": "yes",
            "OAUTH_SHIELD_PRESET": "entra",
            "OAUTH_SHIELD_PROFILE": "jwt",
        }
    )
    settings = validator.settings
    assert settings.issuers == ("https://a.test", "https://login.test/{tenantid}/v2.0")
    assert dict(settings.jwks_uris) == {
        "https://login.test/{tenantid}/v2.0": "https://login.test/keys"
    }
    assert settings.tenants == {
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "00000000-0000-0000-0000-000000000001",
    }
    assert settings.scope_claims == (("scp",), ("realm_access", "roles"))
    assert [path for path, _ in settings.required_claims] == [("ver",), ("ext", "level"), ("beta",)]
    assert settings.allowed_clients == {"app-1", "app-2"}
    assert (settings.client_claim, settings.require_scope_claim) == ("azp", True)
    assert settings.warnings() == []  # the preset's profile is not a weakened default
    # What the rules read is kept in introspection answers, so a cached one can be re-checked.
    assert {
        "scp",
        "realm_access",
        "ver",
        "ext",
        "beta",
        "azp",
        "tid",
    } <= settings.introspection_fields


# --- required_claims ------------------------------------------------------------------------


def required(value: Any, claims: dict[str, Any]) -> Reason | None:
    try:
        check_required(claims, check_required_claims(value))
    except InvalidTokenError as error:
        return error.reason
    return None


@pytest.mark.parametrize(
    ("value", "claims", "reason"),
    [
        ({"typ": "Bearer"}, {"typ": "Bearer"}, None),
        ({"typ": "Bearer"}, {"typ": "ID"}, Reason.CLAIM_MISMATCH),
        ({"typ": "Bearer"}, {}, Reason.CLAIM_MISMATCH),  # absent
        ({"typ": "Bearer"}, {"typ": "bearer"}, Reason.CLAIM_MISMATCH),  # exact, case too
        ({"typ": "Bearer"}, {"typ": ["Bearer"]}, Reason.CLAIM_MISMATCH),  # type too
        ({"typ": "Bearer"}, {"typ": "Bearer "}, Reason.CLAIM_MISMATCH),
        ({"ver": 1}, {"ver": 1}, None),
        ({"ver": 1}, {"ver": 1.0}, None),  # JSON has one number type
        ({"ver": 1}, {"ver": "1"}, Reason.CLAIM_MISMATCH),
        ({"ver": 1}, {"ver": True}, Reason.CLAIM_MISMATCH),  # true is not 1
        ({"beta": True}, {"beta": 1}, Reason.CLAIM_MISMATCH),
        ({"beta": True}, {"beta": True}, None),
        ({"beta": False}, {"beta": 0}, Reason.CLAIM_MISMATCH),
        ({"repository": ["o/a", "o/b"]}, {"repository": "o/b"}, None),  # one of these
        ({"repository": ("o/a", "o/b")}, {"repository": "o/c"}, Reason.CLAIM_MISMATCH),
        ({"repository": {"o/a"}}, {"repository": "o/a"}, None),
        ({("k8s", "ns"): "prod"}, {"k8s": {"ns": "prod"}}, None),
        ({"/k8s/ns": "prod"}, {"k8s": {"ns": "dev"}}, Reason.CLAIM_MISMATCH),
        ({"/k8s/ns": "prod"}, {"k8s": "prod"}, Reason.INVALID_CLAIM),  # not an object on the way
        ({"/k8s/ns": "prod"}, {"k8s": ["prod"]}, Reason.INVALID_CLAIM),
        ({"/k8s/ns": "prod"}, {}, Reason.CLAIM_MISMATCH),
        ({"a": "x", "b": "y"}, {"a": "x"}, Reason.CLAIM_MISMATCH),  # every one
        ('{"token_use": "access"}', {"token_use": "access"}, None),  # the env form
        ('{"/a/b": [1, 2]}', {"a": {"b": 2}}, None),
        (None, {}, None),
        ({}, {}, None),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_required_claims(value: Any, claims: dict[str, Any], reason: Reason | None) -> None:
    assert required(value, claims) is reason


@pytest.mark.parametrize(
    "value",
    [{"a": None}, {"a": []}, {"a": {"b": 1}}, {"a": [None]}, {"a": float("nan")},
     {"a": float("inf")}, {"": "x"}, {"/a~2": "x"}, "[]", "{", '{"a": null}', ["a"], 1],
    ids=repr,
)  # fmt: skip
def test_bad_required_claims(value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        TokenValidator(issuer=ISSUER, audience=AUDIENCE, required_claims=value)
    assert str(raised.value).startswith("required_claims")


# --- clients and reading ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("a b,c", {"a", "b", "c"}), (["a"], {"a"}), ('["a b"]', {"a b"})],
)
def test_allowed_clients(value: Any, expected: set[str] | None) -> None:
    assert check_clients(value) == expected


@pytest.mark.parametrize("value", ["", [], [""], [1], 3, {"a": 1}], ids=repr)
def test_bad_allowed_clients(value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        TokenValidator(issuer=ISSUER, audience=AUDIENCE, allowed_clients=value)
    assert str(raised.value).startswith("allowed_clients")


def test_reading_a_path_is_bounded_by_its_depth() -> None:
    deep: Any = "leaf"
    for _ in range(30):
        deep = {"a": deep}
    assert claim_at({"a": deep}, ("a",) * 8)["a"]["a"] is not None  # eight steps, no more
    assert claim_at({}, ("a", "b")) is MISSING
    assert claim_at({"a": {}}, ("a", "b")) is MISSING
    with pytest.raises(InvalidTokenError):
        claim_at({"a": None}, ("a", "b"))
