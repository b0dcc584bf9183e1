"""oauth_shield.otel: the exact metric names, units, attributes and counts, and the spans.

An in-memory OpenTelemetry SDK (tests/telemetry.py) reads what the validator reports; the
issuer is the in-memory LocalIssuer with a frozen clock, so counts are exact.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from opentelemetry import trace

from oauth_shield import AuthError, Reason, SyncTokenValidator, TokenValidator
from oauth_shield import otel as shield_otel
from oauth_shield.apikeys import APIKeyStore, new_key
from oauth_shield.http import Guard, RequestCredentials
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.conftest import FrozenClock, ValidatorFactory
from tests.telemetry import Recorded, attrs, recorded

ISSUER = "https://issuer.test"
SUCCESS = attrs(
    oauth_shield__result="success",
    oauth_shield__scheme="bearer",
    oauth_shield__token_kind="jwt",
    oauth_shield__issuer=ISSUER,
)


def failure(reason: str, kind: str = "jwt", scheme: str = "bearer") -> frozenset[Any]:
    return attrs(
        oauth_shield__result="failure",
        error__type=reason,
        oauth_shield__scheme=scheme,
        oauth_shield__token_kind=kind,
        oauth_shield__issuer=ISSUER,
    )


async def test_a_valid_token_is_one_success_and_one_duration(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    with recorded(validator) as seen:
        token = issuer.token()
        await validator.validate(token)
        await validator.validate(token)  # the verified-token cache
        metrics = seen.metrics()
    assert metrics["oauth_shield.validations"] == ("{validation}", {SUCCESS: 2})
    unit, durations = metrics["oauth_shield.validation.duration"]
    assert unit == "s" and set(durations) == {SUCCESS} and durations[SUCCESS][0] == 2
    issuer_only = attrs(oauth_shield__issuer=ISSUER)
    start = attrs(
        oauth_shield__issuer=ISSUER,
        oauth_shield__jwks__trigger="start",
        oauth_shield__result="success",
    )
    assert metrics["oauth_shield.jwks.fetches"] == ("{fetch}", {start: 1})
    assert metrics["oauth_shield.jwks.fetch.duration"][0] == "s"
    assert metrics["oauth_shield.jwks.keys"] == ("{key}", {issuer_only: 3})
    age_unit, ages = metrics["oauth_shield.jwks.age"]
    fresh = attrs(oauth_shield__issuer=ISSUER, oauth_shield__jwks__state="fresh")
    assert age_unit == "s" and list(ages) == [fresh] and ages[fresh] == 0  # frozen clock
    up = attrs(oauth_shield__issuer=ISSUER, oauth_shield__component="jwks")
    assert metrics["oauth_shield.up"] == ("1", {up: 1})
    lookups = metrics["oauth_shield.cache.lookups"][1]
    verified = {"oauth_shield.issuer": ISSUER, "oauth_shield.cache.name": "verified"}
    assert lookups[frozenset({**verified, "oauth_shield.cache.result": "hit"}.items())] == 1
    assert lookups[frozenset({**verified, "oauth_shield.cache.result": "miss"}.items())] == 1
    events = metrics["oauth_shield.events"][1]
    assert events == {attrs(oauth_shield__issuer=ISSUER, oauth_shield__event="key_set_fetched"): 1}


def _tokens(issuer: LocalIssuer) -> dict[Reason, Callable[[], Any]]:
    stranger = SigningKey("RS256", kid="stranger")
    return {
        Reason.MALFORMED_TOKEN: lambda: "a.b.c",
        Reason.TOKEN_TOO_LARGE: lambda: "x" * 10_000,
        Reason.UNSUPPORTED_TOKEN: lambda: "opaque-without-introspection",
        Reason.UNSUPPORTED_ALGORITHM: lambda: issuer.token(header={"alg": "HS256"}),
        Reason.WRONG_TYPE: lambda: issuer.token(header={"typ": "JWT"}),
        Reason.UNKNOWN_KID: lambda: stranger.sign(
            {"alg": "RS256", "typ": "at+jwt", "kid": "stranger"}, issuer.claims()
        ),
        Reason.BAD_SIGNATURE: lambda: issuer.token()[:-8] + "AAAAAAAA",
        Reason.ISSUER_MISMATCH: lambda: issuer.token(iss="https://other.test"),
        Reason.AUDIENCE_MISMATCH: lambda: issuer.token(aud="https://other-api.test"),
        Reason.EXPIRED: lambda: issuer.token(exp=1),
        Reason.NOT_YET_VALID: lambda: issuer.token(nbf=issuer.clock() + 3600),
        Reason.MISSING_CLAIM: lambda: issuer.token(sub=None),
        Reason.INSUFFICIENT_SCOPE: lambda: issuer.token(scope="other"),
    }


@pytest.mark.parametrize(
    "reason",
    [
        Reason.MALFORMED_TOKEN,
        Reason.TOKEN_TOO_LARGE,
        Reason.UNSUPPORTED_TOKEN,
        Reason.UNSUPPORTED_ALGORITHM,
        Reason.WRONG_TYPE,
        Reason.UNKNOWN_KID,
        Reason.BAD_SIGNATURE,
        Reason.ISSUER_MISMATCH,
        Reason.AUDIENCE_MISMATCH,
        Reason.EXPIRED,
        Reason.NOT_YET_VALID,
        Reason.MISSING_CLAIM,
        Reason.INSUFFICIENT_SCOPE,
    ],
    ids=lambda reason: reason.value,
)
async def test_each_refusal_is_counted_by_its_reason(
    make_validator: ValidatorFactory, issuer: LocalIssuer, reason: Reason
) -> None:
    validator = make_validator(max_token_size=8192)
    await validator.validate(issuer.token())  # warm: the key set is fetched
    token = _tokens(issuer)[reason]()
    kind = "opaque" if reason in (Reason.TOKEN_TOO_LARGE, Reason.UNSUPPORTED_TOKEN) else "jwt"
    with recorded(validator) as seen:
        seen_events: list[Any] = []
        validator.subscribe(seen_events.append)
        with pytest.raises(AuthError) as caught:
            await validator.validate(token, ["read"])
        assert caught.value.reason is reason
        metrics = seen.metrics()
    assert metrics["oauth_shield.validations"] == ("{validation}", {failure(reason.value, kind): 1})
    assert metrics["oauth_shield.validation.duration"][1][failure(reason.value, kind)][0] == 1
    refusals = [event for event in seen_events if event.kind == "token_refused"]
    assert [(e.reason, e.scheme, e.token_kind) for e in refusals] == [
        (reason.value, "bearer", kind)
    ]


async def test_api_keys_are_counted_with_their_scheme(issuer: LocalIssuer) -> None:
    key, stored = new_key(["read"])
    validator = TokenValidator(
        issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport()
    )
    guard = Guard(validator, api_keys=APIKeyStore([stored]))
    with recorded(validator) as seen:
        await guard.authenticate(RequestCredentials(api_keys=[key]), ["read"], api_keys=True)
        with pytest.raises(AuthError):
            await guard.authenticate(RequestCredentials(api_keys=[key + "x"]), api_keys=True)
        points = seen.points("oauth_shield.validations")
    await validator.aclose()
    ok = attrs(
        oauth_shield__result="success",
        oauth_shield__scheme="api_key",
        oauth_shield__token_kind="opaque",
        oauth_shield__issuer=ISSUER,
    )
    assert points == {ok: 1, failure("invalid_api_key", "opaque", "api_key"): 1}


async def test_a_cold_herd_counts_one_fetch(validator: TokenValidator, issuer: LocalIssuer) -> None:
    with recorded(validator) as seen:
        tokens = [issuer.token(sub=f"u{i}") for i in range(50)]
        await asyncio.gather(*(validator.validate(token) for token in tokens))
        metrics = seen.metrics()
    assert issuer.requests["/jwks"] == 1
    fetches = metrics["oauth_shield.jwks.fetches"][1]
    assert list(fetches.values()) == [1]
    assert dict(next(iter(fetches)))["oauth_shield.jwks.trigger"] == "start"
    assert metrics["oauth_shield.validations"][1] == {SUCCESS: 50}
    # One validation span per validation that waited, each with the fetch below one of them.
    spans = seen.spans()
    names = sorted(span.name for span in spans)
    assert names.count("oauth_shield.validate") == 50
    assert names.count("oauth_shield.jwks.fetch") == 1
    assert names.count("oauth_shield.discovery") == 1
    assert names.count("GET") == 2


async def test_spans_name_the_url_and_status_and_nest_under_the_validation(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    with recorded(validator) as seen:
        await validator.validate(issuer.token())
        spans = {span.name: span for span in seen.spans() if span.name != "GET"}
        requests = [span for span in seen.spans() if span.name == "GET"]
    validate, fetch = spans["oauth_shield.validate"], spans["oauth_shield.jwks.fetch"]
    assert fetch.parent is not None and fetch.parent.span_id == validate.context.span_id
    assert dict(validate.attributes or {}) == {
        "oauth_shield.issuer": ISSUER,
        "oauth_shield.token_kind": "jwt",
        "oauth_shield.result": "success",
    }
    assert dict(fetch.attributes or {}) == {
        "oauth_shield.issuer": ISSUER,
        "oauth_shield.jwks.trigger": "start",
    }
    by_url = {dict(span.attributes or {})["url.full"]: span for span in requests}
    jwks = by_url[f"{ISSUER}/jwks"]
    assert jwks.kind is trace.SpanKind.CLIENT
    assert dict(jwks.attributes or {}) == {
        "oauth_shield.issuer": ISSUER,
        "http.request.method": "GET",
        "url.full": f"{ISSUER}/jwks",
        "http.response.status_code": 200,
    }
    assert jwks.parent is not None and jwks.parent.span_id == fetch.context.span_id


async def test_a_warm_validation_makes_no_span_unless_trace_all(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    token = issuer.token(sub="alice")
    await validator.validate(token)
    with recorded(validator) as seen:
        await validator.validate(token)
        assert seen.spans() == []
    with recorded(validator, trace_all=True, record_subject=True) as seen:
        await validator.validate(token)
        with pytest.raises(AuthError):
            await validator.validate(issuer.token(exp=1))
        spans = seen.spans()
    assert [span.name for span in spans] == ["oauth_shield.validate"] * 2
    assert dict(spans[0].attributes or {}) == {**dict(SUCCESS), "user.id": "alice"}
    assert dict(spans[1].attributes or {}) == dict(failure("expired"))
    assert spans[1].status.status_code is trace.StatusCode.ERROR


async def test_a_failed_fetch_marks_its_spans(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    issuer.fault = lambda request: httpx.Response(503) if request.url.path == "/jwks" else None
    validator = make_validator()
    with recorded(validator) as seen:
        with pytest.raises(AuthError) as caught:
            await validator.validate(issuer.token())
        spans = {span.name: span for span in seen.spans() if span.name != "GET"}
        requests = [span for span in seen.spans() if span.name == "GET"]
        metrics = seen.metrics()
    assert caught.value.reason is Reason.KEYS_UNAVAILABLE
    failed = attrs(
        oauth_shield__issuer=ISSUER,
        oauth_shield__jwks__trigger="start",
        oauth_shield__result="failure",
        error__type="status_503",
    )
    assert metrics["oauth_shield.jwks.fetches"][1] == {failed: 1}
    up = attrs(oauth_shield__issuer=ISSUER, oauth_shield__component="jwks")
    assert metrics["oauth_shield.up"][1] == {up: 0}
    fetch = spans["oauth_shield.jwks.fetch"]
    assert fetch.status.status_code is trace.StatusCode.ERROR
    assert dict(fetch.attributes or {})["error.type"] == "status_503"
    jwks = next(s for s in requests if dict(s.attributes or {})["url.full"].endswith("/jwks"))
    assert dict(jwks.attributes or {})["http.response.status_code"] == 503
    assert dict(spans["oauth_shield.validate"].attributes or {})["error.type"] == (
        "keys_unavailable"
    )


async def test_a_rotation_is_counted_and_told(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    validator = make_validator(jwks_cooldown=0)
    await validator.validate(issuer.token())
    with recorded(validator) as seen:
        told: list[Any] = []
        validator.subscribe(told.append)
        old_kids = tuple(sorted(key.kid for key in issuer.keys))
        new = issuer.rotate(keep_old=False)
        await validator.validate(issuer.token())  # an unknown kid: one fetch
        metrics = seen.metrics()
    rotated = [event for event in told if event.kind == "key_set_rotated"]
    assert [(e.added, e.removed, e.keys_added, e.keys_removed) for e in rotated] == [
        ((new.kid,), old_kids, 1, 3)
    ]
    assert metrics["oauth_shield.jwks.rotations"][1] == {attrs(oauth_shield__issuer=ISSUER): 1}
    trigger = attrs(
        oauth_shield__issuer=ISSUER,
        oauth_shield__jwks__trigger="unknown_kid",
        oauth_shield__result="success",
    )
    assert metrics["oauth_shield.jwks.fetches"][1] == {trigger: 1}


async def test_unknown_kids_in_the_cooldown_are_counted_as_suppressed(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    await validator.validate(issuer.token())
    stranger = SigningKey("RS256", kid="stranger")
    with recorded(validator) as seen:
        for _ in range(4):  # the first refetches (two fetches per window), the rest wait
            with pytest.raises(AuthError):
                await validator.validate(
                    stranger.sign({"alg": "RS256", "typ": "at+jwt", "kid": "s"}, issuer.claims())
                )
        metrics = seen.metrics()
    assert issuer.requests["/jwks"] == 2
    assert metrics["oauth_shield.jwks.fetches.suppressed"] == (
        "{fetch}",
        {attrs(oauth_shield__issuer=ISSUER): 3},
    )


async def test_an_outage_with_stale_keys(
    make_validator: ValidatorFactory, issuer: LocalIssuer, clock: FrozenClock
) -> None:
    validator = make_validator(jwks_ttl=60)
    await validator.validate(issuer.token())
    issuer.fault = lambda request: httpx.Response(503)
    with recorded(validator) as seen:
        told: list[Any] = []
        validator.subscribe(told.append)
        clock.advance(61)  # expired: a request waits for a refresh, which fails
        assert (await validator.validate(issuer.token())).subject == "user-1"
        clock.advance(2)  # past the backoff: a background retry, which fails too
        await validator.validate(issuer.token())
        await _fetched(validator)
        metrics = seen.metrics()
        health = await validator.health()
        issuer.fault = None
        await validator.check()  # the issuer answers again
    assert [event.kind for event in told if event.kind != "key_set_fetched"] == [
        "stale_keys_used",
        "stale_keys_used",
        "issuer_back",
    ]
    fetches = {
        (dict(a)["oauth_shield.jwks.trigger"], dict(a)["oauth_shield.result"]): n
        for a, n in metrics["oauth_shield.jwks.fetches"][1].items()
    }
    assert fetches == {("age", "failure"): 1, ("retry", "failure"): 1}
    stale = attrs(oauth_shield__issuer=ISSUER, oauth_shield__jwks__state="stale")
    assert metrics["oauth_shield.jwks.age"][1] == {stale: 63}
    up = attrs(oauth_shield__issuer=ISSUER, oauth_shield__component="jwks")
    assert metrics["oauth_shield.up"][1] == {up: 0}
    stale_events = attrs(oauth_shield__issuer=ISSUER, oauth_shield__event="stale_keys_used")
    assert metrics["oauth_shield.events"][1][stale_events] == 2
    assert health["status"] == "degraded"
    assert health["keys"] == {
        "state": "stale",
        "age_seconds": 63,
        "expires_in_seconds": -3,
        "count": 3,
        "last_fetch": "status_503",
    }


async def _fetched(validator: TokenValidator) -> None:
    """Until the key-set fetch in flight (a background one) has ended."""
    for _ in range(10_000):
        if "jwks" not in validator._keys._flight:
            return
        await asyncio.sleep(0)
    raise AssertionError("the fetch did not end")


async def test_introspection_calls_and_caches_are_counted(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    issuer.clients["rs"] = "rs-secret-value"
    validator = make_validator(client_id="rs", client_secret="rs-secret-value")
    opaque = issuer.opaque_token()
    with recorded(validator) as seen:
        await validator.validate(opaque)
        await validator.validate(opaque)  # the introspection cache
        metrics = seen.metrics()
    calls = metrics["oauth_shield.introspection.calls"]
    assert calls == (
        "{call}",
        {attrs(oauth_shield__issuer=ISSUER, oauth_shield__result="success"): 1},
    )
    assert metrics["oauth_shield.introspection.duration"][0] == "s"
    lookups = {
        (dict(a)["oauth_shield.cache.name"], dict(a)["oauth_shield.cache.result"]): n
        for a, n in metrics["oauth_shield.cache.lookups"][1].items()
    }
    assert lookups[("introspection", "hit")] == 1
    assert lookups[("introspection", "miss")] == 1
    opaque_ok = attrs(
        oauth_shield__result="success",
        oauth_shield__scheme="bearer",
        oauth_shield__token_kind="opaque",
        oauth_shield__issuer=ISSUER,
    )
    assert metrics["oauth_shield.validations"][1] == {opaque_ok: 2}


def test_the_sync_facade_nests_its_spans_under_the_callers() -> None:
    issuer = LocalIssuer()
    with issuer.serve():
        validator = SyncTokenValidator(issuer=issuer.issuer, audience=issuer.audience)
        with recorded(validator) as seen:
            tracer = seen.tracers.get_tracer("app")
            with tracer.start_as_current_span("request") as request:
                assert validator.validate(issuer.token()).subject == "user-1"
            spans = {span.name: span for span in seen.spans()}
            points = seen.points("oauth_shield.validations")
        validator.close()
    validate = spans["oauth_shield.validate"]
    assert validate.parent is not None
    assert validate.parent.span_id == request.get_span_context().span_id
    assert spans["oauth_shield.jwks.fetch"].parent.span_id == validate.context.span_id  # type: ignore[union-attr]
    served = {**dict(SUCCESS), "oauth_shield.issuer": issuer.issuer}
    assert points == {frozenset(served.items()): 1}


async def test_process_wide_instrumentation_reaches_validators_made_later() -> None:
    issuer = LocalIssuer()
    with recorded() as seen:  # before the validator exists, as adapters build theirs
        async with TokenValidator(
            issuer=issuer.issuer, audience=issuer.audience, transport=issuer.transport()
        ) as validator:
            await validator.validate(issuer.token())
        points = seen.points("oauth_shield.validations")
    assert points == {SUCCESS: 1}
    assert validator._telemetry.sink is None  # off again


async def test_uninstrument_stops_the_metrics(
    validator: TokenValidator, issuer: LocalIssuer
) -> None:
    seen = Recorded()
    instrumentation = seen.instrument(validator)
    await validator.validate(issuer.token())
    instrumentation.uninstrument()
    await validator.validate(issuer.token())
    assert seen.points("oauth_shield.validations") == {SUCCESS: 1}
    assert validator._telemetry.sink is None


def test_instrument_refuses_what_is_not_a_validator() -> None:
    with pytest.raises(TypeError, match="TokenValidator"):
        shield_otel.instrument(object())
    with pytest.raises(TypeError, match="trace_all"):
        shield_otel.instrument(trace_all="yes")  # type: ignore[arg-type]


def test_without_instrument_nothing_of_opentelemetry_is_imported() -> None:
    code = (
        "import sys, asyncio\n"
        "from oauth_shield import TokenValidator\n"
        "from oauth_shield.testing import LocalIssuer\n"
        "import oauth_shield.http, oauth_shield.asgi, oauth_shield.events\n"
        "issuer = LocalIssuer()\n"
        "async def main():\n"
        "    async with TokenValidator(issuer=issuer.issuer, audience=issuer.audience,\n"
        "                              transport=issuer.transport()) as v:\n"
        "        await v.validate(issuer.token())\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
