"""Which scopes a request path requires, decided on the path the application routes on (pure).

An ASGI server hands the application ``scope["path"]`` and ``scope["root_path"]``, and the
frameworks do not agree on what to route on:

- Starlette strips ``root_path`` only when the path starts with it at a segment boundary
  (``get_route_path``), and routes the rest literally;
- Quart turns an absolute-form target (``GET http://host/admin``, RFC 9112 §3.2.2, which
  uvicorn's h11 and hypercorn pass through as the path) into its path, and strips the first
  *occurrence* of ``root_path``, wherever it is;
- Werkzeug (Quart, Flask) merges repeated slashes, so ``//admin`` is served by ``/admin``;
- servers disagree on ``root_path`` itself: uvicorn prefixes the path with it, hypercorn does
  not, a ``Mount`` extends it.

Rather than guess which of these the application behind us follows, :func:`route_paths`
returns every reading a framework could make of the request, and :class:`PathRules` requires
what *each* of them requires (the union of their scopes). A path is public only when every
reading is public. What no framework resolves but a client never sends, dot segments, is
refused (:class:`~oauth_shield.InvalidRequestError`): RFC 3986 §5.2.4 has clients remove them,
so only an attacker sends ``/public/../admin``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from ._claims import required_scopes
from ._errors import ConfigurationError, InvalidRequestError, Reason

#: What a public entry ends with to cover a whole subtree rather than one exact path.
SUBTREE = "/*"

_SLASHES = re.compile(r"/{2,}")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")

Requirement = frozenset[str] | None
"""The scopes a path requires (empty: any valid token), or ``None``: public."""


def route_paths(path: str, root_path: str = "") -> tuple[str, ...]:
    """Every path a framework could route this request on, the plain one first.

    Raises :class:`InvalidRequestError` for a path that contains dot segments.
    """
    # The everyday requests: one reading, found without a regular expression.
    if "//" not in path and "/." not in path:
        if not root_path and path[:1] == "/":
            return (path,)
        if (
            root_path
            and path.startswith(root_path)
            and path[len(root_path) : len(root_path) + 1] == "/"
        ):
            return (path[len(root_path) :],)
    readings: list[str] = []
    for candidate in _without_root(path, root_path):
        readings.append(candidate)
        if _ABSOLUTE.match(candidate):
            candidate = urlsplit(candidate).path or "/"
            readings.append(candidate)
        readings.append(_SLASHES.sub("/", candidate))
    if any(_DOT_SEGMENT.search(reading) for reading in readings):
        raise InvalidRequestError(Reason.MALFORMED_REQUEST)
    return tuple(dict.fromkeys(reading or "/" for reading in readings))


def _without_root(path: str, root_path: str) -> list[str]:
    """The path with ``root_path`` removed, as Starlette and as Quart would remove it."""
    if not root_path:
        return [path]
    starlette = path
    if path.startswith(root_path):
        rest = path[len(root_path) :]
        # uvicorn glues root_path in front of an absolute-form target: "/apihttp://h/x".
        if not rest or rest[0] == "/" or _ABSOLUTE.match(rest):
            starlette = rest
    found = path.find(root_path)
    quart = path[found + len(root_path) :] if found >= 0 else path
    return [starlette, quart]


class PathRules:
    """What each path of an application requires.

    :param scopes: scopes required everywhere (an iterable of scope tokens; empty: any valid
        token), or a mapping from path prefix to the scopes it requires. Prefixes match whole
        segments (``/api`` covers ``/api`` and ``/api/items``, not ``/apiary``) and the
        longest one wins. A path no prefix covers requires a valid token with no particular
        scope: nothing is public unless it is listed in ``public``.
    :param public: paths served without any check: exact paths (``/health``), or subtrees
        written with a trailing ``/*`` (``/docs/*`` covers ``/docs`` and everything below).
        An exact public path beats any prefix; otherwise the longest rule wins.
    """

    def __init__(
        self,
        scopes: Iterable[str] | Mapping[str, Iterable[str]] = (),
        public: Iterable[str] = (),
    ) -> None:
        if isinstance(scopes, Mapping):
            if not scopes:
                raise ConfigurationError(
                    "scopes is an empty mapping, which protects nothing: pass scopes=[] to "
                    "require a valid token everywhere, or map path prefixes to scopes"
                )
            rules: list[tuple[str, Requirement]] = [
                (_prefix(path), _scopes_for(path, wanted)) for path, wanted in scopes.items()
            ]
        else:
            rules = [("/", required_scopes(scopes))]
        if isinstance(public, str):
            raise ConfigurationError("public must be a list of paths, not one string")
        self._exact: dict[str, Requirement] = {}
        taken = {prefix for prefix, _ in rules}
        for entry in public:
            if not isinstance(entry, str) or not entry.endswith(SUBTREE):
                self._exact[_path(entry)] = None
                continue
            prefix = _prefix(entry[: -len(SUBTREE)] or "/")
            if prefix == "/":
                raise ConfigurationError(
                    "public=['/*'] makes every path public; to protect nothing, leave the "
                    "middleware out"
                )
            if prefix in taken:
                raise ConfigurationError(f"{entry!r} is both public and protected by scopes")
            taken.add(prefix)
            rules.append((prefix, None))
        self._prefixes = sorted(rules, key=lambda rule: len(rule[0]), reverse=True)
        self._any_token: Requirement = frozenset()

    def required_for(self, path: str) -> Requirement:
        """What one route path requires: its scopes, or ``None`` when it is public."""
        if path in self._exact:
            return self._exact[path]
        for prefix, required in self._prefixes:
            if path.startswith(prefix) or path + "/" == prefix:
                return required
        return self._any_token

    def required(self, path: str, root_path: str = "") -> Requirement:
        """What a request requires, over every reading of its path (:func:`route_paths`):
        ``None`` only if each reading is public, else the union of their scopes."""
        readings = route_paths(path, root_path)
        if len(readings) == 1:
            return self.required_for(readings[0])
        needed: set[str] = set()
        public = True
        for reading in readings:
            required = self.required_for(reading)
            if required is not None:
                public = False
                needed |= required
        return None if public else frozenset(needed)


def _path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigurationError(f"paths start with '/': {value!r}")
    if "//" in value or _DOT_SEGMENT.search(value):
        raise ConfigurationError(f"paths have no empty or dot segments: {value!r}")
    return value


def _prefix(path: str) -> str:
    path = _path(path)
    return path if path.endswith("/") else path + "/"


def _scopes_for(path: str, wanted: object) -> frozenset[str]:
    if wanted is None:
        raise ConfigurationError(
            f"scopes[{path!r}] is None: list public paths in public=[...], and map a prefix "
            "to [] to require any valid token"
        )
    return required_scopes(wanted)  # type: ignore[arg-type]  # checked there
