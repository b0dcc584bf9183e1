"""DPoP in the pure parts: the DPoP scheme in credentials, both challenges, the cnf rules for
JWT claims and introspection answers, AccessToken's binding, the RFC 9728 members."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from oauth_shield import (
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    ProtectedResource,
    Reason,
    TemporarilyUnavailableError,
    UseDPoPNonceError,
)
from oauth_shield._bearer import credentials, error_response
from oauth_shield._claims import check_claims
from oauth_shield._config import Settings
from oauth_shield._introspection import check_answer
from tests.conftest import AUDIENCE, ISSUER, NOW

TOKEN = "abc.def.ghi"
JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # RFC 9449 §6.1
ALGS = ("ES256", "PS256")


@pytest.mark.parametrize(
    ("authorization", "mode", "expected"),
    [
        ([f"DPoP {TOKEN}"], "allowed", ("dpop", TOKEN)),
        ([f"dpop {TOKEN}"], "required", ("dpop", TOKEN)),  # schemes are case-insensitive
        ([f"Bearer {TOKEN}"], "allowed", ("bearer", TOKEN)),
        ([f"Bearer {TOKEN}"], "required", MissingTokenError),
        ([f"DPoP {TOKEN}"], "disabled", MissingTokenError),  # today: an unknown scheme
        ([], "required", MissingTokenError),
        ([f"DPoP {TOKEN}", f"DPoP {TOKEN}"], "allowed", InvalidRequestError),
        ([f"DPoP {TOKEN}, Bearer x"], "allowed", InvalidRequestError),  # folded by WSGI
        (["DPoP a b"], "allowed", InvalidRequestError),
    ],
)
def test_the_dpop_scheme(authorization: list[str], mode: Any, expected: Any) -> None:
    if isinstance(expected, tuple):
        assert tuple(credentials(authorization, dpop=mode)) == expected
    else:
        with pytest.raises(expected):
            credentials(authorization, dpop=mode)


def test_dpop_tokens_come_in_the_header_only() -> None:
    with pytest.raises(InvalidRequestError):  # a second credential, whatever the mode
        credentials([f"DPoP {TOKEN}"], query=[TOKEN], allow_query=True, dpop="allowed")
    with pytest.raises(MissingTokenError):  # the query carries bearer tokens
        credentials([], query=[TOKEN], allow_query=True, dpop="required")
    with pytest.raises(InvalidRequestError):
        credentials([f"Bearer {TOKEN}"], form=[TOKEN], dpop="required")


def challenge(error: Any, **kw: Any) -> str:
    return str(error_response(error, "api", **kw).headers["WWW-Authenticate"])


def test_challenges_in_each_mode() -> None:
    missing = MissingTokenError(Reason.MISSING_TOKEN)
    assert challenge(missing) == 'Bearer realm="api"'
    assert (
        challenge(missing, dpop_algs=ALGS)
        == 'Bearer realm="api", DPoP realm="api", algs="ES256 PS256"'
    )
    assert (
        challenge(missing, dpop_algs=ALGS, bearer=False) == 'DPoP realm="api", algs="ES256 PS256"'
    )
    proof = InvalidDPoPProofError(Reason.DPOP_BAD_SIGNATURE)
    assert challenge(proof, dpop_algs=ALGS) == (
        'Bearer realm="api", DPoP realm="api", error="invalid_dpop_proof", '
        'error_description="The DPoP proof is invalid", algs="ES256 PS256"'
    )
    bearer_error = InvalidTokenError(Reason.KEY_BOUND)
    assert challenge(bearer_error, dpop_algs=ALGS).startswith(
        'Bearer realm="api", error="invalid_token", error_description="The access token is '
        'invalid", DPoP realm="api", algs='
    )
    dpop_request = InvalidTokenError(Reason.DPOP_KEY_MISMATCH)
    dpop_request.scheme = "DPoP"
    assert challenge(dpop_request, dpop_algs=ALGS).startswith(
        'Bearer realm="api", DPoP realm="api", error="invalid_token"'
    )
    required = InvalidTokenError(Reason.EXPIRED)  # a bearer error, DPoP only: on the DPoP one
    assert challenge(required, dpop_algs=ALGS, bearer=False).startswith(
        'DPoP realm="api", error="invalid_token", error_description="The access token expired"'
    )
    step_up = InsufficientScopeError(["pay"])
    step_up.scheme = "DPoP"
    assert 'DPoP realm="api", error="insufficient_scope", error_description=' in challenge(
        step_up, dpop_algs=ALGS
    )
    down = error_response(TemporarilyUnavailableError(Reason.REPLAY_STORE_UNAVAILABLE), "api")
    assert down.status == 503 and "Retry-After" in down.headers
    nonce = error_response(UseDPoPNonceError(nonce="n" * 22), "api", dpop_algs=ALGS)
    assert nonce.headers["DPoP-Nonce"] == "n" * 22
    assert nonce.headers["WWW-Authenticate"].startswith(
        'Bearer realm="api", DPoP realm="api", error="use_dpop_nonce"'
    )


def settings(dpop: Any) -> Settings:
    return Settings(issuer=ISSUER, audience=(AUDIENCE,), dpop=dpop)


def claims(**extra: Any) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": NOW + 60,
        "iat": NOW,
        "sub": "s",
        "client_id": "c",
        "jti": "j",
        **extra,
    }


HEADER = {"typ": "at+jwt"}


def test_cnf_in_jwt_claims() -> None:
    bound = claims(cnf={"jkt": JKT})
    with pytest.raises(InvalidTokenError) as caught:
        check_claims(HEADER, bound, settings("disabled"), NOW, "f")
    assert caught.value.reason is Reason.KEY_BOUND
    token = check_claims(HEADER, bound, settings("allowed"), NOW, "f")
    assert token.jkt == JKT and token.dpop_bound
    for cnf in ({"x5t#S256": JKT}, {"jkt": JKT[:-1]}, {"jkt": 1}, "jkt", None):
        with pytest.raises(InvalidTokenError) as refused:
            check_claims(HEADER, claims(cnf=cnf), settings("required"), NOW, "f")
        assert refused.value.reason is Reason.KEY_BOUND
    assert check_claims(HEADER, claims(), settings("allowed"), NOW, "f").jkt is None


def test_cnf_in_introspection_answers() -> None:
    answer = {"active": True, "exp": NOW + 60, "cnf": {"jkt": JKT}, "token_type": "DPoP"}
    with pytest.raises(InvalidTokenError) as caught:
        check_answer(answer, settings("disabled"), NOW, "f")
    assert caught.value.reason is Reason.KEY_BOUND
    token = check_answer(answer, settings("allowed"), NOW, "f")
    assert token.jkt == JKT and token.claims["cnf"]["jkt"] == JKT
    with pytest.raises(InvalidTokenError) as unbound:  # a DPoP type needs the binding
        check_answer({"active": True, "token_type": "DPoP"}, settings("allowed"), NOW, "f")
    assert unbound.value.reason is Reason.WRONG_TYPE


def test_the_binding_survives_pickling() -> None:
    token = check_claims(HEADER, claims(cnf={"jkt": JKT}), settings("allowed"), NOW, "f")
    copy = pickle.loads(pickle.dumps(token))  # noqa: S301 - our own bytes
    assert copy.jkt == JKT and copy.dpop_bound
    assert f"jkt={JKT!r}" in repr(token)


def test_rfc9728_members() -> None:
    base = ProtectedResource()
    done = base.complete(issuer=ISSUER, audience=[AUDIENCE], dpop_algs=ALGS, dpop_required=True)
    document = done.document()
    assert document["dpop_signing_alg_values_supported"] == list(ALGS)
    assert document["dpop_bound_access_tokens_required"] is True
    plain = base.complete(issuer=ISSUER, audience=[AUDIENCE]).document()
    assert "dpop_signing_alg_values_supported" not in plain
    assert "dpop_bound_access_tokens_required" not in plain
