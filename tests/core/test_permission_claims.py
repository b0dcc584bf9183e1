"""Permission claims, clients and audience-less tokens (``check_claims`` with ``scope_claims``,
``allowed_clients``, ``client_claim``, ``require_scope_claim``, ``audience=None``), at a fixed
``now``; and the same rules on an introspection answer."""

from __future__ import annotations

from typing import Any

import pytest

from oauth_shield import ConfigurationError, InsufficientScopeError, InvalidTokenError, Reason
from oauth_shield._claims import ScopeMemo, check_claims, grant
from oauth_shield._config import Settings
from oauth_shield._introspection import check_answer
from tests.conftest import AUDIENCE, ISSUER, NOW

HEADER = {"alg": "RS256", "kid": "k1", "typ": "JWT"}


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": int(NOW) + 300, **changes}
    return {name: value for name, value in base.items() if value is not None}


def settings(**options: Any) -> Settings:
    return Settings(
        issuer=ISSUER, audience=options.pop("audience", AUDIENCE), profile="jwt", **options
    )


def scopes_of(token_claims: dict[str, Any], **options: Any) -> frozenset[str]:
    return check_claims(HEADER, token_claims, settings(**options), NOW, "fp", ScopeMemo()).scopes


def reason(token_claims: dict[str, Any], **options: Any) -> Reason | None:
    try:
        check_claims(HEADER, token_claims, settings(**options), NOW, "fp", ScopeMemo())
    except InvalidTokenError as error:
        return error.reason
    return None


# --- what grants ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "token", "granted"),
    [
        ({}, claims(scope="read write"), {"read", "write"}),
        ({}, claims(scp="read"), set()),  # the default reads scope only
        ({"scope_claims": "scp"}, claims(scp="Files.Read User.Read"), {"Files.Read", "User.Read"}),
        ({"scope_claims": "scp"}, claims(scp=["openid", "orders:read"]), {"openid", "orders:read"}),
        ({"scope_claims": "scp roles"}, claims(scp="a", roles=["b", "c"]), {"a", "b", "c"}),
        ({"scope_claims": "scp roles"}, claims(roles=["Orders.Admin"]), {"Orders.Admin"}),
        ({"scope_claims": ("scope", "permissions")},
         claims(scope="openid", permissions=["read:orders"]), {"openid", "read:orders"}),
        ({"scope_claims": [("realm_access", "roles")]},
         claims(realm_access={"roles": ["admin", "user"]}), {"admin", "user"}),
        ({"scope_claims": "/resource_access/orders-api/roles"},
         claims(resource_access={"orders-api": {"roles": ["approve"]}, "other": {"roles": ["x"]}}),
         {"approve"}),
        ({"scope_claims": "/resource_access/orders-api/roles"},
         claims(resource_access={"account": {"roles": ["manage"]}}), set()),  # absent: nothing
        ({"scope_claims": "cognito:groups scope"},
         claims(**{"cognito:groups": ["admins"], "scope": "orders/read"}),
         {"admins", "orders/read"}),
        ({"scope_claims": ["https://example.com/roles"]},
         claims(**{"https://example.com/roles": ["editor"]}), {"editor"}),
        ({"scope_claims": "scp"}, claims(scp=["", "a", ""]), {"a"}),  # empty pieces dropped
        ({"scope_claims": "scp"}, claims(scp=" a  b "), {"a", "b"}),
        ({"scope_claims": "scp"}, claims(scp=[]), set()),
    ],
    ids=lambda value: repr(value)[:50],
)  # fmt: skip
def test_granted_is_the_union_of_the_permission_claims(
    options: dict[str, Any], token: dict[str, Any], granted: set[str]
) -> None:
    assert scopes_of(token, **options) == granted


@pytest.mark.parametrize(
    "value",
    [1, True, None, {"read": True}, ["a", 1], ["a", ["b"]], ["a", None], [{"x": 1}], 1.5],
    ids=repr,
)
def test_a_permission_claim_of_another_type_refuses_the_token(value: Any) -> None:
    token = claims(scp=value) if value is not None else {**claims(), "scp": None}
    assert reason(token, scope_claims="scp roles") is Reason.INVALID_CLAIM


@pytest.mark.parametrize("realm_access", ["admin", ["admin"], 1, None, True], ids=repr)
def test_a_path_through_something_that_is_not_an_object_refuses(realm_access: Any) -> None:
    token = {**claims(), "realm_access": realm_access}
    assert reason(token, scope_claims="/realm_access/roles") is Reason.INVALID_CLAIM


def test_scope_claims_never_grant_through_a_lookalike() -> None:
    # "realm_access.roles" (a flat name with a dot) is not the nested path, nor the reverse.
    token = claims(**{"realm_access.roles": ["admin"]})
    assert scopes_of(token, scope_claims=[("realm_access", "roles")]) == set()
    nested = claims(realm_access={"roles": ["admin"]})
    assert scopes_of(nested, scope_claims="realm_access.roles") == set()


def test_huge_permission_arrays_are_read_as_they_are() -> None:
    # Larger than any token the size limit lets through: one pass, no memo, nothing kept.
    roles = [f"role-{i}" for i in range(4000)]
    memo = ScopeMemo()
    token = check_claims(HEADER, claims(roles=roles), settings(scope_claims="roles"), NOW, "", memo)
    assert len(token.scopes) == 4000
    assert len(memo) == 0


