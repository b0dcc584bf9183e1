"""Token introspection (RFC 7662), pure: the request to send and the rules for the answer.

Only the JSON literal ``true`` in ``active`` counts. An active token must still be current
(``exp``, ``nbf``), from one of our issuers and for our audience when the server says so, and
not bound to a key (``cnf``) unless DPoP is on, when the binding is kept for the proof check
(RFC 9449 §6.2): the same rules a JWT meets. The rules configured beyond RFC 9068
(``allowed_clients``, ``required_claims``, ``scope_claims``) read the answer as they read a
JWT's claims. Whatever the server sends beyond the field allowlist is dropped here, before
anything can store or log it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from ._claimpaths import MISSING
from ._claims import MAX_TIMESTAMP, ScopeMemo, parse_scope, provider_rules
from ._config import AuthMethod, Settings
from ._errors import InvalidTokenError, Reason
from ._token import AccessToken, confirmation_jkt, freeze_claims

_BEARER_TYPES = frozenset({"bearer", "access_token"})
# RFC 9449 §6.2: a bound token's type is "DPoP"; some servers keep "Bearer" (the binding is
# in cnf either way). A "DPoP" token without a binding is refused: it cannot be checked.
_DPOP_TYPES = _BEARER_TYPES | {"dpop"}
_NUMBER = (int, float)


def basic_authorization(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` value for client_secret_basic.

    Id and secret are form-encoded before they are joined (RFC 6749 §2.3.1), which many
    clients skip: a secret with ``:``, ``+`` or ``%`` then fails to authenticate.
    """
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def request_form(
    token: str, client_id: str, client_secret: str, method: AuthMethod
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of an introspection request, authenticated as the resource server."""
    form = {"token": token, "token_type_hint": "access_token"}
    if method == "client_secret_post":
        return {**form, "client_id": client_id, "client_secret": client_secret}, {}
    return form, {"Authorization": basic_authorization(client_id, client_secret)}


def filter_fields(answer: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    """Keep only the allowlisted members of an introspection answer."""
    return {name: answer[name] for name in allowed if name in answer}


def check_answer(
    answer: Mapping[str, Any],
    settings: Settings,
    now: float,
    fingerprint: str,
    scopes: ScopeMemo | None = None,
) -> AccessToken:
    """Turn an introspection answer into an :class:`AccessToken`, or raise why not (``scopes``:
    the validator's memo of parsed scope strings, if it keeps one)."""
    if answer.get("active") is not True:
        raise InvalidTokenError(Reason.INACTIVE)
    jkt = None
    if "cnf" in answer:
        if settings.dpop == "disabled":
            raise InvalidTokenError(Reason.KEY_BOUND)
        jkt = confirmation_jkt(answer)
    token_type = answer.get("token_type")
    if token_type is not None and (
        type(token_type) is not str
        or token_type.lower() not in (_BEARER_TYPES if jkt is None else _DPOP_TYPES)
    ):
        raise InvalidTokenError(Reason.WRONG_TYPE)
    if "iss" in answer:
        settings.issuer_rules.select(answer)
    if "aud" in answer and settings.audience and not _audience_matches(answer["aud"], settings):
        raise InvalidTokenError(Reason.AUDIENCE_MISMATCH)
    exp = _timestamp(answer, "exp")
    if exp is not None and now >= exp + settings.leeway:
        raise InvalidTokenError(Reason.EXPIRED)
    nbf = _timestamp(answer, "nbf")
    if nbf is not None and nbf > now + settings.leeway:
        raise InvalidTokenError(Reason.NOT_YET_VALID)
    subject, client_id = (_optional_string(answer, name) for name in ("sub", "client_id"))
    if settings.claim_rules:
        client, granted = provider_rules(
            dict(answer), settings, answer.get("client_id", MISSING), scopes
        )
        client_id = None if client is MISSING else client
    else:
        granted = _scopes(answer, scopes)
    claims = filter_fields(answer, settings.introspection_fields)
    return AccessToken(
        subject,
        client_id,
        granted,
        None if exp is None else datetime.fromtimestamp(exp, UTC),
        freeze_claims(claims),
        fingerprint,
        jkt,
    )


def _scopes(answer: Mapping[str, Any], memo: ScopeMemo | None) -> frozenset[str]:
    if "scope" not in answer:
        return parse_scope()
    return parse_scope(answer["scope"]) if memo is None else memo.parse(answer["scope"])


def _audience_matches(aud: object, settings: Settings) -> bool:
    accepted = settings.audience
    if type(aud) is str:
        return aud in accepted
    if type(aud) is list and all(type(item) is str for item in aud):
        return any(item in accepted for item in aud)
    raise InvalidTokenError(Reason.INVALID_CLAIM)


def _timestamp(answer: Mapping[str, Any], name: str) -> float | None:
    if name not in answer:
        return None
    value = answer[name]
    if type(value) not in _NUMBER or not 0 <= value <= MAX_TIMESTAMP:
        raise InvalidTokenError(Reason.INVALID_CLAIM)
    return float(value)


def _optional_string(answer: Mapping[str, Any], name: str) -> str | None:
    value = answer.get(name)
    if value is None and name not in answer:
        return None
    if type(value) is not str or not value:
        raise InvalidTokenError(Reason.INVALID_CLAIM)
    return value
