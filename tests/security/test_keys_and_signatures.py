"""SECURITY-CASES classes 3 (key selection, RFC 8725 §3.10) and 4 (signature values)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from oauth_shield import Reason, TokenValidator
from oauth_shield.testing import LocalIssuer, SigningKey, b64url

from .conftest import Hostile, header_for, raw_token

# --- class 3: key selection -------------------------------------------------------------

ATTACKER = "https://attacker.test"


@pytest.fixture(scope="module")
def attacker_key() -> SigningKey:
    return SigningKey("RS256", kid="attacker")


@pytest.mark.parametrize(
    "embedded",
    [
        lambda key: {"jwk": key.jwk},
        lambda key: {"jwk": key.jwk, "kid": None},
        lambda key: {"jku": f"{ATTACKER}/jwks", "kid": key.kid},
        lambda key: {"jku": f"{ATTACKER}/jwks", "kid": None},
        lambda key: {"x5u": f"{ATTACKER}/cert.pem"},
        lambda key: {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
    ],
    ids=["jwk", "jwk-no-kid", "jku", "jku-no-kid", "x5u", "x5c"],
)
async def test_keys_named_by_the_token_are_never_used_or_fetched(
    hostile: Hostile, issuer: LocalIssuer, attacker_key: SigningKey, embedded: object
) -> None:
    header = header_for(attacker_key, **embedded(attacker_key))  # type: ignore[operator]
    token = raw_token(header, issuer.claims(scope="read admin"), attacker_key)
    await hostile(token)  # refused, whatever the reason: the attacker's key is not ours
    fetched = set(issuer.requests)
    assert fetched <= {"/.well-known/openid-configuration", "/jwks"}, fetched


async def test_our_kid_with_an_embedded_attacker_key(
    hostile: Hostile,
    issuer: LocalIssuer,
    attacker_key: SigningKey,
    signing_keys: dict[str, SigningKey],
) -> None:
    header = {
        "alg": "RS256",
        "typ": "at+jwt",
        "kid": signing_keys["RS256"].kid,
        "jwk": attacker_key.jwk,
    }
    await hostile(raw_token(header, issuer.claims(), attacker_key), Reason.BAD_SIGNATURE)


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "/dev/zero",
        "' OR '1'='1' --",
        "$(curl attacker.test)",
        "`id`",
        "kid\r\nX-Injected: yes",
        "kid\nINFO fake log line",
        "%00",
        "\u202ekid",
        "https://attacker.test/jwks",
    ],
)
async def test_kid_injection_is_just_an_unknown_kid(
    hostile: Hostile,
    issuer: LocalIssuer,
    signing_keys: dict[str, SigningKey],
    kid: str,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    key = signing_keys["RS256"]
    await hostile(raw_token(header_for(key, kid=kid), issuer.claims(), key), Reason.UNKNOWN_KID)
    # An unknown kid comes from the token: it is never written to a log.
    assert kid not in "\n".join(record.getMessage() for record in all_logs.records)


@pytest.mark.parametrize(
    "kid",
    [123, 1.5, True, ["rs256-key"], {"kid": "rs256-key"}, None, "", "k" * 257],
    ids=["int", "float", "bool", "list", "object", "null", "empty", "too-long"],
)
async def test_malformed_kid(
    hostile: Hostile, issuer: LocalIssuer, signing_keys: dict[str, SigningKey], kid: object
) -> None:
    key = signing_keys["RS256"]
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    await hostile(raw_token(header, issuer.claims(), key), Reason.MALFORMED_TOKEN)


async def test_unknown_kid(hostile: Hostile, issuer: LocalIssuer) -> None:
    stranger = SigningKey("ES256", kid="not-published")
    await hostile(raw_token(header_for(stranger), issuer.claims(), stranger), Reason.UNKNOWN_KID)


async def test_missing_kid_selects_the_only_key_for_the_algorithm(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    token = issuer.token(alg="ES256", header={"kid": None})
    assert (await validator.validate(token)).subject == "user-1"


async def test_missing_kid_with_two_candidate_keys_is_ambiguous(
    hostile: Hostile, issuer: LocalIssuer
) -> None:
    issuer.published.append(SigningKey("ES256", kid="second-es256").jwk)
    await hostile(issuer.token(alg="ES256", header={"kid": None}), Reason.AMBIGUOUS_KEY)


async def test_duplicate_kid_in_the_key_set_verifies_nothing(
    hostile: Hostile, issuer: LocalIssuer, signing_keys: dict[str, SigningKey]
) -> None:
    twin = SigningKey("ES256", kid=signing_keys["ES256"].kid)
    issuer.published.append(twin.jwk)
    await hostile(issuer.token(alg="ES256"), Reason.AMBIGUOUS_KEY)
    await hostile(twin.sign(header_for(twin), issuer.claims()), Reason.AMBIGUOUS_KEY)


# --- class 4: signature values ---------------------------------------------------------

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


def _with_signature(token: str, signature: bytes) -> str:
    return f"{token.rsplit('.', 1)[0]}.{b64url(signature)}"


def _signature(token: str) -> bytes:
    import base64

    part = token.rsplit(".", 1)[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize(
    "forge",
    [
        lambda sig: b"\x00" * 64,
        lambda sig: b"\x00" * 32 + sig[32:],
        lambda sig: sig[:32] + b"\x00" * 32,
        lambda sig: P256_ORDER.to_bytes(32, "big") * 2,
        lambda sig: sig[:32] + P256_ORDER.to_bytes(32, "big"),
        lambda sig: (
            (P256_ORDER + int.from_bytes(sig[:32], "big")).to_bytes(33, "big")[1:] + sig[32:]
        ),
        lambda sig: b"\xff" * 64,
        lambda sig: sig[:63],
        lambda sig: sig + b"\x00",
        lambda sig: b"\x00" + sig,
        lambda sig: encode_dss_signature(
            int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        ),
        lambda sig: b"",
    ],
    ids=[
        "zeros",
        "r-zero",
        "s-zero",
        "r-s-order",
        "s-order",
        "r-plus-order-truncated",
        "all-ff",
        "short",
        "long",
        "prefixed",
        "der",
        "empty",
    ],
)
async def test_degenerate_ecdsa_signatures(
    hostile: Hostile, issuer: LocalIssuer, forge: object
) -> None:
    token = issuer.token(alg="ES256")
    await hostile(_with_signature(token, forge(_signature(token))), Reason.BAD_SIGNATURE)  # type: ignore[operator]


@pytest.mark.parametrize(
    "forge",
    [
        lambda sig, n: b"\x00" * 256,
        lambda sig, n: (1).to_bytes(256, "big"),
        lambda sig, n: (n - 1).to_bytes(256, "big"),
        lambda sig, n: n.to_bytes(256, "big"),
        lambda sig, n: (int.from_bytes(sig, "big") + n).to_bytes(257, "big"),
        lambda sig, n: sig[:255],
        lambda sig, n: sig + b"\x00",
        lambda sig, n: b"\x00" + sig[:255],
        lambda sig, n: b"\xff" * 256,
    ],
    ids=["zero", "one", "n-minus-1", "n", "sig-plus-n", "short", "long", "shifted", "all-ff"],
)
async def test_degenerate_rsa_signatures(
    hostile: Hostile, issuer: LocalIssuer, signing_keys: dict[str, SigningKey], forge: object
) -> None:
    token = issuer.token(alg="RS256")
    modulus = signing_keys["RS256"].private.public_key().public_numbers().n
    await hostile(_with_signature(token, forge(_signature(token), modulus)), Reason.BAD_SIGNATURE)  # type: ignore[operator]


@pytest.mark.parametrize(
    "forge",
    [
        lambda sig: b"\x00" * 64,
        lambda sig: sig[:63],
        lambda sig: sig + b"\x00",
        # s + L: the same point equation holds, but s is not canonical (RFC 8032 §5.1.7).
        lambda sig: (
            sig[:32] + (int.from_bytes(sig[32:], "little") + ED25519_ORDER).to_bytes(32, "little")
        ),
    ],
    ids=["zeros", "short", "long", "s-plus-order"],
)
async def test_degenerate_eddsa_signatures(
    hostile: Hostile, issuer: LocalIssuer, forge: object
) -> None:
    token = issuer.token(alg="EdDSA")
    await hostile(_with_signature(token, forge(_signature(token))), Reason.BAD_SIGNATURE)  # type: ignore[operator]


async def test_valid_signature_over_other_content(hostile: Hostile, issuer: LocalIssuer) -> None:
    first, second = issuer.token(alg="ES256"), issuer.token(alg="ES256", sub="admin")
    await hostile(_with_signature(second, _signature(first)), Reason.BAD_SIGNATURE)


async def test_a_high_s_twin_is_accepted_as_the_same_claims(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    # ECDSA signatures are malleable: (r, n - s) verifies wherever (r, s) does (FIPS 186-5 §6.4.2;
    # RFC 7518 §3.4 asks for no low-S rule, and issuers produce both halves). The twin is a
    # different token string with the same claims, so a replay list keyed on the token string
    # (or its digest, or the fingerprint) misses it; docs/validation.md says to key on `jti`.
    token = issuer.token(alg="ES256")
    signature = _signature(token)
    high_s = (P256_ORDER - int.from_bytes(signature[32:], "big")).to_bytes(32, "big")
    twin = _with_signature(token, signature[:32] + high_s)
    assert twin != token
    original, again = await validator.validate(token), await validator.validate(twin)
    assert original.to_dict() == again.to_dict() == issuer.minted[token]
    assert original.fingerprint != again.fingerprint
