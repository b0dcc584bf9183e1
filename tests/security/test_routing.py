"""SECURITY-CASES class 15: routing between local checks and the network.

A token that is, or tries to be, a JOSE object is judged here and never sent to the
introspection endpoint when it is malformed: an authorization server that introspects its own
JWTs with a lenient library would call a suffixed JWS active, and a token refused locally would
then be accepted. And no single client can switch introspection off, or spend its budget, for
everyone else (docs/introspection.md, "Fairness").
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauth_shield import InvalidTokenError, Reason, TokenValidator
from oauth_shield._config import DEFAULT_ALGORITHMS
from oauth_shield._jose import parse_compact
from oauth_shield.testing import LocalIssuer, SigningKey, b64url
from tests.conftest import FrozenClock, ValidatorFactory, log_text, refused

PROPERTY = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Lenient:
    """An introspection endpoint that calls anything active (a lenient JOSE library, or none
    at all), except the tokens it is told to answer 500 for and ``junk-`` ones; it records
    what reaches it."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self.seen: list[str] = []
        self.broken: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/introspect":
            return self.issuer.handle(request)
        token = parse_qs(request.content.decode())["token"][0]
        self.seen.append(token)
        if token in self.broken:
            return httpx.Response(500, text="internal error")
        if token.startswith("junk-"):
            return httpx.Response(200, json={"active": False})
        return httpx.Response(200, json={"active": True, **self.issuer.claims()})


Make = Callable[..., TokenValidator]


@pytest.fixture
def lenient(issuer: LocalIssuer) -> Lenient:
    return Lenient(issuer)


@pytest.fixture
def introspecting(make_validator: ValidatorFactory, lenient: Lenient) -> Make:
    def make(**overrides: object) -> TokenValidator:
        options: dict[str, object] = {
            "client_id": "resource-server",
            "client_secret": "s3cr3t",
            "transport": httpx.MockTransport(lenient),
        }
        return make_validator(**(options | overrides))

    return make


# --- a JWS refused locally never reaches introspection ------------------------------------

_SUFFIXES = ["=", "==", "===", "~", "~~", ".", "..", ".AAAA", ".e30", "+", "/", "~WyJhIiwiYiJd~"]


@pytest.mark.parametrize("introspect_all", [False, True], ids=["default", "introspect_all"])
@pytest.mark.parametrize("suffix", _SUFFIXES)
async def test_a_suffixed_jws_is_refused_locally(
    introspecting: Make, issuer: LocalIssuer, lenient: Lenient, suffix: str, introspect_all: bool
) -> None:
    validator = introspecting(introspect_all=introspect_all)
    await refused(validator, issuer.token() + suffix)
    assert lenient.seen == []


@pytest.mark.parametrize("introspect_all", [False, True], ids=["default", "introspect_all"])
@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t.replace("-", "+").replace("_", "/"), id="standard-alphabet"),
        pytest.param(lambda t: t.replace(".", ".~", 1), id="tilde-after-header"),
        pytest.param(lambda t: t[:10] + "~" + t[10:], id="tilde-inside-header"),
        pytest.param(lambda t: t.replace(".", ".AAAA.", 1), id="segment-after-header"),
        pytest.param(lambda t: t + "." + t, id="two-tokens"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + "..", id="empty-fourth-segment"),
    ],
)
async def test_a_mutated_jws_is_refused_locally(
    introspecting: Make,
    issuer: LocalIssuer,
    lenient: Lenient,
    mutate: Callable[[str], str],
    introspect_all: bool,
) -> None:
    token = mutate(issuer.token())
    await refused(introspecting(introspect_all=introspect_all), token, Reason.MALFORMED_TOKEN)
    assert lenient.seen == []


def _segment(value: bytes) -> str:
    return b64url(value)


