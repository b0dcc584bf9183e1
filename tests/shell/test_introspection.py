"""Opaque tokens through RFC 7662 introspection: routing, hostile answers, single-flight,
the caches and what they hold, the rate limit on misses, and secret hygiene."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable

import httpx
import pytest

from oauth_shield import (
    ConfigurationError,
    InvalidTokenError,
    Reason,
    Secret,
    SyncTokenValidator,
    TemporarilyUnavailableError,
    TokenValidator,
)
from oauth_shield._claims import MAX_MEMO_SCOPE_LENGTH
from oauth_shield._introspector import OUTAGE_AFTER
from oauth_shield._ratelimit import MAX_REQUESTERS, RequesterLimits, requester_key
from oauth_shield.testing import LocalIssuer
from tests.conftest import FrozenClock, ValidatorFactory, log_text, refused

from .conftest import GatedTransport, settle

CLIENT_ID = "resource-server"
SECRET = "canary-secret-" + secrets.token_hex(8) + ":+/%"

Make = Callable[..., TokenValidator]


@pytest.fixture
def introspecting(gated: ValidatorFactory, issuer: LocalIssuer) -> Make:
    issuer.clients[CLIENT_ID] = SECRET

    def make(**overrides: object) -> TokenValidator:
        options: dict[str, object] = {"client_id": CLIENT_ID, "client_secret": SECRET}
        return gated(**(options | overrides))

    return make


def calls(issuer: LocalIssuer) -> int:
    return issuer.requests["/introspect"]


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the introspection logger said."""
    return [r.getMessage() for r in caplog.records if r.name == "oauth_shield.introspection"]


# --- routing -------------------------------------------------------------------------------


async def test_an_opaque_token_is_introspected(introspecting: Make, issuer: LocalIssuer) -> None:
    token = await introspecting().validate(issuer.opaque_token(scope="read write"), ["write"])
    assert (token.subject, token.client_id, token.scopes) == (
        "user-1",
        "client-1",
        {"read", "write"},
    )
    assert calls(issuer) == 1
    assert issuer.requests["/jwks"] == 0  # the endpoint came from the metadata; no key set needed


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_both_client_authentication_methods(
    introspecting: Make, issuer: LocalIssuer, method: str
) -> None:
    assert await introspecting(introspection_auth=method).validate(issuer.opaque_token())


async def test_a_jwt_is_validated_locally_never_introspected(
    introspecting: Make, issuer: LocalIssuer
) -> None:
    validator = introspecting()
    await validator.validate(issuer.token())
    await refused(validator, issuer.token()[:-4] + "AAAA", Reason.BAD_SIGNATURE)  # not "rescued"
    await refused(validator, issuer.token(aud="x"), Reason.AUDIENCE_MISMATCH)
    assert calls(issuer) == 0


async def test_introspect_all_sends_every_token(introspecting: Make, issuer: LocalIssuer) -> None:
    jwt = issuer.token()
    issuer.opaque[jwt] = {"active": True, **issuer.claims(sub="from-introspection")}
    token = await introspecting(introspect_all=True).validate(jwt)
    assert token.subject == "from-introspection"
    assert calls(issuer) == 1


@pytest.mark.parametrize(
    "token", ["has space", 'quote"d', "semi;colon", "a=b", "tab\tbed", "{json}", "x" * 9000, "é"]
)
async def test_malformed_opaque_tokens_never_reach_the_server(
    introspecting: Make, issuer: LocalIssuer, token: str
) -> None:
    await refused(introspecting(), token)
    assert calls(issuer) == 0


async def test_an_explicit_endpoint(introspecting: Make, issuer: LocalIssuer) -> None:
    validator = introspecting(introspection_endpoint=f"{issuer.issuer}/introspect")
    assert await validator.validate(issuer.opaque_token())
    assert issuer.requests["/.well-known/openid-configuration"] == 0


# --- hostile answers -----------------------------------------------------------------------


