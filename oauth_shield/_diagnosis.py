"""What a refusal or a failed fetch probably says about the configuration, in words (pure).

A misconfigured validator refuses every token, or answers 503 for ever, and each looks like a
client's fault or an outage. These functions turn the few refusals that usually mean a wrong
setting (audience, issuer, ``typ``, algorithm) into one sentence naming the configured value,
what the token or the server said instead, and the likely fix.

Everything quoted from a token or from the network is attacker-controlled: it goes through
:func:`printable` (printable ASCII only, bounded), so it cannot forge log lines or flood them.
From a token only ``alg``, ``typ``, ``iss`` and ``aud`` are ever quoted (none is a secret);
nothing else of it, and never its bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ._config import SUPPORTED_ALGORITHMS, Settings
from ._errors import Reason
from ._jose import b64url_decode
from ._json import parse_object
from ._keys import KeySet

#: A value quoted from a token or a server is cut here: enough to recognise a typo.
MAX_QUOTED = 100
#: Items of an ``aud`` array quoted; the rest are counted.
MAX_QUOTED_ITEMS = 4

#: Refusals that usually mean a setting is wrong rather than a bad token.
CONFIGURATION_REASONS = frozenset(
    {
        Reason.AUDIENCE_MISMATCH,
        Reason.ISSUER_MISMATCH,
        Reason.WRONG_TYPE,
        Reason.UNSUPPORTED_ALGORITHM,
        Reason.UNKNOWN_KID,
        Reason.KEY_MISMATCH,
    }
)

_MISSING: Any = object()
_PRINTABLE = frozenset(chr(code) for code in range(0x20, 0x7F))


def printable(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` reduced to printable ASCII (anything else becomes ``?``), at most ``limit``
    characters (then ``...``)."""
    cut = text[:limit]
    safe = "".join(char if char in _PRINTABLE else "?" for char in cut)
    return safe + "..." if len(text) > limit else safe


def quoted(value: object) -> str:
    """A claim or header value from a token or a server, safe to log."""
    if value is _MISSING:
        return "(none)"
    if isinstance(value, str):
        return repr(printable(value))
    if isinstance(value, list):
        items = [quoted(item) for item in value[:MAX_QUOTED_ITEMS]]
        if len(value) > MAX_QUOTED_ITEMS:
            items.append(f"and {len(value) - MAX_QUOTED_ITEMS} more")
        return "[" + ", ".join(items) + "]"
    return f"(a JSON {type(value).__name__})"


def issuer_hint(configured: str, named: object) -> str:
    """The likely fix when a server or token names ``named`` as the issuer, not ``configured``
    (issuers are compared by exact string match: RFC 8414 §3.3, RFC 9068 §4)."""
    if not isinstance(named, str):
        return "it names no issuer string: this is not an authorization server's document"
    shown = repr(printable(named))
    if named.rstrip("/") == configured.rstrip("/"):
        change = "remove the trailing slash from" if configured.endswith("/") else "add a / to"
        return f"{change} issuer: set it to {shown}, exactly as the server writes it"
    if named.lower() == configured.lower():
        return f"issuers are compared case-sensitively: set issuer to {shown}"
    try:
        ours, theirs = urlsplit(configured), urlsplit(named)
        hosts = (ours.hostname, theirs.hostname)
        same_place = (ours.port, ours.path.rstrip("/")) == (theirs.port, theirs.path.rstrip("/"))
    except ValueError:
        hosts, same_place = (None, None), False
    if same_place and ours.scheme != theirs.scheme and hosts[0] == hosts[1]:
        return (
            f"the server names itself with {printable(theirs.scheme, 10)}: set issuer to "
            f"{shown}, or fix the server's public URL (behind a TLS proxy?)"
        )
    if same_place and hosts[0] != hosts[1]:
        return (
            f"the server calls itself {printable(str(hosts[1]))} where issuer says {hosts[0]} "
            "(a host alias? localhost and 127.0.0.1, or an internal and a public name, are "
            f"different issuers): if it is the same server, set issuer to {shown}"
        )
    return (
        f"if this is your authorization server, set issuer to {shown} exactly; "
        "otherwise issuer points at another server"
    )


