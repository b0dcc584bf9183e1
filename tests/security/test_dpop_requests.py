"""Hostile DPoP requests through the adapter seam (``Guard`` and the validator): whatever a
request carries in ``Authorization``, ``DPoP``, its method and its URL, only an ``AuthError``
comes out, nothing of the token or the proof is said, and a good request passes after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauth_shield import AuthError, Reason, SyncTokenValidator
from oauth_shield.http import Guard, RequestCredentials, RequestTarget
from oauth_shield.testing import DPoPKey, LocalIssuer
from tests.conftest import AUDIENCE, ISSUER, FrozenClock

URL = "https://api.test/items"
TARGET = RequestTarget("https", "api.test", b"/items")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Setup:
    def __init__(self) -> None:
        self.clock = FrozenClock()
        self.key = DPoPKey("ES256", clock=self.clock.time)
        issuer = LocalIssuer(ISSUER, AUDIENCE, clock=self.clock.time)
        self.token = issuer.dpop_token(self.key)
        self.validator = SyncTokenValidator(
            issuer=ISSUER,
            audience=AUDIENCE,
            transport=issuer.transport(),
            clock=self.clock,
            dpop="allowed",
        )
        self.guard = Guard(self.validator)

    def good(self) -> RequestCredentials:
        proof = self.key.proof("GET", URL, access_token=self.token)
        return RequestCredentials([f"DPoP {self.token}"], proofs=[proof], target=TARGET)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    made = Setup()
    yield made
    made.validator.close()


#: Everything oauth_shield itself writes into a refusal: reason names and fixed sentences.
FIXED_TEXT = " ".join(reason.value for reason in Reason)


def refused(setup: Setup, presented: RequestCredentials) -> None:
    try:
        setup.guard.authenticate_sync(presented, "read")
    except AuthError as error:
        status, headers, body = setup.guard.refusal(error, "read")
        assert status in (400, 401)
        said = repr(error) + str(error) + str(headers) + body.decode()
        fixed = repr(error) + FIXED_TEXT  # our own words: a fuzzed proof may spell one of them
        for piece in (setup.token, *setup.token.split("."), *presented.proofs):
            assert len(piece) < 8 or piece not in said or piece in fixed
        return
    raise AssertionError("accepted")


@FUZZ
@given(data=st.data())
def test_mutated_requests_are_refused_with_an_auth_error(setup: Setup, data: st.DataObject) -> None:
    good = setup.good()
    proof = good.proofs[0]
    field = data.draw(st.sampled_from(["proof", "scheme", "method", "target", "headers"]))
    if field == "proof":
        index = data.draw(st.integers(0, len(proof) - 1))
        char = data.draw(st.characters(codec="latin-1"))
        mutated = proof[:index] + char + proof[index + 1 :]
        if mutated == proof:
            return
        presented = good._replace(proofs=[mutated])
    elif field == "scheme":
        scheme = data.draw(st.sampled_from(["Bearer", "DPoP,", "DPoP  x", "Basic", "dpop\t"]))
        presented = good._replace(authorization=[f"{scheme} {setup.token}"])
        if scheme.lower().startswith("dpop") and scheme.strip().lower() == "dpop":
            return
    elif field == "method":
        method = data.draw(st.text(min_size=1, max_size=8))
        if method == "GET":
            return
        presented = good._replace(method=method)
    elif field == "target":
        host = data.draw(st.sampled_from(["API.test", "api.test:443", "evil.test", "", "a@b"]))
        path = data.draw(st.sampled_from([b"/items/", b"/Items", b"/items/.", b"/%69tems", b""]))
        target = RequestTarget(data.draw(st.sampled_from(["https", "http", "ftp"])), host, path)
        presented = good._replace(target=target)
        # Some spellings are the same URL (RFC 3986 §6.2): accepted; else an AuthError.
        with contextlib.suppress(AuthError):
            setup.guard.authenticate_sync(presented, "read")
        return
    else:
        extra = data.draw(st.lists(st.text(max_size=30), min_size=1, max_size=3))
        presented = good._replace(proofs=[proof, *extra])
    refused(setup, presented)
    # The good request still passes: nothing was poisoned.
    setup.guard.authenticate_sync(setup.good(), "read")


def test_equivalent_urls_are_the_same_url(setup: Setup) -> None:
    for target in (
        RequestTarget("HTTPS", "API.test:443", b"/items"),
        RequestTarget("https", "api.test", b"/%69tems"),
        RequestTarget("https", "api.test", b"/x/../items?page=2"),
    ):
        setup.guard.authenticate_sync(setup.good()._replace(target=target), "read")
    refused(setup, setup.good()._replace(target=None))  # a URL that cannot be placed
    for target in (
        RequestTarget("https", "api.test", b"/items/"),
        RequestTarget("https", "api.test", b"/Items"),
        RequestTarget("http", "api.test", b"/items"),
        RequestTarget("https", "api.test:8443", b"/items"),
        RequestTarget("https", "evil.test", b"/items", headers=[(b"host", b"api.test")]),
        RequestTarget(
            "https", "evil.test", b"/items", headers=[(b"x-forwarded-host", b"api.test")]
        ),
    ):
        refused(setup, setup.good()._replace(target=target))
