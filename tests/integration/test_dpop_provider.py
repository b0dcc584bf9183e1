"""DPoP-bound tokens from a real authorization server (oidc-provider, ``features.dPoP``).

Our client-side proof maker gets tokens bound to its key from the provider's token endpoint;
the proofs it then makes for a resource request pass ``check_proof``, and their key matches
the ``cnf.jkt`` the provider put in the JWT and in the introspection answer of an opaque
token. The hostile cases use the same real tokens.
"""

from __future__ import annotations

import hashlib
import time

import pytest

from oauth_shield import InvalidTokenError, Reason
from oauth_shield._dpop import DPoPSettings, Proof, check_binding, check_proof, confirmation_jkt
from oauth_shield._errors import AuthError
from oauth_shield._replay import MemoryReplayStore
from oauth_shield.testing import DPoPKey
from tests.provider import OIDCProvider

from .conftest import claims_of, header_of

RESOURCE = "https://api.example.test/orders"


@pytest.fixture(scope="module")
def es256() -> DPoPKey:
    return DPoPKey("ES256")


def at_the_api(proof: str, token: str) -> Proof:
    """The API's check of a GET to RESOURCE with this token and proof."""
    return check_proof(
        proof,
        method="GET",
        url=RESOURCE,
        token_digest=hashlib.sha256(token.encode()).digest(),
        now=time.time(),
        settings=DPoPSettings(),
    )


def resource_proof(key: DPoPKey, token: str) -> Proof:
    """A proof by ``key`` for a GET to RESOURCE with this token, as the API checks it."""
    return at_the_api(key.proof("GET", RESOURCE + "?page=1", access_token=token), token)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_a_bound_jwt_and_a_proof_for_it(provider: OIDCProvider, alg: str) -> None:
    key = DPoPKey(alg)
    answer = provider.dpop_token(key)
    token = answer["access_token"]
    assert answer["token_type"] == "DPoP"
    assert header_of(token)["typ"] == "at+jwt"
    jkt = confirmation_jkt(claims_of(token))
    assert jkt == key.jkt  # the provider's RFC 7638 thumbprint is ours
    check_binding(resource_proof(key, token), jkt)


def test_a_bound_opaque_token_and_its_introspection(provider: OIDCProvider, es256: DPoPKey) -> None:
    answer = provider.dpop_token(es256, "client-dpop-opaque")
    token = answer["access_token"]
    assert token.count(".") == 0
    introspected = provider.introspect(token)
    assert introspected["active"] is True
    assert introspected["token_type"] == "DPoP"
    jkt = confirmation_jkt(introspected)
    assert jkt == es256.jkt
    check_binding(resource_proof(es256, token), jkt)


def test_the_provider_needs_a_proof_for_these_clients(provider: OIDCProvider) -> None:
    with pytest.raises(RuntimeError, match="400"):
        provider.token("client-dpop")
    # ...and a plain client's token carries no binding.
    assert confirmation_jkt(claims_of(provider.token("client-es256"))) is None


def test_hostile_uses_of_real_bound_tokens(provider: OIDCProvider, es256: DPoPKey) -> None:
    token = provider.dpop_token(es256)["access_token"]
    other_token = provider.dpop_token(es256)["access_token"]
    thief = DPoPKey("ES256")
    jkt = confirmation_jkt(claims_of(token))

    # A thief's own proof for the stolen token: its key is not the one the token is bound to.
    with pytest.raises(InvalidTokenError) as caught:
        check_binding(resource_proof(thief, token), jkt)
    assert caught.value.reason is Reason.DPOP_KEY_MISMATCH

    # The holder's proof for another of its tokens does not carry this one.
    def refused(proof: str, reason: Reason) -> None:
        with pytest.raises(AuthError) as refusal:
            at_the_api(proof, token)
        assert refusal.value.reason is reason
        assert token not in str(refusal.value.headers()) and proof not in repr(refusal.value)

    refused(es256.proof("GET", RESOURCE, access_token=other_token), Reason.DPOP_ATH_MISMATCH)
    refused(es256.proof("POST", RESOURCE, access_token=token), Reason.DPOP_METHOD_MISMATCH)
    refused(es256.proof("GET", RESOURCE + "/", access_token=token), Reason.DPOP_URL_MISMATCH)
    # The proof the client made for the token endpoint is no good at the API.
    refused(es256.proof("POST", f"{provider.issuer}/token"), Reason.DPOP_METHOD_MISMATCH)
    refused(
        es256.proof("GET", RESOURCE, access_token=token, iat=time.time() - 120),
        Reason.DPOP_IAT_OUT_OF_WINDOW,
    )

    # The same proof twice: the replay store refuses the second use.
    store = MemoryReplayStore()
    proof = es256.proof("GET", RESOURCE, access_token=token)
    for expected in (True, False):
        accepted = at_the_api(proof, token)
        assert store.check(accepted.replay_key, accepted.expires_at, time.time()) is expected
