"""RFC 7662 rules, pure: the request we send and how an answer is judged and filtered."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote_plus

import pytest

from oauth_shield import InvalidTokenError, Reason
from oauth_shield._config import RULE_FIELDS, Settings
from oauth_shield._introspection import check_answer, filter_fields, request_form
from oauth_shield._secret import Secret
from tests.conftest import AUDIENCE, ISSUER, NOW

SETTINGS = Settings(issuer=ISSUER, audience=(AUDIENCE,), client_id="rs", client_secret=Secret("x"))


def answer(**overrides: Any) -> dict[str, Any]:
    base = {
        "active": True,
        "scope": "read write",
        "client_id": "client-1",
        "sub": "user-1",
        "exp": NOW + 60,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "token_type": "Bearer",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("rs", "plain"), ("client:1 +", "s3cr%t:+/="), ("ünïcode", "pässwörd"), ("a", ":::")],
)
def test_client_secret_basic_form_encodes_id_and_secret(client_id: str, secret: str) -> None:
    form, headers = request_form("tok", client_id, secret, "client_secret_basic")
    assert form == {"token": "tok", "token_type_hint": "access_token"}
    scheme, _, encoded = headers["Authorization"].partition(" ")
    pair = base64.b64decode(encoded).decode("ascii")  # form-encoding leaves only ASCII
    sent_id, _, sent_secret = pair.partition(":")  # the first ':' separates: others are encoded
    assert scheme == "Basic"
    assert (unquote_plus(sent_id), unquote_plus(sent_secret)) == (client_id, secret)


def test_client_secret_post_puts_the_credentials_in_the_form() -> None:
    form, headers = request_form("tok", "rs", "s+cret", "client_secret_post")
    assert form == {
        "token": "tok",
        "token_type_hint": "access_token",
        "client_id": "rs",
        "client_secret": "s+cret",
    }
    assert headers == {}


def test_an_active_answer_becomes_an_access_token() -> None:
    token = check_answer(answer(), SETTINGS, NOW, "fp")
    assert (token.subject, token.client_id, token.scopes) == (
        "user-1",
        "client-1",
        {"read", "write"},
    )
    assert token.expires_at is not None and token.expires_at.timestamp() == NOW + 60
    assert token.fingerprint == "fp"


@pytest.mark.parametrize(
    "active", [False, 1, "true", "True", ["true"], {"active": True}, None, 1.0]
)
def test_only_the_json_literal_true_is_active(active: object) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        check_answer(
            {**answer(), "active": active} if active is not None else answer(active=None),
            SETTINGS,
            NOW,
            "fp",
        )
    assert caught.value.reason is Reason.INACTIVE


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": NOW - 30}, Reason.EXPIRED),
        ({"exp": NOW - 3600}, Reason.EXPIRED),
        ({"exp": "soon"}, Reason.INVALID_CLAIM),
        ({"exp": True}, Reason.INVALID_CLAIM),
        ({"nbf": NOW + 31}, Reason.NOT_YET_VALID),
        ({"iss": "https://other.test"}, Reason.ISSUER_MISMATCH),
        ({"iss": ISSUER + "/"}, Reason.ISSUER_MISMATCH),
        ({"aud": "https://other.test"}, Reason.AUDIENCE_MISMATCH),
        ({"aud": ["https://other.test"]}, Reason.AUDIENCE_MISMATCH),
        ({"aud": [1]}, Reason.INVALID_CLAIM),
        ({"aud": {"a": 1}}, Reason.INVALID_CLAIM),
        ({"cnf": {"jkt": "abc"}}, Reason.KEY_BOUND),
        ({"token_type": "DPoP"}, Reason.WRONG_TYPE),
        ({"token_type": "refresh_token"}, Reason.WRONG_TYPE),
        ({"token_type": 1}, Reason.WRONG_TYPE),
        ({"sub": 5}, Reason.INVALID_CLAIM),
        ({"client_id": ""}, Reason.INVALID_CLAIM),
        ({"scope": ["read"]}, Reason.INVALID_CLAIM),
    ],
)
def test_active_but_not_acceptable(overrides: dict[str, Any], reason: Reason) -> None:
    with pytest.raises(InvalidTokenError) as caught:
        check_answer(answer(**overrides), SETTINGS, NOW, "fp")
    assert caught.value.reason is reason


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", "access_token", None])
def test_bearer_token_types(token_type: str | None) -> None:
    assert check_answer(answer(token_type=token_type), SETTINGS, NOW, "fp").subject == "user-1"


def test_optional_members_may_be_absent() -> None:
    token = check_answer({"active": True}, SETTINGS, NOW, "fp")
    assert (token.subject, token.client_id, token.scopes, token.expires_at) == (
        None,
        None,
        frozenset(),
        None,
    )


def test_fields_outside_the_allowlist_are_dropped() -> None:
    extra = answer(email="alice@example.com", api_key="sk_live_canary", internal_id=42, jti="j-1")
    token = check_answer(extra, SETTINGS, NOW, "fp")
    assert set(token.claims) == set(answer()) | {"jti"}
    assert "sk_live_canary" not in repr(dict(token.claims))


def test_the_allowlist_is_configurable_but_keeps_the_rule_fields() -> None:
    settings = Settings(
        issuer=ISSUER,
        audience=(AUDIENCE,),
        client_id="rs",
        client_secret=Secret("x"),
        introspection_fields=("groups",),
    )
    assert settings.introspection_fields == RULE_FIELDS | {"groups"}
    token = check_answer(answer(groups=["admins"], username="alice"), settings, NOW, "fp")
    assert token.claims["groups"] == ("admins",)  # read-only all the way down
    assert "username" not in token.claims


def test_filter_fields() -> None:
    assert filter_fields({"a": 1, "b": 2, "c": 3}, ("a", "c", "z")) == {"a": 1, "c": 3}
