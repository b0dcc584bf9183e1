"""Claim paths: how ``scope_claims`` and ``required_claims`` name a claim, and reading it (pure).

Identity providers put what a token grants, and who it is for, in claims of their own:
``scp`` (Entra, Okta), ``roles`` (Entra), ``permissions`` (Auth0), ``cognito:groups``
(Cognito), ``realm_access.roles`` and ``resource_access.<client>.roles`` (Keycloak). A *claim
path* names one: a tuple of member names from the top of the payload down, at most
:data:`MAX_CLAIM_PATH_DEPTH` of them. It is configured as

- a claim name: ``"scp"``, ``"cognito:groups"``, ``"https://example.com/roles"`` (names may
  hold ``.``, ``:`` and ``/``; a dot never means nesting);
- a tuple (or list) of names: ``("realm_access", "roles")``;
- a string starting with ``/``: an RFC 6901 JSON Pointer, ``"/realm_access/roles"``, with
  ``~1`` for a ``/`` and ``~0`` for a ``~`` inside a name (``"/https:~1~1example.com~1roles"``).
  That is the one form an ``OAUTH_SHIELD_*`` string needs for a nested path, and it cannot be
  mistaken for a name: claim names do not start with ``/``.

Reading a path never fails on a missing member (the claim is absent); a member on the way that
is not a JSON object is a malformed token (``invalid_claim``). Work is bounded by the path's
depth and by the token's size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ._errors import ConfigurationError, InvalidTokenError, Reason
from ._text import json_setting, shown, split_list

ClaimPath = tuple[str, ...]
"""A claim, as the member names that lead to it from the top of the payload."""
ClaimName = str | tuple[str, ...]
"""A claim as configured: a name, a JSON Pointer (``"/a/b"``), or a tuple of names."""

#: Real providers nest permissions two or three members deep (Keycloak's client roles); eight
#: leaves room and bounds the walk, whatever the payload holds.
MAX_CLAIM_PATH_DEPTH = 8
#: Claims that may grant scopes: a provider uses one to three; more is a configuration slip.
MAX_SCOPE_CLAIMS = 16
#: The RFC 9068 §2.2.3 default: only ``scope`` grants.
DEFAULT_SCOPE_CLAIMS: tuple[ClaimPath, ...] = (("scope",),)

_MISSING: Any = object()
_BAD_ESCAPE = re.compile(r"~(?![01])")


class Accepted(NamedTuple):
    """The values a required claim may have, by JSON type: ``1`` never matches ``true``."""

    strings: frozenset[str]
    numbers: frozenset[float]
    booleans: frozenset[bool]

    def __contains__(self, value: object) -> bool:
        kind = type(value)
        if kind is str:
            return value in self.strings
        if kind is bool:
            return value in self.booleans
        return (kind is int or kind is float) and value in self.numbers


RequiredClaims = tuple[tuple[ClaimPath, Accepted], ...]


def claim_path(entry: object, field: str) -> ClaimPath:
    """One configured claim as a path; raise :class:`ConfigurationError` naming ``field``."""
    if isinstance(entry, str):
        path = _pointer(entry, field) if entry.startswith("/") else (entry,)
    elif isinstance(entry, tuple | list) and all(isinstance(name, str) for name in entry):
        path = tuple(entry)
    else:
        raise ConfigurationError(
            f"{field}: a claim is a name, a JSON Pointer such as '/realm_access/roles', or a "
            f"tuple of names such as ('realm_access', 'roles'); not {shown(entry)}",
            field=field,
        )
    if not path or not all(path) or len(path) > MAX_CLAIM_PATH_DEPTH:
        raise ConfigurationError(
            f"{field}: {shown(entry) if isinstance(entry, str) else path!r} must name 1 to "
            f"{MAX_CLAIM_PATH_DEPTH} non-empty members",
            field=field,
        )
    return path


def _pointer(text: str, field: str) -> ClaimPath:
    """An RFC 6901 JSON Pointer (§3: ``~1`` is ``/``, ``~0`` is ``~``, decoded in that order)."""
    if _BAD_ESCAPE.search(text):
        raise ConfigurationError(
            f"{field}: {shown(text)} is not a JSON Pointer: write ~0 for ~ and ~1 for / "
            "inside a name (RFC 6901 §3)",
            field=field,
        )
    return tuple(name.replace("~1", "/").replace("~0", "~") for name in text[1:].split("/"))


def check_scope_claims(value: object) -> tuple[ClaimPath, ...]:
    """``scope_claims`` as paths, in order, without repeats.

    A string is a list, split like every list setting (commas and/or whitespace), or, when it
    starts with ``[``, a JSON array of strings (for names with a comma or a space).
    """
    field = "scope_claims"
    entries = _entries(value, field, "a list of claims")
    paths = tuple(dict.fromkeys(claim_path(entry, field) for entry in entries))
    if not paths or len(paths) > MAX_SCOPE_CLAIMS:
        raise ConfigurationError(
            f"{field} must name 1 to {MAX_SCOPE_CLAIMS} claims, not {len(paths)}", field=field
        )
    return paths


def check_required_claims(value: object) -> RequiredClaims:
    """``required_claims`` as ``(path, accepted values)`` pairs; a string is a JSON object."""
    field = "required_claims"
    if value is None or value == ():
        return ()
    if isinstance(value, tuple) and all(_checked(pair) for pair in value):
        return value  # checked already (the settings' own form)
    if isinstance(value, str):
        value = json_setting(value, field, dict, "a JSON object")
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{field} must map claims to values, not {shown(value)}", field=field
        )
    return tuple(
        (claim_path(name, field), _accepted(name, wanted)) for name, wanted in value.items()
    )


def _checked(pair: object) -> bool:
    return isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], Accepted)


def _accepted(name: object, wanted: object) -> Accepted:
    field = "required_claims"
    values = tuple(wanted) if isinstance(wanted, list | tuple | set | frozenset) else (wanted,)
    if not values or not all(_plain(item) for item in values):
        raise ConfigurationError(
            f"{field}: the value for {shown(name) if isinstance(name, str) else name!r} must be "
            "a string, a number or a boolean, or a non-empty list of them (one of which the "
            "claim must equal)",
            field=field,
        )
    return Accepted(
        frozenset(item for item in values if type(item) is str),
        frozenset(item for item in values if type(item) in (int, float)),
        frozenset(item for item in values if type(item) is bool),
    )


def _plain(value: object) -> bool:
    kind = type(value)
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    return kind is str or kind is bool or kind is int


def check_clients(value: object, field: str = "allowed_clients") -> frozenset[str] | None:
    """``allowed_clients`` (or any list of ids): ``None``, or a non-empty set of non-empty
    strings; a string is split like every list setting."""
    if value is None:
        return None
    items = _entries(value, field, "a list of client ids")
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError(
            f"{field} must be a non-empty list of non-empty strings, not {shown(value)}",
            field=field,
        )
    return frozenset(items)


def _entries(value: object, field: str, what: str) -> list[Any]:
    if isinstance(value, str):
        if value.lstrip().startswith(("[", "{")):
            return list(json_setting(value, field, list, "a JSON array"))
        return split_list(value)
    if not isinstance(value, Iterable) or isinstance(value, Mapping | bytes):
        raise ConfigurationError(f"{field} must be {what}, not {shown(value)}", field=field)
    return list(value)


# --- per token -------------------------------------------------------------------------


def claim_at(claims: Mapping[str, Any], path: ClaimPath) -> Any:
    """The value at ``path``, or :data:`MISSING`; a member on the way that is not a JSON
    object refuses the token (``invalid_claim``)."""
    value: Any = claims
    for name in path:
        if type(value) is not dict:
            raise InvalidTokenError(Reason.INVALID_CLAIM)
        value = value.get(name, _MISSING)
        if value is _MISSING:
            break
    return value


MISSING: Any = _MISSING
"""What :func:`claim_at` returns for an absent claim."""


def check_required(claims: Mapping[str, Any], required: RequiredClaims) -> None:
    """Every required claim is present with one of its values, or ``claim_mismatch``."""
    for path, accepted in required:
        if claim_at(claims, path) not in accepted:
            raise InvalidTokenError(Reason.CLAIM_MISMATCH)
