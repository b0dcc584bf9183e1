"""The DPoP errors and the DPoP challenge (oauth_shield._errors; RFC 9449 §7.1, §9, §12.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield._errors import (
    AuthError,
    InvalidDPoPProofError,
    Reason,
    UseDPoPNonceError,
    render_challenge,
    render_dpop_challenge,
)

DPOP_REASONS = [reason for reason in Reason if reason.value.startswith("dpop_")]


@pytest.mark.parametrize("reason", DPOP_REASONS, ids=lambda r: r.value)
def test_invalid_dpop_proof(reason: Reason) -> None:
    error = InvalidDPoPProofError(reason)
    assert isinstance(error, AuthError)
    assert (error.error, error.status_code, error.reason) == ("invalid_dpop_proof", 401, reason)
    expected = "A DPoP proof is required" if reason is Reason.DPOP_MISSING else None
    assert error.description == (expected or "The DPoP proof is invalid")
    assert error.www_authenticate("api") == (
        f'DPoP realm="api", error="invalid_dpop_proof", error_description="{error.description}"'
    )
    assert error.headers() == {"WWW-Authenticate": error.www_authenticate()}
    assert error.body() == {"error": "invalid_dpop_proof", "error_description": error.description}
    assert repr(error) == f"InvalidDPoPProofError(reason={reason.value!r})"


def test_use_dpop_nonce_carries_the_nonce() -> None:
    error = UseDPoPNonceError(nonce="eyJ7S_zG.eyJH0-Z.HX4w-7v")
    assert (error.error, error.status_code, error.reason) == (
        "use_dpop_nonce",
        401,
        Reason.DPOP_NONCE,
    )
    # RFC 9449 §9, Figure 24
    assert error.headers() == {
        "WWW-Authenticate": 'DPoP error="use_dpop_nonce", '
        'error_description="Resource server requires nonce in DPoP proof"',
        "DPoP-Nonce": "eyJ7S_zG.eyJH0-Z.HX4w-7v",
    }
    assert "DPoP-Nonce" not in UseDPoPNonceError().headers()


@pytest.mark.parametrize("nonce", ["", "a b", 'a"b', "a\\b", "a\r\nSet-Cookie: x=1", "é"])
def test_a_nonce_that_would_break_the_header_is_left_out(nonce: str) -> None:
    assert "DPoP-Nonce" not in UseDPoPNonceError(nonce=nonce).headers()


def test_render_dpop_challenge() -> None:
    assert render_dpop_challenge() == "DPoP"
    assert render_dpop_challenge(algs=["ES256", "PS256"]) == 'DPoP algs="ES256 PS256"'
    # RFC 9449 §7.1, Figure 20
    assert (
        render_dpop_challenge(
            error="invalid_token", description="Invalid DPoP key binding", algs="ES256"
        )
        == 'DPoP error="invalid_token", error_description="Invalid DPoP key binding", algs="ES256"'
    )
    assert render_dpop_challenge(realm="api", scope=["read"], algs=["ES256"]) == (
        'DPoP realm="api", scope="read", algs="ES256"'
    )
    assert render_dpop_challenge(algs=['ES256"', "bad alg", "EdDSA"]) == 'DPoP algs="EdDSA"'


def test_the_bearer_challenge_is_unchanged() -> None:
    assert render_challenge() == "Bearer"
    assert render_challenge(realm="api", error="invalid_token", scope="a b") == (
        'Bearer realm="api", error="invalid_token", scope="a b"'
    )


@given(
    st.text(max_size=20),
    st.text(max_size=20),
    st.lists(st.text(max_size=8), max_size=4),
)
def test_nothing_breaks_out_of_the_challenge(realm: str, description: str, algs: list[str]) -> None:
    header = render_dpop_challenge(realm=realm, description=description, algs=algs)
    assert header.startswith("DPoP")
    assert "\r" not in header and "\n" not in header
    assert header.count('"') % 2 == 0


def test_the_challenge_keywords_of_the_bearer_errors_are_taken() -> None:
    # scope (RFC 6750 §3) and resource_metadata (RFC 9728 §5.1) go into a DPoP challenge too.
    metadata = "https://api.test/.well-known/oauth-protected-resource"
    error = UseDPoPNonceError(nonce="n-1")
    assert error.headers("api", scope=["read"], resource_metadata=metadata) == {
        "WWW-Authenticate": 'DPoP realm="api", error="use_dpop_nonce", '
        'error_description="Resource server requires nonce in DPoP proof", scope="read", '
        f'resource_metadata="{metadata}"',
        "DPoP-Nonce": "n-1",
    }
    assert isinstance(error, InvalidDPoPProofError)
    assert render_dpop_challenge(resource_metadata='a"b') == "DPoP"
