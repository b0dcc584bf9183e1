"""The error tree and the RFC 6750 challenge (oauth_shield._errors)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield._errors import (
    AuthError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    Reason,
    TemporarilyUnavailableError,
    is_scope_token,
    render_challenge,
)

# class, error code, HTTP status, description for most reasons, {reason: special description}
TREE = [
    (MissingTokenError, None, 401, "Authentication required", {}),
    (
        InvalidRequestError,
        "invalid_request",
        400,
        "The request is malformed",
        {Reason.MULTIPLE_CREDENTIALS: "The request carries more than one credential"},
    ),
    (
        InvalidTokenError,
        "invalid_token",
        401,
        "The access token is invalid",
        {
            Reason.EXPIRED: "The access token expired",
            Reason.INVALID_API_KEY: "The API key is invalid",
            Reason.API_KEY_EXPIRED: "The API key expired",
        },
    ),
    (
        TemporarilyUnavailableError,
        "temporarily_unavailable",
        503,
        "The access token cannot be checked right now",
        {},
    ),
]
TREE_IDS = [row[0].__name__ for row in TREE]


@pytest.mark.parametrize(("cls", "error", "status", "default", "special"), TREE, ids=TREE_IDS)
@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_class_attributes_and_fixed_descriptions(
    cls: type[AuthError],
    error: str | None,
    status: int,
    default: str,
    special: dict[Reason, str],
    reason: Reason,
) -> None:
    raised = cls(reason)
    assert (raised.error, raised.status_code, raised.reason) == (error, status, reason)
    assert raised.description == special.get(reason, default)
    assert str(raised) == raised.description
    assert raised.args == (raised.description,)
    assert repr(raised) == f"{cls.__name__}(reason={reason.value!r})"
    assert isinstance(raised, AuthError)


def test_insufficient_scope_attributes() -> None:
    raised = InsufficientScopeError(["write", "read", "admin"])
    assert (raised.error, raised.status_code) == ("insufficient_scope", 403)
    assert raised.reason is Reason.INSUFFICIENT_SCOPE
    assert raised.scopes == ("admin", "read", "write")
    assert str(raised) == "The access token lacks a required scope"
    assert repr(raised) == "InsufficientScopeError(scopes=('admin', 'read', 'write'))"


def test_description_never_depends_on_the_scopes() -> None:
    # The scopes go into their own challenge parameter, never into the sentence.
    assert {InsufficientScopeError([s]).description for s in ("a", "b", "x" * 50)} == {
        "The access token lacks a required scope"
    }


@pytest.mark.parametrize(
    ("error", "realm", "expected"),
    [
        (
            InvalidTokenError(Reason.BAD_SIGNATURE),
            None,
            'Bearer error="invalid_token", error_description="The access token is invalid"',
        ),
        (
            InvalidTokenError(Reason.EXPIRED),
            "api",
            'Bearer realm="api", error="invalid_token", '
            'error_description="The access token expired"',
        ),
        (
            InvalidRequestError(Reason.MALFORMED_REQUEST),
            None,
            'Bearer error="invalid_request", error_description="The request is malformed"',
        ),
        (
            InvalidRequestError(Reason.MULTIPLE_CREDENTIALS),
            "api",
            'Bearer realm="api", error="invalid_request", '
            'error_description="The request carries more than one credential"',
        ),
        (
            InsufficientScopeError(["write", "read"]),
            None,
            'Bearer error="insufficient_scope", '
            'error_description="The access token lacks a required scope", scope="read write"',
        ),
        (
            InsufficientScopeError(["write", "read"]),
            "api",
            'Bearer realm="api", error="insufficient_scope", '
            'error_description="The access token lacks a required scope", scope="read write"',
        ),
        (
            TemporarilyUnavailableError(Reason.KEYS_UNAVAILABLE),
            None,
            'Bearer error="temporarily_unavailable", '
            'error_description="The access token cannot be checked right now"',
        ),
        (
            TemporarilyUnavailableError(Reason.RATE_LIMITED),
            "api",
            'Bearer realm="api", error="temporarily_unavailable", '
            'error_description="The access token cannot be checked right now"',
        ),
    ],
    ids=[
        "invalid_token",
        "invalid_token-expired-realm",
        "invalid_request",
        "invalid_request-multiple-realm",
        "insufficient_scope",
        "insufficient_scope-realm",
        "unavailable",
        "unavailable-realm",
    ],
)
def test_www_authenticate(error: AuthError, realm: str | None, expected: str) -> None:
    assert error.www_authenticate(realm) == expected
    assert error.headers(realm)["WWW-Authenticate"] == expected


@pytest.mark.parametrize("realm", [None, "api"])
def test_missing_token_challenge_has_no_error_code(realm: str | None) -> None:
    challenge = MissingTokenError(Reason.MISSING_TOKEN).www_authenticate(realm)
    assert challenge.startswith("Bearer")
    assert "error=" not in challenge
    assert MissingTokenError(Reason.MISSING_TOKEN).body() == {
        "error_description": "Authentication required"
    }


@pytest.mark.parametrize(("realm", "expected"), [(None, "Bearer"), ("api", 'Bearer realm="api"')])
def test_missing_token_challenge_is_bare(realm: str | None, expected: str) -> None:
    assert MissingTokenError(Reason.MISSING_TOKEN).www_authenticate(realm) == expected


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(5, "5"), (1, "1"), (0, "1"), (-30, "1"), (2.9, "2"), (0.5, "1"), (120, "120")],
)
def test_retry_after_header_is_clamped(retry_after: float, expected: str) -> None:
    error = TemporarilyUnavailableError(Reason.KEYS_UNAVAILABLE, retry_after=retry_after)
    assert error.retry_after == int(expected)
    assert error.headers("api") == {
        "WWW-Authenticate": error.www_authenticate("api"),
        "Retry-After": expected,
    }


def test_default_retry_after() -> None:
    assert TemporarilyUnavailableError(Reason.KEYS_UNAVAILABLE).headers()["Retry-After"] == "5"


@pytest.mark.parametrize("cls", [MissingTokenError, InvalidRequestError, InvalidTokenError])
def test_other_errors_have_no_retry_after(cls: type[AuthError]) -> None:
    assert set(cls(Reason.MALFORMED_TOKEN).headers("api")) == {"WWW-Authenticate"}


def test_body() -> None:
    assert InvalidTokenError(Reason.EXPIRED).body() == {
        "error": "invalid_token",
        "error_description": "The access token expired",
    }


# --- render_challenge ---------------------------------------------------------------------

HOSTILE = ['a"b', "a\\b", "a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "caf\u00e9", "a\x00b", "a\x7fb"]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_render_drops_values_outside_the_rfc6749_sets(value: str) -> None:
    rendered = render_challenge(
        realm=value, error="invalid_token", description=value, scope=[value]
    )
    assert rendered == 'Bearer error="invalid_token"'


def test_render_keeps_legal_values_and_drops_only_illegal_scopes() -> None:
    rendered = render_challenge(realm="my api", scope=["read", "a b", 'x"', "write:all"])
    assert rendered == 'Bearer realm="my api", scope="read write:all"'


def test_render_nothing() -> None:
    assert render_challenge() == "Bearer"
    assert render_challenge(scope=["bad scope"]) == "Bearer"


_PARAM = re.compile(r'(realm|error|error_description|scope)="([^"]*)"')


@given(
    realm=st.none() | st.text(),
    error=st.none() | st.text(),
    description=st.none() | st.text(),
    scope=st.lists(st.text()),
)
def test_render_challenge_cannot_be_broken_out_of(
    realm: str | None, error: str | None, description: str | None, scope: list[str]
) -> None:
    rendered = render_challenge(realm=realm, error=error, description=description, scope=scope)
    assert rendered.startswith("Bearer")
    assert all(" " <= char <= "~" for char in rendered)  # printable ASCII: no CR, LF, controls
    assert rendered.count('"') % 2 == 0
    assert "\\" not in rendered
    # Re-parsing gives back exactly the legal inputs, nothing else.
    params = dict(_PARAM.findall(rendered))
    for name, value in (("realm", realm), ("error", error), ("error_description", description)):
        if value is not None and all(" " <= c <= "~" and c not in '"\\' for c in value):
            assert params.pop(name) == value
    legal_scopes = [s for s in scope if is_scope_token(s)]
    if legal_scopes:
        assert params.pop("scope") == " ".join(legal_scopes)
    assert params == {}
    assert _PARAM.sub("", rendered.removeprefix("Bearer")).replace(",", "").strip() == ""


@pytest.mark.parametrize(
    ("value", "legal"),
    [
        ("read", True),
        ("read:all", True),
        ("api://x/y.read", True),
        ("!", True),
        ("~#$%&'()*+,-./[]^_`{|}", True),
        ("", False),
        (" ", False),
        ("read write", False),
        ('a"b', False),
        ("a\\b", False),
        ("caf\u00e9", False),
        ("a\tb", False),
        ("read\n", False),
        ("\r", False),
        ("\x00", False),
        ("\x7f", False),
        ("\u00a0", False),
    ],
    ids=repr,
)
def test_is_scope_token(value: str, legal: bool) -> None:
    assert is_scope_token(value) is legal
