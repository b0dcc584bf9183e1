"""DPoP proofs and key binding (oauth_shield._dpop), and the client side in oauth_shield.testing."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import httpx
import pytest

from oauth_shield import InvalidTokenError, Reason
from oauth_shield import _dpop as dpop
from oauth_shield._dpop import (
    DPoPSettings,
    check_binding,
    confirmation_jkt,
    single_proof,
)
from oauth_shield._errors import ConfigurationError, InvalidDPoPProofError, UseDPoPNonceError
from oauth_shield._keys import import_public_jwk
from oauth_shield._nonce import NonceIssuer
from oauth_shield.testing import LocalIssuer, b64url
from tests.conftest import NOW
from tests.core.test_layering import reachable
from tests.dpop import TOKEN, URL, check, client_key, proof, refused

ALGS = ["ES256", "RS256", "PS256", "EdDSA"]
REQUIRED = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


@pytest.fixture(autouse=True)
def _no_remembered_keys() -> Iterator[None]:
    dpop._KEYS.clear()
    yield
    dpop._KEYS.clear()


def rfc7638(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3 written out: required members, sorted, no whitespace, SHA-256."""
    members = {name: jwk[name] for name in REQUIRED[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


# --- accepted proofs ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_a_proof_of_each_default_algorithm_is_accepted(alg: str) -> None:
    key = client_key(alg)
    accepted = check(proof(key))
    assert accepted.jkt == key.jkt == rfc7638(key.public_jwk)
    assert accepted.iat == NOW
    assert accepted.expires_at == NOW + 60
    assert len(accepted.replay_key) == 16


@pytest.mark.parametrize(
    ("jwk", "thumbprint"),
    [
        pytest.param(
            {
                "kty": "RSA",
                "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFF"
                "xuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_"
                "RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvR"
                "L5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xB"
                "niIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
                "e": "AQAB",
                "alg": "RS256",
                "kid": "2011-04-29",
            },
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
            id="rfc7638-3.1",
        ),
        pytest.param(
            {
                "kty": "EC",
                "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
                "crv": "P-256",
            },
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
            id="rfc9449-6.1",
        ),
    ],
)
def test_the_thumbprint_is_rfc7638(jwk: dict[str, Any], thumbprint: str) -> None:
    alg = "RS256" if jwk["kty"] == "RSA" else "ES256"
    imported = import_public_jwk(jwk, frozenset({alg}))
    assert not isinstance(imported, str)
    assert imported.thumbprint == thumbprint == rfc7638(jwk)


def test_the_thumbprint_ignores_optional_members_and_their_order() -> None:
    key = client_key()
    decorated = {
        "use": "sig",
        "kid": "k1",
        "alg": "ES256",
        **dict(reversed(key.public_jwk.items())),
    }
    assert check(proof(key, header={"jwk": decorated})).jkt == key.jkt


def test_the_replay_key_names_the_key_and_the_jti_only() -> None:
    es, other = client_key(), client_key(name="other")
    first = check(proof(es, jti="same-jti")).replay_key
    assert check(proof(es, jti="same-jti", url=URL + "/x"), url=URL + "/x").replay_key == first
    assert check(proof(es, jti="another")).replay_key != first
    assert check(proof(other, jti="same-jti")).replay_key != first
    assert b"same-jti" not in first


@pytest.mark.parametrize("typ", ["dpop+jwt", "DPoP+JWT", "application/dpop+jwt"])
def test_typ_is_a_media_type(typ: str) -> None:
    # RFC 7515 §4.1.9: compared case-insensitively, "application/" may be left out.
    check(proof(header={"typ": typ}))


def test_without_a_token_ath_is_not_needed() -> None:
    check(proof(access_token=None), token=None)


def test_the_window_and_leeway() -> None:
    for offset in (-60, 60, 0.5, -0.5):
        check(proof(iat=NOW + offset))
    for offset in (-61, 61, -60.5):
        refused(proof(iat=NOW + offset), Reason.DPOP_IAT_OUT_OF_WINDOW)
    wider = DPoPSettings(iat_window=30, leeway=5)
    check(proof(iat=NOW - 35), settings=wider)
    refused(proof(iat=NOW - 36), Reason.DPOP_IAT_OUT_OF_WINDOW, settings=wider)
    assert check(proof(iat=NOW + 10), settings=wider).expires_at == NOW + 45


# --- nonces --------------------------------------------------------------------------------


def test_server_nonces() -> None:
    nonces = NonceIssuer(b"n" * 32)
    current = nonces.current(NOW)
    check(proof(nonce=current), nonces=nonces)
    for stale in (None, "", "not-a-nonce", NonceIssuer(b"m" * 32).current(NOW)):
        with pytest.raises(UseDPoPNonceError) as caught:
            check(proof(nonce=stale), nonces=nonces)
        assert caught.value.headers()["DPoP-Nonce"] == current
        assert caught.value.reason is Reason.DPOP_NONCE
    # Without nonces configured, a nonce claim is ignored.
    check(proof(nonce="whatever"))


def test_a_bad_proof_without_nonce_is_refused_as_bad_not_asked_for_a_nonce() -> None:
    nonces = NonceIssuer(b"n" * 32)
    refused(proof(method="POST"), Reason.DPOP_METHOD_MISMATCH, nonces=nonces)


# --- the remembered keys -------------------------------------------------------------------


def test_a_key_is_imported_once_per_header(monkeypatch: pytest.MonkeyPatch) -> None:
    imports: list[object] = []

    def counting(jwk: object, algorithms: frozenset[str]) -> Any:
        imports.append(jwk)
        return import_public_jwk(jwk, algorithms)

    monkeypatch.setattr(dpop, "import_public_jwk", counting)
    key = client_key()
    bad = proof(key).rsplit(".", 1)[0] + "." + b64url(b"\x01" * 64)
    refused(bad, Reason.DPOP_BAD_SIGNATURE)
    refused(bad, Reason.DPOP_BAD_SIGNATURE)
    assert len(imports) == 2  # an unverified header is never remembered
    for _ in range(5):
        check(proof(key))
    assert len(imports) == 3
    refused(bad, Reason.DPOP_BAD_SIGNATURE)  # the key is remembered, the signature still checked
    assert len(imports) == 3


def test_a_remembered_key_still_obeys_the_allowlist() -> None:
    check(proof())
    refused(proof(), Reason.DPOP_UNSUPPORTED_ALGORITHM, settings=DPoPSettings(algorithms="RS256"))


def test_the_remembered_keys_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dpop, "_KEY_MEMO_SIZE", 2)
    for name in "abc":
        check(proof(client_key(name=name)))
        assert len(dpop._KEYS) <= 2


# --- settings --------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = DPoPSettings()
    assert settings.algorithms == {"ES256", "RS256", "PS256", "EdDSA"}
    assert (settings.iat_window, settings.leeway, settings.max_proof_size) == (60, 0, 8192)
    assert (settings.public_url, settings.forwarded, settings.forwarded_hops) == (None, "none", 1)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"algorithms": ["HS256"]}, "dpop_algorithms"),
        ({"algorithms": ["none"]}, "dpop_algorithms"),
        ({"algorithms": []}, "dpop_algorithms"),
        ({"iat_window": 0}, "dpop_iat_window"),
        ({"iat_window": 3600}, "dpop_iat_window"),
        ({"iat_window": float("nan")}, "dpop_iat_window"),
        ({"leeway": -1}, "dpop_leeway"),
        ({"max_proof_size": 100}, "dpop_max_proof_size"),
        ({"public_url": "ftp://api.test"}, "dpop_public_url"),
        ({"public_url": "https://api.test/?q=1"}, "dpop_public_url"),
        ({"public_url": "https://user@api.test"}, "dpop_public_url"),
        ({"forwarded": "all"}, "dpop_forwarded"),
        ({"forwarded_hops": 0}, "dpop_forwarded_hops"),
    ],
)
def test_bad_settings_are_refused_by_name(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        DPoPSettings(**options)


def test_the_public_url_is_normalised() -> None:
    assert DPoPSettings(public_url="HTTPS://API.test:443").public_url == "https://api.test/"


# --- the DPoP header -----------------------------------------------------------------------


def test_single_proof() -> None:
    assert single_proof([]) is None
    assert single_proof(["a.b.c"]) == "a.b.c"
    assert single_proof([" a.b.c\t"]) == "a.b.c"
    for values, reason in (
        (["a.b.c", "d.e.f"], Reason.DPOP_MULTIPLE),
        (["a.b.c, d.e.f"], Reason.DPOP_MULTIPLE),
        ([""], Reason.DPOP_MALFORMED),
    ):
        with pytest.raises(InvalidDPoPProofError) as caught:
            single_proof(values)
        assert caught.value.reason is reason


# --- the token's binding ----------------------------------------------------------------------


def test_confirmation_jkt() -> None:
    jkt = client_key().jkt
    assert confirmation_jkt({"sub": "x"}) is None
    assert confirmation_jkt({"cnf": {"jkt": jkt}}) == jkt
    assert confirmation_jkt(MappingProxyType({"cnf": MappingProxyType({"jkt": jkt})})) == jkt
    for cnf in (
        {"x5t#S256": jkt},  # bound to a TLS client certificate (RFC 8705): cannot be checked here
        {"jkt": jkt[:-1]},
        {"jkt": jkt + "A"},
        {"jkt": 42},
        {"jkt": jkt.replace(jkt[0], "+")},
        jkt,
        None,
        [jkt],
    ):
        with pytest.raises(InvalidTokenError) as caught:
            confirmation_jkt({"cnf": cnf})
        assert caught.value.reason is Reason.KEY_BOUND


def test_check_binding() -> None:
    accepted = check(proof())
    check_binding(accepted, client_key().jkt)
    for jkt, reason in (
        (None, Reason.DPOP_NOT_BOUND),
        (client_key(name="other").jkt, Reason.DPOP_KEY_MISMATCH),
    ):
        with pytest.raises(InvalidTokenError) as caught:
            check_binding(accepted, jkt)
        assert caught.value.reason is reason


# --- layering --------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["_dpop", "_urls", "_nonce"])
def test_the_dpop_core_is_pure(module: str) -> None:
    package, outside = reachable(module)
    assert not package & {"_http", "_keyset", "_discovery", "_singleflight", "_validator"}
    assert not outside & {"asyncio", "httpx", "aiocache", "quart", "flask", "starlette"}
    assert outside  # the checker sees the imports


# --- the client side: testing.DPoPKey and LocalIssuer --------------------------------------


def test_make_proof_is_what_rfc_9449_describes() -> None:
    key = client_key()
    made = key.proof("post", "https://api.test/a?b=c#d", access_token=TOKEN, nonce="n1")
    header, payload = (json.loads(_decoded(part)) for part in made.split(".")[:2])
    assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
    assert set(key.public_jwk) == {"kty", "crv", "x", "y"}
    assert payload["htm"] == "post"
    assert payload["htu"] == "https://api.test/a"
    assert payload["ath"] == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"  # RFC 9449 §7.1
    assert payload["iat"] == NOW
    assert payload["nonce"] == "n1"
    assert len(payload["jti"]) >= 16
    assert payload["jti"] != json.loads(_decoded(key.proof("GET", URL).split(".")[1]))["jti"]


def _decoded(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("alg", ALGS)
def test_the_local_issuer_binds_tokens_to_a_proof_key(alg: str) -> None:
    issuer = LocalIssuer(clock=lambda: NOW)
    key = client_key(alg)
    with httpx.Client(transport=issuer.transport()) as client:
        form = {"grant_type": "client_credentials"}
        answer = client.post(
            f"{issuer.issuer}/token",
            data=form,
            headers={"DPoP": key.proof("POST", f"{issuer.issuer}/token")},
        ).json()
        wrong = client.post(
            f"{issuer.issuer}/token", data=form, headers={"DPoP": key.proof("POST", URL)}
        )
    assert answer["token_type"] == "DPoP"
    token = answer["access_token"]
    jkt = confirmation_jkt(issuer.minted[token])
    check_binding(check(proof(key, access_token=token), token=token), jkt)
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_dpop_proof"}


def test_the_local_issuer_introspects_a_bound_opaque_token() -> None:
    issuer = LocalIssuer(clock=lambda: NOW)
    key = client_key()
    token = issuer.dpop_token(key, opaque=True)
    answer = issuer.handle(
        httpx.Request("POST", f"{issuer.issuer}/introspect", data={"token": token})
    ).json()
    assert confirmation_jkt(answer) == key.jkt
    assert confirmation_jkt(issuer.minted[issuer.dpop_token(key)]) == key.jkt