def respond(
    issuer: LocalIssuer, response: httpx.Response | Callable[[], httpx.Response]
) -> Callable[..., httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/introspect":
            return issuer.handle(request)
        issuer.requests["/introspect"] += 1
        return response() if callable(response) else response

    return handler


BODY_CANARY = "server-body-canary-7f3a"


@pytest.mark.parametrize(
    ("response", "error", "reason"),
    [
        (
            httpx.Response(401, json={"error": "invalid_client", "x": BODY_CANARY}),
            InvalidTokenError,
            Reason.INTROSPECTION_FAILED,
        ),
        (httpx.Response(400, text=BODY_CANARY), InvalidTokenError, Reason.INTROSPECTION_FAILED),
        (
            httpx.Response(500, text=BODY_CANARY),
            TemporarilyUnavailableError,
            Reason.INTROSPECTION_UNAVAILABLE,
        ),
        (
            httpx.Response(503, text=BODY_CANARY),
            TemporarilyUnavailableError,
            Reason.INTROSPECTION_UNAVAILABLE,
        ),
        (
            httpx.Response(200, text=f"<html>{BODY_CANARY}</html>"),
            InvalidTokenError,
            Reason.INTROSPECTION_FAILED,
        ),
        (
            httpx.Response(200, text='{"active": true'),
            InvalidTokenError,
            Reason.INTROSPECTION_FAILED,
        ),
        (
            httpx.Response(200, text='{"active": true, "active": false}'),
            InvalidTokenError,
            Reason.INTROSPECTION_FAILED,
        ),
        (
            httpx.Response(200, text='{"active": true, "x": ' + "[" * 100 + "]" * 100 + "}"),
            InvalidTokenError,
            Reason.INTROSPECTION_FAILED,
        ),
        (
            httpx.Response(200, text='{"active": true, "pad": "' + "x" * 300_000 + '"}'),
            InvalidTokenError,
            Reason.INTROSPECTION_FAILED,
        ),
        (httpx.Response(200, text="[true]"), InvalidTokenError, Reason.INTROSPECTION_FAILED),
        (
            httpx.Response(302, headers={"Location": "https://attacker.test/introspect"}),
            InvalidTokenError,
            Reason.INTROSPECTION_FAILED,
        ),
        (
            httpx.Response(200, json={"active": "true", "sub": BODY_CANARY}),
            InvalidTokenError,
            Reason.INACTIVE,
        ),
        (httpx.Response(200, json={}), InvalidTokenError, Reason.INACTIVE),
    ],
    ids=[
        "401",
        "400",
        "500",
        "503",
        "html",
        "truncated",
        "duplicate-active",
        "deep",
        "huge",
        "array",
        "redirect",
        "active-string",
        "empty",
    ],
)
async def test_hostile_answers_never_let_a_token_through(
    introspecting: Make,
    gate: GatedTransport,
    issuer: LocalIssuer,
    all_logs: pytest.LogCaptureFixture,
    response: httpx.Response,
    error: type[Exception],
    reason: Reason,
) -> None:
    gate.failure = respond(issuer, response)
    caught = await refused(introspecting(), issuer.opaque_token(), reason, caplog=all_logs)
    assert isinstance(caught, error)
    said = json.dumps(caught.body()) + caught.www_authenticate() + log_text(all_logs)
    assert BODY_CANARY not in said  # no body of the server's is relayed, or logged


async def test_an_unreachable_server_is_503(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = introspecting(introspection_endpoint=f"{issuer.issuer}/introspect")
    gate.go_down()
    error = await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)
    assert error.status_code == 503


async def test_a_slow_server_is_503_after_the_timeout(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = introspecting(
        http_timeout=0.2, introspection_endpoint=f"{issuer.issuer}/introspect"
    )
    gate.delay = 3
    started = asyncio.get_running_loop().time()
    await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)
    assert asyncio.get_running_loop().time() - started < 1.5


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": 1}, Reason.EXPIRED),
        ({"aud": "https://other.test"}, Reason.AUDIENCE_MISMATCH),
        ({"iss": "https://other.test"}, Reason.ISSUER_MISMATCH),
        ({"cnf": {"jkt": "x"}}, Reason.KEY_BOUND),
    ],
)
async def test_active_tokens_that_fail_a_rule(
    introspecting: Make, issuer: LocalIssuer, claims: dict[str, object], reason: Reason
) -> None:
    await refused(introspecting(), issuer.opaque_token(**claims), reason)


