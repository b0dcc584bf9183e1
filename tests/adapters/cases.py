"""One table of requests and the RFC 6750 answer each must get, whatever the framework."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Tokens = dict[str, str]


@dataclass(frozen=True)
class Case:
    name: str
    request: Callable[[Tokens], dict[str, Any]]  # keyword arguments for httpx's request()
    status: int
    error: str | None = None  # the error code in the challenge (None: no error attribute)
    description: str | None = None
    scope: str | None = None  # the scope attribute of a 403 challenge
    path: str = "/items"
    method: str = "GET"
    subject: str | None = field(default=None)  # for 200: the subject the view sees


def bearer(token: str, scheme: str = "Bearer") -> dict[str, Any]:
    return {"headers": [("Authorization", f"{scheme} {token}")]}


INVALID = "The access token is invalid"
MALFORMED = "The request is malformed"

CASES = [
    Case("valid-rs256", lambda t: bearer(t["rs256"]), 200, subject="client-rs256"),
    Case("valid-es256", lambda t: bearer(t["es256"]), 200, subject="client-es256"),
    Case("valid-opaque-introspected", lambda t: bearer(t["opaque"]), 200, subject=None),
    Case("scheme-lowercase", lambda t: bearer(t["rs256"], "bearer"), 200, subject="client-rs256"),
    Case("scheme-uppercase", lambda t: bearer(t["rs256"], "BEARER"), 200, subject="client-rs256"),
    Case(
        "several-spaces",
        lambda t: {"headers": [("Authorization", f"Bearer    {t['rs256']}")]},
        200,
        subject="client-rs256",
    ),
    Case("any-token-route", lambda t: bearer(t["es256"]), 200, path="/any", subject="client-es256"),
    Case("unprotected-route", lambda t: {}, 200, path="/open"),
    Case(
        "expired", lambda t: bearer(t["expired"]), 401, "invalid_token", "The access token expired"
    ),
    Case("wrong-audience", lambda t: bearer(t["other_audience"]), 401, "invalid_token", INVALID),
    Case("tampered", lambda t: bearer(t["rs256"][:-6] + "AAAAAA"), 401, "invalid_token", INVALID),
    Case("garbage", lambda t: bearer("not-a-real-token"), 401, "invalid_token", INVALID),
    Case(
        "alg-none",
        lambda t: bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."),
        401,
        "invalid_token",
        INVALID,
    ),
    Case("oversized", lambda t: bearer("a" * 9000), 401, "invalid_token", INVALID),
    Case(
        "missing-scope",
        lambda t: bearer(t["rs256"]),
        403,
        "insufficient_scope",
        "The access token lacks a required scope",
        scope="admin",
        path="/admin",
    ),
    Case("no-credentials", lambda t: {}, 401),
    Case("other-scheme", lambda t: bearer("dXNlcjpwYXNz", "Basic"), 401),
    Case(
        "scheme-only",
        lambda t: {"headers": [("Authorization", "Bearer")]},
        400,
        "invalid_request",
        MALFORMED,
    ),
    Case("illegal-characters", lambda t: bearer('abc"def'), 400, "invalid_request", MALFORMED),
    Case("token-with-space", lambda t: bearer("abc def"), 400, "invalid_request", MALFORMED),
    Case(
        "two-authorization-headers",
        lambda t: {"headers": [("Authorization", f"Bearer {t['rs256']}")] * 2},
        400,
        "invalid_request",
        "The request carries more than one credential",
    ),
    Case(  # a WSGI server folds these into "Basic ...,Bearer ...": still two credentials
        "basic-then-bearer-headers",
        lambda t: {
            "headers": [("Authorization", "Basic dXNlcjpwYXNz")] + bearer(t["rs256"])["headers"]
        },
        400,
        "invalid_request",
        "The request carries more than one credential",
    ),
    Case(
        "two-basic-headers",
        lambda t: {"headers": [("Authorization", "Basic dXNlcjpwYXNz")] * 2},
        400,
        "invalid_request",
        "The request carries more than one credential",
    ),
    Case(  # one credential whose auth-params hold commas is still one credential
        "digest-with-commas",
        lambda t: {"headers": [("Authorization", 'Digest username="u", realm="a, b"')]},
        401,
    ),
    Case(
        "header-and-query",
        lambda t: {**bearer(t["rs256"]), "params": {"access_token": t["rs256"]}},
        400,
        "invalid_request",
        "The request carries more than one credential",
    ),
    Case(
        "header-and-form-body",
        lambda t: {**bearer(t["rs256"]), "data": {"access_token": t["rs256"]}},
        400,
        "invalid_request",
        "The request carries more than one credential",
        method="POST",
    ),
    Case(  # a GET body has no semantics: never a credential location (RFC 6750 §2.2)
        "get-form-body-ignored",
        lambda t: {**bearer(t["rs256"]), "data": {"access_token": t["rs256"]}},
        200,
        subject="client-rs256",
    ),
    Case(
        "header-and-blank-query-token",
        lambda t: {**bearer(t["rs256"]), "params": {"access_token": ""}},
        400,
        "invalid_request",
        "The request carries more than one credential",
    ),
    Case("query-token-not-enabled", lambda t: {"params": {"access_token": t["rs256"]}}, 401),
]
