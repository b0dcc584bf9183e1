"""Claim rules for JWT access tokens, and scopes (pure: the time is an argument).

The default profile is RFC 9068: ``typ`` is ``at+jwt``; ``iss``, ``aud``, ``exp``, ``iat``,
``sub``, ``client_id`` and ``jti`` are required. The ``"jwt"`` profile, for authorization
servers that issue plain JWTs, accepts ``typ`` ``JWT`` or none and makes ``iat``, ``sub``,
``client_id`` and ``jti`` optional; everything else stays as strict.

Beyond RFC 9068, a configuration may name the client's claim and the clients it accepts,
claims that must carry given values, and the claims that grant scopes (identity providers'
``scp``, ``roles``, ``permissions``...; see ``_claimpaths``). Those rules run only when
configured, so the RFC 9068 path stays as short as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ._claimpaths import MISSING as _MISSING
from ._claimpaths import ClaimPath, check_required, claim_at
from ._config import Settings
from ._errors import ConfigurationError, InsufficientScopeError, InvalidTokenError, Reason
from ._errors import is_scope_token as _is_scope_token
from ._token import AccessToken, confirmation_jkt, freeze_claims

#: The last second a datetime can hold (9999-12-31T23:59:59Z); a later ``exp`` is malformed.
MAX_TIMESTAMP = 253402300799

_AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
_PLAIN_JWT = _AT_JWT | {"jwt", "application/jwt"}
_NUMBER = (int, float)
_NO_SCOPES: frozenset[str] = frozenset()
#: Distinct scope requirements remembered; an application has a handful.
_MAX_REQUIRED_MEMO = 1024
#: Longest requirement remembered (characters): routes name a few short scopes, and this memo
#: is the application's, kept for the life of the process.
_MAX_REQUIRED_LENGTH = 256
_REQUIRED: dict[object, frozenset[str]] = {}
_MEMO_TYPES = (str, list, tuple, frozenset)
_EMPTY_SCOPE = frozenset({""})
#: Longest scope string a ScopeMemo keeps: real ones are a few dozen words, while a server's
#: answer may carry megabytes; longer strings are split every time.
MAX_MEMO_SCOPE_LENGTH = 1024
#: Distinct scope strings a ScopeMemo keeps (so at most 1 Mi characters per validator).
MAX_SCOPE_MEMO = 1024


def check_claims(
    header: Mapping[str, Any],
    claims: dict[str, Any],
    settings: Settings,
    now: float,
    fingerprint: str,
    scopes: ScopeMemo | None = None,
    issuer: str | None = None,
) -> AccessToken:
    """Apply every claim rule; return the token or raise :class:`InvalidTokenError`.

    Written as straight-line checks because it runs for every fresh token. ``scopes`` is the
    validator's memo of parsed scope strings, if it keeps one; ``issuer`` the issuer the
    token's ``iss`` selected among several (default: the one configured).
    """
    strict = settings.profile == "rfc9068"
    typ = header.get("typ", _MISSING)
    if not (_type_allowed(typ, strict) if typ is not _MISSING else not strict):
        raise InvalidTokenError(Reason.WRONG_TYPE)
    get = claims.get
    jkt = None
    if "cnf" in claims:  # sender-constrained (DPoP, mTLS): never usable as a bearer token
        if settings.dpop == "disabled":
            raise InvalidTokenError(Reason.KEY_BOUND)
        jkt = confirmation_jkt(claims)  # the validator then asks for a proof by that key
    if get("iss") != (settings.issuer if issuer is None else issuer):
        raise InvalidTokenError(_missing_or(claims, "iss", Reason.ISSUER_MISMATCH))
    audience = settings.audience
    aud = get("aud", _MISSING)
    if audience and not (aud in audience if type(aud) is str else _audience_matches(aud, settings)):
        raise InvalidTokenError(Reason.AUDIENCE_MISMATCH)
    leeway = settings.leeway
    exp: Any = get("exp")
    if type(exp) not in _NUMBER or not 0 <= exp <= MAX_TIMESTAMP:
        raise InvalidTokenError(_missing_or(claims, "exp", Reason.INVALID_CLAIM))
    if now >= exp + leeway:
        raise InvalidTokenError(Reason.EXPIRED)
    nbf = get("nbf", _MISSING)
    if nbf is not _MISSING and _timestamp(nbf) > now + leeway:
        raise InvalidTokenError(Reason.NOT_YET_VALID)
    iat = get("iat", _MISSING)
    if iat is _MISSING:
        if strict:
            raise InvalidTokenError(Reason.MISSING_CLAIM)
    elif _timestamp(iat) > now + leeway:
        raise InvalidTokenError(Reason.ISSUED_IN_FUTURE)
    subject = get("sub", _MISSING)
    client_id = get("client_id", _MISSING)
    for value in (subject, client_id, get("jti", _MISSING)):
        if value is _MISSING:
            if strict:
                raise InvalidTokenError(Reason.MISSING_CLAIM)
        elif type(value) is not str or not value:
            raise InvalidTokenError(Reason.INVALID_CLAIM)
    if settings.claim_rules:
        client_id, granted = provider_rules(claims, settings, client_id, scopes)
    else:
        granted = (parse_scope if scopes is None else scopes.parse)(get("scope", _MISSING))
    return AccessToken(
        None if subject is _MISSING else subject,
        None if client_id is _MISSING else client_id,
        granted,
        datetime.fromtimestamp(exp, UTC),
        freeze_claims(claims),
        fingerprint,
        jkt,
    )


def provider_rules(
    claims: dict[str, Any], settings: Settings, client_id: Any, memo: ScopeMemo | None
) -> tuple[Any, frozenset[str]]:
    """The rules beyond RFC 9068, as configured: ``required_claims``, the client
    (``client_claim``, among ``allowed_clients``), and the scopes ``scope_claims`` grant (at least
    one of them present, with ``require_scope_claim``). Returns the client (or ``_MISSING``)
    and the granted scopes. ``client_id`` is the ``client_id`` claim, already read."""
    if settings.required_claims:  # first: they tell a provider's kinds of token apart
        check_required(claims, settings.required_claims)
    name = settings.client_claim
    client = client_id if name == "client_id" else claims.get(name, _MISSING)
    if client is not _MISSING and (type(client) is not str or not client):
        raise InvalidTokenError(Reason.INVALID_CLAIM)
    allowed = settings.allowed_clients
    if allowed is not None and client not in allowed:
        raise InvalidTokenError(
            Reason.MISSING_CLAIM if client is _MISSING else Reason.CLIENT_NOT_ALLOWED
        )
    granted = granted_scopes(claims, settings.scope_claims, memo)
    if granted is None:
        if settings.require_scope_claim:
            raise InvalidTokenError(Reason.MISSING_CLAIM)
        granted = _NO_SCOPES
    return client, granted


def granted_scopes(
    claims: dict[str, Any], paths: tuple[ClaimPath, ...], memo: ScopeMemo | None
) -> frozenset[str] | None:
    """The union of what the claims at ``paths`` grant, or ``None`` if none is present.

    Each value is a space-separated string (RFC 6749 §3.3: ``scope``, Entra's ``scp``) or a
    JSON array of strings (Okta's ``scp``, ``roles``, ``permissions``, groups); anything else
    refuses the token (``invalid_claim``): a value we cannot read grants nothing, and says the
    token is not what the configuration expects.
    """
    found: frozenset[str] | None = None
    for path in paths:
        value = claims.get(path[0], _MISSING) if len(path) == 1 else claim_at(claims, path)
        if value is _MISSING:
            continue
        if type(value) is list:
            try:
                "".join(value)  # raises for any item that is not a string, in C: fast
            except TypeError:
                raise InvalidTokenError(Reason.INVALID_CLAIM) from None
            scopes = frozenset(value)
            if "" in scopes:
                scopes -= _EMPTY_SCOPE
        else:
            scopes = (parse_scope if memo is None else memo.parse)(value)
        found = scopes if found is None else found | scopes
    return found


def parse_scope(value: object = _MISSING) -> frozenset[str]:
    """The scopes of a ``scope`` claim: a space-separated string (RFC 6749 §3.3, RFC 9068 §2.2.3).

    Called without a value when the claim is absent.
    """
    if value is _MISSING:
        return _NO_SCOPES
    if type(value) is not str:
        raise InvalidTokenError(Reason.INVALID_CLAIM)
    scopes = frozenset(value.split(" "))
    if "" in scopes:
        scopes -= _EMPTY_SCOPE
    return scopes


class ScopeMemo:
    """Scope strings already parsed, each with the frozenset every token carrying it shares.

    An issuer uses few distinct scope strings (one per client, roughly), so each is split once.
    One memo belongs to one validator and goes with it; it keeps strings of at most
    ``MAX_MEMO_SCOPE_LENGTH`` characters, at most ``MAX_SCOPE_MEMO`` of them (all forgotten at
    once when full), so neither a hostile server nor a flood of tokens can grow it. Readable
    from any thread: a write lost to a race costs one more split.
    """

    __slots__ = ("_parsed",)

    def __init__(self) -> None:
        self._parsed: dict[str, frozenset[str]] = {}

    def parse(self, value: object = _MISSING) -> frozenset[str]:
        """:func:`parse_scope`, memoised for short strings."""
        if type(value) is not str or len(value) > MAX_MEMO_SCOPE_LENGTH:
            return parse_scope(value)
        parsed = self._parsed
        scopes = parsed.get(value)
        if scopes is None:
            scopes = parse_scope(value)
            if len(parsed) >= MAX_SCOPE_MEMO:
                parsed.clear()
            parsed[value] = scopes
        return scopes

    def strings(self) -> list[str]:
        """The scope strings held (for inspection and tests)."""
        return list(self._parsed)

    def __len__(self) -> int:
        return len(self._parsed)


def required_scopes(scopes: Iterable[str] | str | None) -> frozenset[str]:
    """Normalise what a caller requires: ``None``, ``"a b"`` or an iterable of scope tokens.

    A string is split on spaces rather than iterated, so ``"read"`` never means
    ``{"r", "e", "a", "d"}``. Illegal scope tokens are a programming error. Routes ask for the
    same few sets again and again, so results are memoised.
    """
    if scopes is None:
        return _NO_SCOPES
    memo = type(scopes) in _MEMO_TYPES
    key = tuple(scopes) if type(scopes) is list else scopes
    if memo:
        with contextlib.suppress(KeyError, TypeError):  # not seen yet; an unhashable item
            return _REQUIRED[key]
    if not isinstance(scopes, Iterable):
        raise ConfigurationError("scopes must be a string or an iterable of scope tokens")
    items = [s for s in scopes.split(" ") if s] if isinstance(scopes, str) else list(scopes)
    if not all(isinstance(scope, str) and _is_scope_token(scope) for scope in items):
        raise ConfigurationError("scopes must be RFC 6749 scope tokens")
    result = frozenset(items)
    length = len(scopes) if isinstance(scopes, str) else sum(map(len, items)) + len(items)
    if memo and length <= _MAX_REQUIRED_LENGTH and len(_REQUIRED) < _MAX_REQUIRED_MEMO:
        _REQUIRED[key] = result
    return result


def grant(token: AccessToken, required: frozenset[str]) -> AccessToken:
    """Return ``token`` if it carries every ``required`` scope, else raise 403."""
    if required and not required <= token.scopes:
        raise InsufficientScopeError(required)
    return token


# --- helpers ---------------------------------------------------------------------------


def _missing_or(claims: Mapping[str, Any], name: str, reason: Reason) -> Reason:
    return Reason.MISSING_CLAIM if name not in claims else reason


def _type_allowed(typ: object, strict: bool) -> bool:
    return type(typ) is str and typ.lower() in (_AT_JWT if strict else _PLAIN_JWT)


def _audience_matches(aud: object, settings: Settings) -> bool:
    if aud is _MISSING:
        raise InvalidTokenError(Reason.MISSING_CLAIM)
    if type(aud) is not list or not aud or not all(type(item) is str for item in aud):
        raise InvalidTokenError(Reason.INVALID_CLAIM)
    return any(item in settings.audience for item in aud)


def _timestamp(value: object) -> float:
    # type() rather than isinstance(): True is an int, and must not pass for a timestamp.
    if type(value) not in _NUMBER or not 0 <= value <= MAX_TIMESTAMP:  # type: ignore[operator]
        raise InvalidTokenError(Reason.INVALID_CLAIM)
    return value  # type: ignore[return-value]