@pytest.mark.parametrize(
    "header",
    [b'{\n  "alg": "RS256"\n}', b' {"alg":"RS256"}', b'\xef\xbb\xbf{"alg":"RS256"}'],
    ids=["pretty", "leading-space", "bom"],
)
async def test_a_pretty_printed_or_prefixed_header_is_still_jose(
    introspecting: Make, issuer: LocalIssuer, lenient: Lenient, header: bytes
) -> None:
    jws = f"{_segment(header)}.{_segment(b'{}')}.{_segment(b'sig')}"
    await refused(introspecting(), jws + "~")
    await refused(introspecting(introspect_all=True), jws + "~")
    assert lenient.seen == []


async def test_a_jwe_is_unsupported_and_not_sent(
    introspecting: Make, issuer: LocalIssuer, lenient: Lenient
) -> None:
    header = _segment(b'{"alg":"RSA-OAEP-256","enc":"A256GCM"}')
    jwe = ".".join([header, _segment(b"k" * 256), _segment(b"i" * 12), "Y2lwaGVy", "dGFn"])
    await refused(introspecting(), jwe, Reason.UNSUPPORTED_TOKEN)
    await refused(introspecting(), jwe + "=", Reason.UNSUPPORTED_TOKEN)
    assert lenient.seen == []


async def test_introspect_all_sends_well_formed_jose_only(
    introspecting: Make, issuer: LocalIssuer, lenient: Lenient
) -> None:
    """With ``introspect_all`` the server judges every token it issued: a well-formed JWS or
    JWE goes to it, a malformed one never does."""
    validator = introspecting(introspect_all=True)
    jws = issuer.token()
    header = _segment(b'{"alg":"RSA-OAEP-256","enc":"A256GCM"}')
    jwe = ".".join([header, _segment(b"k" * 256), _segment(b"i" * 12), "Y2lwaGVy", "dGFn"])
    assert await validator.validate(jws)
    assert await validator.validate(jwe)
    assert lenient.seen == [jws, jwe]
    await refused(validator, issuer.token(header={"alg": "none"}), Reason.UNSUPPORTED_ALGORITHM)
    assert len(lenient.seen) == 2


@PROPERTY
@given(data=st.data())
async def test_no_mutation_of_a_valid_jws_reaches_introspection(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    signing_keys: dict[str, SigningKey],
    data: st.DataObject,
) -> None:
    """Suffixes, extra segments, padding, alphabet swaps and whitespace, anywhere after the
    first three characters (``eyJ``, which fix the ``{"`` that starts every header): refused,
    and never sent. With ``introspect_all`` a mutant that is still a strict compact JWS (a
    base64url character appended to the signature, say) goes to the server like any other
    well-formed JWS (the server was asked to judge those); nothing else does."""
    lenient = Lenient(issuer)
    introspect_all = data.draw(st.booleans())
    validator = make_validator(
        client_id="resource-server",
        client_secret="s3cr3t",
        transport=httpx.MockTransport(lenient),
        introspect_all=introspect_all,
    )
    original = issuer.token(key=signing_keys[data.draw(st.sampled_from(sorted(signing_keys)))])
    token = original
    for _ in range(data.draw(st.integers(1, 3))):
        edit = data.draw(st.sampled_from(["suffix", "insert", "swap", "segment", "pad"]))
        at = data.draw(st.integers(3, len(token)))
        if edit == "suffix":
            token += data.draw(st.text(alphabet=".~=+/A_-", min_size=1, max_size=6))
        elif edit == "insert":
            token = token[:at] + data.draw(st.sampled_from(list("~+/= \t\n."))) + token[at:]
        elif edit == "swap":
            token = token[:at] + token[at:].replace("-", "+").replace("_", "/")
        elif edit == "segment":
            extra = data.draw(st.from_regex(r"[A-Za-z0-9_-]{0,8}", fullmatch=True))
            token = token[:at] + "." + extra + token[at:]
        else:
            token = token[:at] + "=" * data.draw(st.integers(1, 3)) + token[at:]
    if token == original:
        return
    if introspect_all and _strict_jws(token):
        await validator.validate(token)  # judged by the server
        assert lenient.seen == [token]
    else:
        await refused(validator, token)
        assert lenient.seen == []
    await validator.aclose()


