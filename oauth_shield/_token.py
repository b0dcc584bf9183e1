"""The result of a successful validation, and the one-way fingerprint used to name a token."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from ._errors import InvalidTokenError, Reason

_JKT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url SHA-256, RFC 9449 §6.1


def token_digest(token: str) -> bytes:
    """SHA-256 of an ASCII token: the only form in which a token is ever used as a cache key."""
    return hashlib.sha256(token.encode()).digest()


def fingerprint(digest: bytes) -> str:
    """Eight hex digits of the token's SHA-256: enough to correlate log lines, useless to replay."""
    return digest[:4].hex()


def text_fingerprint(text: str) -> str:
    """The fingerprint of any string, even one that is not valid Unicode, for logs."""
    return fingerprint(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class AccessToken:
    """A validated access token: who it is for and what it allows.

    The same type comes back for JWT and opaque (introspected) tokens. It never holds the raw
    token, so neither its ``repr`` nor a cache entry that stores it can leak one.
    """

    subject: str | None
    """``sub``: the resource owner, or the client itself for client-credentials tokens."""
    client_id: str | None
    """``client_id`` (or the configured ``client_claim``: ``azp``, ``cid``...): the OAuth
    client the token was issued to."""
    scopes: frozenset[str]
    """The granted scopes: the space-separated ``scope`` claim, or the union of the configured
    ``scope_claims`` (``scp``, ``roles``, ``permissions``...)."""
    expires_at: datetime | None
    """``exp`` as an aware UTC datetime (``None`` only for introspected tokens without ``exp``)."""
    claims: Mapping[str, Any] = field(repr=False)
    """Every claim, read-only all the way down (lists become tuples). For introspected tokens,
    only the allowlisted fields. :meth:`to_dict` gives a plain copy, e.g. for JSON."""
    fingerprint: str = ""
    """A short one-way fingerprint of the token for logs (see :func:`fingerprint`)."""
    jkt: str | None = None
    """The RFC 7638 thumbprint of the key the token is bound to (``cnf.jkt``, RFC 9449 §6),
    whose holder proved possession with a DPoP proof; ``None`` for a bearer token."""

    @property
    def dpop_bound(self) -> bool:
        """Whether the token is DPoP-bound (RFC 9449): it was accepted with a proof made by
        the key it is bound to, never as a bearer token."""
        return self.jkt is not None

    def to_dict(self) -> dict[str, Any]:
        """The claims as plain, mutable JSON types (a deep copy)."""
        return {name: _thaw(value) for name, value in self.claims.items()}

    def has_scopes(self, scopes: Iterable[str]) -> bool:
        """Whether every scope in ``scopes`` was granted (case-sensitive, token by token)."""
        return self.scopes.issuperset(scopes)

    def __reduce__(self) -> tuple[Any, ...]:
        # Claims are a read-only view, which pickle cannot copy: rebuild it from plain data.
        fields = (self.subject, self.client_id, self.scopes, self.expires_at, self.to_dict())
        return _restore, (*fields, self.fingerprint, self.jkt)

    def __repr__(self) -> str:
        expires = self.expires_at.isoformat() if self.expires_at else None
        return (
            f"AccessToken(subject={self.subject!r}, client_id={self.client_id!r}, "
            f"scopes={sorted(self.scopes)!r}, expires_at={expires!r}, "
            f"fingerprint={self.fingerprint!r}"
            + (f", jkt={self.jkt!r})" if self.jkt is not None else ")")
        )


def _restore(
    subject: str | None,
    client_id: str | None,
    scopes: frozenset[str],
    expires_at: datetime | None,
    claims: dict[str, Any],
    fingerprint: str,
    jkt: str | None = None,
) -> AccessToken:
    frozen = freeze_claims(claims)
    return AccessToken(subject, client_id, scopes, expires_at, frozen, fingerprint, jkt)


def confirmation_jkt(claims: Mapping[str, Any]) -> str | None:
    """The thumbprint a token is bound to (``cnf.jkt``, RFC 9449 §6), or ``None`` if unbound.

    Works on JWT claims and on an introspection answer (RFC 9449 §6.2) alike. A ``cnf``
    without a well-formed ``jkt`` (an mTLS binding, RFC 8705) is a binding this library cannot
    check: the token is refused, never taken for a bearer token.
    """
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
    if type(jkt) is not str or not _JKT.fullmatch(jkt):
        raise InvalidTokenError(Reason.KEY_BOUND)
    return jkt


def freeze_claims(claims: dict[str, Any]) -> Mapping[str, Any]:
    """A read-only view of ``claims``, read-only all the way down.

    The result is shared by every request that presents the same token (the caches hand out
    one object), so no view may be able to change what another one sees. ``claims`` itself is
    left as it is; it is copied only when it holds a list or an object.
    """
    frozen = claims
    for name, value in claims.items():
        if type(value) is list or type(value) is dict:
            if frozen is claims:
                frozen = dict(claims)
            frozen[name] = _freeze(value)
    return MappingProxyType(frozen)


def _freeze(value: Any) -> Any:
    # Containers of plain values (role lists, Keycloak's realm_access) are copied in one step;
    # only a container inside them costs a recursive call.
    if type(value) is list:
        items = tuple(value)
        for item in items:
            if type(item) is list or type(item) is dict:
                return tuple(map(_freeze, items))
        return items
    if type(value) is dict:
        copy = dict(value)
        for name, item in copy.items():
            if type(item) is list or type(item) is dict:
                copy[name] = _freeze(item)
        return MappingProxyType(copy)
    return value


def _thaw(value: Any) -> Any:
    if type(value) is tuple:
        return [_thaw(item) for item in value]
    if type(value) is MappingProxyType:
        return {name: _thaw(item) for name, item in value.items()}
    return value