def test_the_granted_set_is_what_routes_require() -> None:
    token = check_claims(
        HEADER,
        claims(realm_access={"roles": ["orders:read"]}),
        settings(scope_claims="/realm_access/roles"),
        NOW,
        "fp",
    )
    assert grant(token, frozenset({"orders:read"})) is token
    with pytest.raises(InsufficientScopeError):
        grant(token, frozenset({"orders:write"}))


# --- require_scope_claim ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (claims(scp="user_impersonation"), None),
        (claims(roles=["Orders.Read.All"]), None),
        (claims(scp=""), None),  # present, even if empty: it is an access token's claim
        (claims(), Reason.MISSING_CLAIM),  # an Entra ID token: neither scp nor roles
        (claims(scope="read"), Reason.MISSING_CLAIM),  # not a permission claim configured
    ],
    ids=["scp", "roles", "empty-scp", "neither", "other-claim"],
)
def test_require_scope_claim(token: dict[str, Any], expected: Reason | None) -> None:
    assert reason(token, scope_claims="scp roles", require_scope_claim=True) is expected


# --- clients ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "token", "expected"),
    [
        ({"allowed_clients": ["app-1"]}, claims(client_id="app-1"), None),
        ({"allowed_clients": ["app-1"]}, claims(client_id="app-2"), Reason.CLIENT_NOT_ALLOWED),
        ({"allowed_clients": ["app-1"]}, claims(), Reason.MISSING_CLAIM),
        ({"allowed_clients": ["app-1"]}, claims(client_id=["app-1"]), Reason.INVALID_CLAIM),
        ({"allowed_clients": ["app-1"]}, claims(client_id="APP-1"), Reason.CLIENT_NOT_ALLOWED),
        ({"allowed_clients": ["app-1"]}, claims(client_id="app-1 "), Reason.CLIENT_NOT_ALLOWED),
        ({"allowed_clients": ["app-1"], "client_claim": "azp"}, claims(azp="app-1"), None),
        ({"allowed_clients": ["app-1"], "client_claim": "azp"},
         claims(azp="app-2", client_id="app-1"), Reason.CLIENT_NOT_ALLOWED),  # azp decides
        ({"client_claim": "cid"}, claims(cid=7), Reason.INVALID_CLAIM),
        ({"client_claim": "cid"}, claims(cid=""), Reason.INVALID_CLAIM),
    ],
    ids=lambda value: repr(value)[:40],
)  # fmt: skip
def test_clients(options: dict[str, Any], token: dict[str, Any], expected: Reason | None) -> None:
    assert reason(token, **options) is expected


def test_the_client_claim_is_the_tokens_client_id() -> None:
    token = check_claims(HEADER, claims(cid="0oa1"), settings(client_claim="cid"), NOW, "fp")
    assert token.client_id == "0oa1"


# --- audience=None -----------------------------------------------------------------------------


def test_without_an_audience_the_client_decides() -> None:
    cognito = {"audience": None, "allowed_clients": ["app-1"]}
    assert reason(claims(aud=None, client_id="app-1"), **cognito) is None
    assert reason(claims(aud=None, client_id="app-9"), **cognito) is Reason.CLIENT_NOT_ALLOWED
    assert reason(claims(aud="anything", client_id="app-1"), **cognito) is None
    assert settings(**cognito).audience == ()


def test_audience_none_needs_allowed_clients() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings(issuer=ISSUER, audience=None)  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith("audience is None, and allowed_clients is not set")
    assert "allowed_clients" in raised.value.mentions


def test_allowed_clients_work_alongside_an_audience() -> None:
    options = {"allowed_clients": ["app-1"]}
    assert reason(claims(client_id="app-1"), **options) is None
    assert reason(claims(client_id="app-1", aud="other"), **options) is Reason.AUDIENCE_MISMATCH


# --- the same rules on an introspection answer -------------------------------------------------


def answer(**changes: Any) -> dict[str, Any]:
    return {"active": True, **claims(**changes)}


@pytest.mark.parametrize(
    ("options", "given", "expected"),
    [
        ({"scope_claims": "scp"}, answer(scp=["a", "b"]), None),
        ({"scope_claims": "scp"}, answer(scp=7), Reason.INVALID_CLAIM),
        ({"allowed_clients": ["app-1"]}, answer(client_id="app-2"), Reason.CLIENT_NOT_ALLOWED),
        ({"required_claims": {"token_use": "access"}}, answer(token_use="id"),
         Reason.CLAIM_MISMATCH),
        ({"audience": None, "allowed_clients": ["a"]}, answer(aud="x", client_id="a"), None),
    ],
    ids=lambda value: repr(value)[:40],
)  # fmt: skip
def test_introspection_answers_meet_the_same_rules(
    options: dict[str, Any], given: dict[str, Any], expected: Reason | None
) -> None:
    if expected is not None:
        with pytest.raises(InvalidTokenError) as raised:
            check_answer(given, settings(**options), NOW, "fp")
        assert raised.value.reason is expected
        return
    token = check_answer(given, settings(**options), NOW, "fp")
    if "scope_claims" in options:
        assert token.scopes == {"a", "b"}