def _strict_jws(token: str) -> bool:
    try:
        return parse_compact(token, frozenset(DEFAULT_ALGORITHMS)) is not None
    except InvalidTokenError:
        return False


_OPAQUE = {
    "google": "ya29.a0AfH6SMBx-" + secrets.token_urlsafe(90),
    "oidc-provider": secrets.token_urlsafe(32),
    "github": "gho_" + secrets.token_hex(18),
    "b64token": "abc~def+ghi/jkl" + secrets.token_hex(8) + "==",
    "fosite": f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}",
    "hydra": f"ory_at_{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}",
    "eyJ-without-dots": "eyJ" + secrets.token_urlsafe(40),
}


@pytest.mark.parametrize("introspect_all", [False, True], ids=["default", "introspect_all"])
@pytest.mark.parametrize("name", sorted(_OPAQUE))
async def test_real_opaque_formats_are_still_introspected(
    introspecting: Make, lenient: Lenient, name: str, introspect_all: bool
) -> None:
    token = _OPAQUE[name]
    assert await introspecting(introspect_all=introspect_all).validate(token)
    assert lenient.seen == [token]


# --- one client cannot switch introspection off for everyone -------------------------------


async def test_a_token_the_server_fails_on_does_not_shut_out_other_users(
    introspecting: Make, lenient: Lenient
) -> None:
    validator = introspecting()
    crafted = "crafted-" + secrets.token_urlsafe(16)
    lenient.broken.add(crafted)
    await refused(validator, crafted, Reason.INTROSPECTION_UNAVAILABLE)
    for _ in range(5):  # in the same second: no outage shortcut was opened
        assert await validator.validate(secrets.token_urlsafe(24))
    await refused(validator, crafted, Reason.INTROSPECTION_UNAVAILABLE)
    assert lenient.seen.count(crafted) == 1  # remembered for that token only, briefly


async def test_one_client_with_many_failing_tokens_cannot_open_the_shortcut(
    introspecting: Make, lenient: Lenient
) -> None:
    validator = introspecting()
    for _ in range(20):
        crafted = "crafted-" + secrets.token_urlsafe(16)
        lenient.broken.add(crafted)
        await refused(validator, crafted, Reason.INTROSPECTION_UNAVAILABLE, requester="mallory")
    assert await validator.validate(secrets.token_urlsafe(24), requester="alice")


async def test_one_requester_cannot_spend_the_budget_of_the_others(
    introspecting: Make, lenient: Lenient, clock: FrozenClock
) -> None:
    validator = introspecting(introspection_rate=10, introspection_burst=20)
    outcomes = [
        (await refused(validator, "junk-" + secrets.token_urlsafe(24), requester="mallory")).reason
        for _ in range(200)
    ]
    assert Reason.RATE_LIMITED in outcomes
    sent = len(lenient.seen)
    assert sent < 20  # a share of the burst, not all of it
    for user in range(3):
        assert await validator.validate(secrets.token_urlsafe(24), requester=f"user-{user}")
    assert len(lenient.seen) == sent + 3


async def test_the_requester_is_never_logged(
    introspecting: Make, lenient: Lenient, all_logs: pytest.LogCaptureFixture
) -> None:
    validator = introspecting(introspection_rate=1, introspection_burst=1)
    requester = "203.0.113.77-canary"
    for _ in range(3):
        await refused(validator, "junk-" + secrets.token_urlsafe(16), requester=requester)
    lenient.broken.add(crafted := "crafted-" + secrets.token_urlsafe(16))
    await refused(validator, crafted, requester=requester + "-2")
    assert requester not in log_text(all_logs)