async def test_scopes_are_enforced_as_for_jwts(introspecting: Make, issuer: LocalIssuer) -> None:
    validator = introspecting()
    token = issuer.opaque_token(scope="read")
    await refused(validator, token, Reason.INSUFFICIENT_SCOPE, scopes=["admin"])
    assert await validator.validate(token, ["read"])  # from the cache: still one call
    assert calls(issuer) == 1


# --- single-flight and caches ----------------------------------------------------------


async def test_n_concurrent_requests_with_one_token_make_one_call(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = introspecting()
    token = issuer.opaque_token()
    gate.open.clear()
    tasks = [asyncio.create_task(validator.validate(token)) for _ in range(300)]
    await settle()
    gate.open.set()
    assert len({(await task).fingerprint for task in tasks}) == 1
    assert calls(issuer) == 1


async def test_a_positive_verdict_lives_at_most_the_ttl(
    introspecting: Make, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting()
    token = issuer.opaque_token(exp=int(clock.time()) + 3600)
    for step in (0, 30, 29):
        clock.advance(step)
        await validator.validate(token)
    assert calls(issuer) == 1
    clock.advance(2)  # 61 s after the call
    await validator.validate(token)
    assert calls(issuer) == 2


async def test_a_positive_verdict_never_outlives_the_token(
    introspecting: Make, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting()
    token = issuer.opaque_token(exp=int(clock.time()) + 10)
    await validator.validate(token)
    clock.advance(10 + 30)  # exp plus the leeway, well inside the 60 s TTL
    await refused(validator, token, Reason.EXPIRED)
    assert calls(issuer) == 1


async def test_a_revoked_token_is_refused_once_its_entry_expires(
    introspecting: Make, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting(introspection_ttl=5)
    token = issuer.opaque_token(exp=int(clock.time()) + 3600)
    await validator.validate(token)
    issuer.revoke(token)
    await validator.validate(token)  # cached: revocation is seen within the TTL, not at once
    clock.advance(5)
    await refused(validator, token, Reason.INACTIVE)


async def test_a_negative_verdict_is_cached_briefly(
    introspecting: Make, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting()
    for _ in range(20):
        await refused(validator, "inactive-token-abc", Reason.INACTIVE)
    assert calls(issuer) == 1
    clock.advance(10)
    await refused(validator, "inactive-token-abc", Reason.INACTIVE)
    assert calls(issuer) == 2


async def test_server_failures_are_not_cached(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting()
    token = issuer.opaque_token()
    gate.failure = respond(issuer, httpx.Response(503))
    await refused(validator, token, Reason.INTROSPECTION_UNAVAILABLE)
    gate.come_back()
    clock.advance(1)  # the outage backoff; the failure itself was not remembered for the token
    assert await validator.validate(token)


# --- outage policy ------------------------------------------------------------------------


async def test_an_outage_fails_closed_by_default(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting()
    token = issuer.opaque_token(exp=int(clock.time()) + 3600)
    await validator.validate(token)
    clock.advance(61)  # past the positive TTL
    gate.go_down()
    error = await refused(validator, token, Reason.INTROSPECTION_UNAVAILABLE)
    assert error.status_code == 503 and int(error.headers()["Retry-After"]) >= 1


async def test_an_outage_costs_one_call_a_second_and_two_log_lines(
    introspecting: Make,
    gate: GatedTransport,
    issuer: LocalIssuer,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    validator = introspecting()
    await validator.validate(issuer.opaque_token())
    gate.go_down()
    for _ in range(3):
        for _ in range(10):  # distinct tokens: no cache helps, the backoff does
            await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)
        clock.advance(1)
    assert calls(issuer) == 1 + 3
    gate.come_back()
    assert await validator.validate(issuer.opaque_token())
    assert said(caplog) == [
        "introspection endpoint unavailable: no connection could be made [connect] at "
        "https://issuer.test/introspect; check that the server runs, on this port, and that "
        "this host may reach it (firewall, proxy)",
        "introspection endpoint is back",
    ]


async def test_the_grace_keeps_recently_active_tokens_through_an_outage(
    introspecting: Make,
    gate: GatedTransport,
    issuer: LocalIssuer,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    validator = introspecting(introspection_grace=300)
    seen = issuer.opaque_token(exp=int(clock.time()) + 3600, sub="seen")
    short = issuer.opaque_token(exp=int(clock.time()) + 120, sub="short")
    await validator.validate(seen)
    await validator.validate(short)
    clock.advance(61)
    gate.go_down()
    for _ in range(3):
        assert (await validator.validate(seen)).subject == "seen"
    assert sum("grace" in message for message in said(caplog)) == 1  # once per outage
    await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)  # never seen
    clock.advance(120)  # ``short`` has expired: no grace makes it valid again
    await refused(validator, short, Reason.EXPIRED)
    clock.advance(300 - 120)  # 60 s of freshness and 300 s of grace are over
    await refused(validator, seen, Reason.INTROSPECTION_UNAVAILABLE)


async def test_the_grace_covers_outages_not_verdicts(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting(introspection_grace=300)
    revoked = issuer.opaque_token(exp=int(clock.time()) + 3600)
    refused_by_server = issuer.opaque_token(exp=int(clock.time()) + 3600)
    await validator.validate(revoked)
    await validator.validate(refused_by_server)
    clock.advance(61)
    issuer.revoke(revoked)
    await refused(validator, revoked, Reason.INACTIVE)  # the server answered: its word holds
    gate.failure = respond(issuer, httpx.Response(401))  # our credentials were refused
    await refused(validator, refused_by_server, Reason.INTROSPECTION_FAILED)


async def test_tokens_that_differ_only_at_the_end(introspecting: Make, issuer: LocalIssuer) -> None:
    validator = introspecting()
    token = issuer.opaque_token()
    await validator.validate(token)
    for twin in (token[:-1] + ("A" if token[-1] != "A" else "B"), token + "A", token[:-1]):
        await refused(validator, twin, Reason.INACTIVE)
    assert calls(issuer) == 4


async def test_the_caches_hold_digests_and_allowlisted_fields_only(
    introspecting: Make, issuer: LocalIssuer
) -> None:
    validator = introspecting(introspection_cache_size=3)
    canaries = {
        "email": "alice-canary@example.com",
        "api_key": "sk_live_canary_123",
        "internal_id": "iid-canary",
    }
    tokens = [issuer.opaque_token(sub=f"user-{i}", **canaries) for i in range(4)] + [
        "never-active-1"
    ]
    for token in tokens[:4]:
        await validator.validate(token)
    await refused(validator, tokens[4], Reason.INACTIVE)
    stored = validator._introspector.cached()  # type: ignore[union-attr]
    assert len(stored) == 4  # three positives (bounded) and one negative
    dump = repr(stored) + repr([dict(v[0].claims) for _, v in stored if isinstance(v, tuple)])
    for key, _ in stored:
        assert isinstance(key, bytes) and len(key) == 32
    for token in tokens:
        assert token not in dump and token.encode() not in [k for k, _ in stored]
    for value in canaries.values():
        assert value not in dump


# --- the rate limit on misses --------------------------------------------------------------


async def test_a_scan_of_random_tokens_is_bounded(
    introspecting: Make, issuer: LocalIssuer, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Even from many addresses (each with a fresh bucket of its own), the validator's bucket
    bounds what reaches the server."""
    validator = introspecting(introspection_rate=10, introspection_burst=20)
    outcomes = []
    for second in range(3):
        for number in range(100):
            scanner = f"198.51.100.{number}"
            error = await refused(validator, secrets.token_urlsafe(24), requester=scanner)
            outcomes.append(error.reason)
        clock.advance(1)
        assert calls(issuer) <= 20 + 10 * second  # the burst, then the rate
    assert outcomes.count(Reason.RATE_LIMITED) >= 300 - 40
    assert calls(issuer) == 40
    reached = "introspection rate limit reached; answering 503 without a call"
    assert said(caplog).count(reached) == 3  # once each time the bucket runs dry, not per miss


async def test_rate_limited_answers_ask_the_client_to_retry(
    introspecting: Make, issuer: LocalIssuer
) -> None:
    validator = introspecting(introspection_rate=0.001, introspection_burst=1)
    await refused(validator, "first-unknown-token", Reason.INACTIVE)
    error = await refused(validator, "second-unknown-token", Reason.RATE_LIMITED)
    assert error.status_code == 503
    assert error.headers()["Retry-After"] == "1"


# --- configuration and secret hygiene ---------------------------------------------------


async def test_client_secret_from_a_file_or_the_environment(
    introspecting: Make, issuer: LocalIssuer, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret"  # type: ignore[operator]
    path.write_text(SECRET + "\n")
    assert await introspecting(client_secret=None, client_secret_file=path).validate(
        issuer.opaque_token()
    )
    monkeypatch.setenv("RS_SECRET", SECRET)
    assert await introspecting(client_secret=Secret.from_env("RS_SECRET")).validate(
        issuer.opaque_token()
    )
    with pytest.raises(ConfigurationError):
        introspecting(client_secret_file=path)  # both given
    with pytest.raises(ConfigurationError):
        introspecting(client_secret=None)  # neither


async def test_the_client_secret_is_never_shown(
    introspecting: Make,
    gate: GatedTransport,
    issuer: LocalIssuer,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    validator = introspecting()
    seen = [repr(validator), repr(validator.settings), str(validator.settings.client_secret)]
    await validator.validate(issuer.opaque_token())
    issuer.clients[CLIENT_ID] = "rotated"  # now the server refuses our credentials
    error = await refused(
        validator, issuer.opaque_token(), Reason.INTROSPECTION_FAILED, caplog=all_logs
    )
    seen += [repr(error), str(error), error.www_authenticate(), log_text(all_logs)]
    assert "check client_id and client_secret" in log_text(all_logs)
    for text in seen:
        assert SECRET not in text


@pytest.mark.parametrize("status", [408, 429, 502, 504])
async def test_a_server_too_busy_to_answer_is_503(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer, status: int
) -> None:
    gate.failure = respond(issuer, httpx.Response(status, headers={"Retry-After": "30"}))
    await refused(introspecting(), issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)


async def test_discovery_and_introspection_share_one_timeout(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = introspecting(http_timeout=0.3)
    gate.delay = 0.2  # metadata, then the call: each fits in the timeout, both together do not
    started = asyncio.get_running_loop().time()
    await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)
    assert asyncio.get_running_loop().time() - started < 0.6


async def test_a_transient_discovery_failure_is_not_reported_as_a_bad_token(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    def openid_down_oauth_missing(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(503)
        if path.startswith("/.well-known"):
            return httpx.Response(404)
        return issuer.handle(request)

    gate.failure = openid_down_oauth_missing
    await refused(introspecting(), issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)


# --- what is remembered beyond one token ------------------------------------------------------


def _module_memo_chars() -> int:
    """Characters of text held by the dictionaries of ``_claims``'s module state."""
    from oauth_shield import _claims

    held = [value for value in vars(_claims).values() if isinstance(value, dict)]
    return sum(len(key) for memo in held for key in memo if isinstance(key, str))


async def test_huge_scope_strings_are_not_memoised(
    introspecting: Make, issuer: LocalIssuer
) -> None:
    """A server (misbehaving, or hostile) that sends huge ``scope`` strings cannot make the
    process keep them beyond the tokens' own cache entries, nor beyond the validator."""
    validator = introspecting(introspection_cache_size=1)
    for number in range(20):
        token = issuer.opaque_token(scope=f"read s{number} " + "x" * 100_000)
        assert "read" in (await validator.validate(token, ["read"])).scopes
    assert await validator.validate(issuer.opaque_token(scope="read write"), ["read"])
    assert _module_memo_chars() < 100_000  # nothing of it in module state
    held = validator._scope_memo.strings()
    assert "read write" in held and all(len(scope) <= MAX_MEMO_SCOPE_LENGTH for scope in held)


# --- an outage, or one token's trouble ------------------------------------------------------


def _failing(issuer: LocalIssuer, status: int = 503) -> Callable[..., httpx.Response]:
    return respond(issuer, httpx.Response(status))


async def test_failing_answers_from_many_requesters_are_an_outage(
    introspecting: Make,
    gate: GatedTransport,
    issuer: LocalIssuer,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    validator = introspecting()
    gate.failure = _failing(issuer)
    for number in range(OUTAGE_AFTER):
        await refused(validator, issuer.opaque_token(), requester=f"192.0.2.{number}")
    assert calls(issuer) == OUTAGE_AFTER
    for number in range(10):  # the shortcut is open: answered at once, without a call
        error = await refused(validator, issuer.opaque_token(), requester=f"198.51.100.{number}")
        assert error.reason is Reason.INTROSPECTION_UNAVAILABLE
    assert calls(issuer) == OUTAGE_AFTER
    gate.come_back()
    clock.advance(1)
    assert await validator.validate(issuer.opaque_token(), requester="192.0.2.1")
    assert said(caplog) == [
        "introspection endpoint unavailable: the server answered HTTP 503 [status_503] at "
        "https://issuer.test/introspect; the server is in trouble; retried with backoff",
        "introspection endpoint is back",
    ]


async def test_failing_answers_for_one_requester_never_make_an_outage(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = introspecting()
    gate.failure = _failing(issuer, 502)
    for _ in range(3 * OUTAGE_AFTER):
        await refused(validator, issuer.opaque_token(), requester="203.0.113.9")
    assert calls(issuer) == 3 * OUTAGE_AFTER  # each one asked: no shortcut was opened
    gate.come_back()
    assert await validator.validate(issuer.opaque_token(), requester="192.0.2.1")


async def test_without_requesters_distinct_failing_tokens_make_an_outage(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    """Anonymous callers cannot be told apart: each distinct token counts (documented)."""
    validator = introspecting()
    gate.failure = _failing(issuer)
    token = issuer.opaque_token()
    for _ in range(3):  # one token again and again is one token's trouble
        await refused(validator, token, Reason.INTROSPECTION_UNAVAILABLE)
        clock.advance(1)
    for _ in range(OUTAGE_AFTER - 1):
        await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)
    assert calls(issuer) == 3 + OUTAGE_AFTER - 1
    await refused(validator, issuer.opaque_token(), Reason.INTROSPECTION_UNAVAILABLE)
    assert calls(issuer) == 3 + OUTAGE_AFTER - 1  # the shortcut


async def test_an_answer_ends_a_run_of_failures(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = introspecting()
    good = issuer.opaque_token()
    failing = respond(issuer, httpx.Response(500))

    def all_but_good(request: httpx.Request) -> httpx.Response:
        return issuer.handle(request) if good.encode() in request.content else failing(request)

    gate.failure = all_but_good
    for round_ in range(3):
        for number in range(OUTAGE_AFTER - 1):
            await refused(validator, issuer.opaque_token(), requester=f"{round_}.{number}")
        if round_ == 0:
            assert await validator.validate(good)  # the server answered: no outage so far
        else:
            await refused(validator, issuer.opaque_token(), requester="x")  # the fifth
            break
    assert calls(issuer) == 2 * (OUTAGE_AFTER - 1) + 1 + 1
    await refused(validator, issuer.opaque_token(), requester="y")
    assert calls(issuer) == 2 * (OUTAGE_AFTER - 1) + 2  # now the shortcut is open


@pytest.mark.parametrize(
    ("status", "reason"),
    [(503, Reason.INTROSPECTION_UNAVAILABLE), (401, Reason.INTROSPECTION_FAILED)],
)
async def test_a_failing_answer_is_remembered_for_its_token_for_a_second(
    introspecting: Make,
    gate: GatedTransport,
    issuer: LocalIssuer,
    clock: FrozenClock,
    status: int,
    reason: Reason,
) -> None:
    validator = introspecting()
    token = issuer.opaque_token()
    gate.failure = _failing(issuer, status)
    for _ in range(5):
        await refused(validator, token, reason)
    assert calls(issuer) == 1
    gate.come_back()
    assert await validator.validate(issuer.opaque_token())  # other tokens are asked about
    clock.advance(1)
    assert await validator.validate(token)
    assert calls(issuer) == 3


async def test_the_grace_also_covers_a_token_the_server_fails_on(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting(introspection_grace=300)
    token = issuer.opaque_token(exp=int(clock.time()) + 3600, sub="seen")
    await validator.validate(token)
    clock.advance(61)
    gate.failure = _failing(issuer)
    for _ in range(3):  # the answer, then the memo
        assert (await validator.validate(token)).subject == "seen"
    assert calls(issuer) == 2


# --- fairness between requesters -------------------------------------------------------------


async def test_each_requester_gets_its_share_of_the_budget(
    introspecting: Make, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = introspecting(introspection_rate=8, introspection_burst=16)  # 2/s, 4 each
    outcomes = [
        (await refused(validator, f"unknown-{n}", requester="203.0.113.9")).reason
        for n in range(10)
    ]
    assert outcomes == [Reason.INACTIVE] * 4 + [Reason.RATE_LIMITED] * 6
    assert calls(issuer) == 4
    clock.advance(1)  # two more for this requester
    outcomes = [
        (await refused(validator, f"later-{n}", requester="203.0.113.9")).reason for n in range(3)
    ]
    assert outcomes == [Reason.INACTIVE] * 2 + [Reason.RATE_LIMITED]
    for other in ("192.0.2.1", "192.0.2.2", None):  # the others' buckets are untouched
        await refused(validator, f"unknown-{other}", Reason.INACTIVE, requester=other)
    assert calls(issuer) == 4 + 2 + 3


async def test_a_share_of_one_lets_one_requester_use_everything(
    introspecting: Make, issuer: LocalIssuer
) -> None:
    validator = introspecting(
        introspection_rate=8, introspection_burst=16, introspection_requester_share=1
    )
    for number in range(16):
        await refused(validator, f"unknown-{number}", Reason.INACTIVE)
    await refused(validator, "one-too-many", Reason.RATE_LIMITED)


async def test_single_flight_joiners_are_not_charged(
    introspecting: Make, gate: GatedTransport, issuer: LocalIssuer
) -> None:
    validator = introspecting(introspection_rate=0.001, introspection_burst=4)  # one each
    token = issuer.opaque_token()
    gate.open.clear()
    tasks = [
        asyncio.create_task(validator.validate(token, requester=f"192.0.2.{n}")) for n in range(50)
    ]
    await settle()
    gate.open.set()
    assert len({(await task).fingerprint for task in tasks}) == 1
    assert calls(issuer) == 1
    await refused(validator, "unknown-a", Reason.RATE_LIMITED, requester="192.0.2.0")  # the leader
    await refused(validator, "unknown-b", Reason.INACTIVE, requester="192.0.2.1")  # a joiner


def test_the_requester_map_is_bounded(clock: FrozenClock) -> None:
    limits = RequesterLimits(1, 1, clock.monotonic, size=3)
    for number in range(1000):
        assert limits.allow(requester_key(f"spray-{number}"))
        assert len(limits) <= 3
    key = requester_key("spray-999")
    assert not limits.allow(key)  # still remembered: its bucket is spent
    assert MAX_REQUESTERS == 10_000
    assert requester_key(None) is None
    assert requester_key("a") == requester_key("a") != requester_key("b")
    assert len(requester_key("x" * 100_000) or b"") == 16  # a digest, whatever its size
    assert requester_key(("203.0.113.9", 443)) == requester_key(repr(("203.0.113.9", 443)))


def test_the_sync_facade_forwards_the_requester(issuer: LocalIssuer, clock: FrozenClock) -> None:
    issuer.clients[CLIENT_ID] = SECRET
    validator = SyncTokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        transport=issuer.transport(),
        clock=clock,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        introspection_rate=4,
        introspection_burst=4,  # one at once for each requester
    )
    with validator:
        assert validator.validate(issuer.opaque_token(), requester="192.0.2.1")
        with pytest.raises(TemporarilyUnavailableError) as caught:
            validator.validate(issuer.opaque_token(), requester="192.0.2.1")
        assert caught.value.reason is Reason.RATE_LIMITED
        assert validator.validate(issuer.opaque_token(), requester="192.0.2.2")