def token_facts(token: str) -> dict[str, Any] | None:
    """``alg`` and ``typ`` from a JWS's header, ``iss`` and ``aud`` from its payload (each
    ``_MISSING`` when absent), or ``None`` if ``token`` is not a readable JWS."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header, payload = b64url_decode(parts[0]), b64url_decode(parts[1])
    params = None if header is None else parse_object(header)
    claims = None if payload is None else parse_object(payload)
    if params is None or claims is None:
        return None
    return {
        "alg": params.get("alg", _MISSING),
        "typ": params.get("typ", _MISSING),
        "iss": claims.get("iss", _MISSING),
        "aud": claims.get("aud", _MISSING),
    }


def refusal_warning(
    reason: Reason, token: str, name: str, settings: Settings, keys: KeySet | None
) -> str | None:
    """A sentence for a refusal that looks like a configuration mistake, or ``None`` when this
    one does not (a forged ``alg``, a random ``kid``). ``name`` is the token's fingerprint."""
    facts = None if settings.introspect_all else token_facts(token)
    if facts is None:
        return _introspected(reason, name, settings)
    if reason is Reason.AUDIENCE_MISMATCH:
        return (
            f"token {name} refused: its aud {quoted(facts['aud'])} names none of audience "
            f"{list(settings.audience)}; if tokens for that audience are meant for this API, "
            "add it to audience (OAUTH_SHIELD_AUDIENCE), or have the client ask the "
            "authorization server for a token for this API"
        )
    if reason is Reason.ISSUER_MISMATCH and len(settings.issuers) > 1:
        return (
            f"token {name} refused before its signature was checked: its iss "
            f"{quoted(facts['iss'])} is none of the issuers {list(settings.issuers)} (compared "
            "exactly; a template's with the token's tid, among tenants); if tokens from that "
            "issuer are meant for this API, add it to issuer (OAUTH_SHIELD_ISSUER)"
        )
    if reason is Reason.ISSUER_MISMATCH:
        return (
            f"token {name} refused: its iss {quoted(facts['iss'])} is not issuer "
            f"{settings.issuer!r} (compared exactly); {issuer_hint(settings.issuer, facts['iss'])}"
        )
    if reason is Reason.WRONG_TYPE:
        return _wrong_type(name, facts["typ"], settings)
    return _no_key(reason, name, facts["alg"], settings, keys)


def _wrong_type(name: str, typ: object, settings: Settings) -> str:
    if settings.profile == "jwt":
        return (
            f"token {name} refused: its typ {quoted(typ)} is neither JWT nor at+jwt; "
            "is it an access token?"
        )
    return (
        f"token {name} refused: its typ is {quoted(typ)}, and profile 'rfc9068' requires "
        "at+jwt (RFC 9068 §2.1); if the authorization server issues plain JWT access tokens, "
        "set profile='jwt' (OAUTH_SHIELD_PROFILE=jwt); if it is an ID token, send the access "
        "token instead"
    )


def _no_key(
    reason: Reason, name: str, alg: object, settings: Settings, keys: KeySet | None
) -> str | None:
    if type(alg) is not str:
        return None
    allowed = sorted(settings.algorithms)
    if reason is Reason.UNSUPPORTED_ALGORITHM:
        if alg not in SUPPORTED_ALGORITHMS or alg in settings.algorithms:
            return None  # none, HS256, a forgery: nothing to configure
        return (
            f"token {name} refused: signed with alg {alg!r}, which algorithms {allowed} does "
            "not include; if the authorization server signs with it, add it to algorithms "
            "(OAUTH_SHIELD_ALGORITHMS)"
        )
    if keys is None or alg not in settings.algorithms:
        return None
    usable = _algorithms_of(keys.index)
    if alg in usable:
        return None  # a key for this alg exists: the kid is unknown, not the algorithm
    return (
        f"token {name} refused: no key in the issuer's key set can verify alg {alg!r} "
        f"(usable keys fit {sorted(usable)}; keys skipped: {len(keys.skipped)}, DEBUG on "
        "oauth_shield.keys says why); compare the keys the issuer publishes (kty, crv, alg) "
        f"with algorithms {allowed} (OAUTH_SHIELD_ALGORITHMS)"
    )


def _algorithms_of(index: Mapping[tuple[str | None, str], object]) -> set[str]:
    return {alg for kid, alg in index if kid is None}


def _introspected(reason: Reason, name: str, settings: Settings) -> str | None:
    """The same refusals, decided on an introspection answer (not quoted: not the token's)."""
    if reason is Reason.AUDIENCE_MISMATCH:
        return (
            f"token {name} refused: the introspection answer's aud names none of audience "
            f"{list(settings.audience)}; set audience (OAUTH_SHIELD_AUDIENCE) to what the "
            "authorization server reports for this API"
        )
    if reason is Reason.ISSUER_MISMATCH:
        return (
            f"token {name} refused: the introspection answer's iss is not issuer "
            f"{' or '.join(map(repr, settings.issuers))} (compared exactly, a trailing slash "
            "included)"
        )
    if reason is Reason.WRONG_TYPE:
        return (
            f"token {name} refused: the introspection answer's token_type is not Bearer "
            "(a sender-constrained token, such as DPoP, cannot be used as a bearer token)"
        )
    return None
