"""The URL a request was sent to, as its client names it, for DPoP's ``htu`` (pure, no I/O).

RFC 9449 §4.3 check 9 compares the proof's ``htu`` with "the HTTP URI value for the HTTP
request in which the JWT was received, ignoring any query and fragment parts". Two spellings
of one URL must compare equal, and nothing else may: :func:`normalize_url` applies RFC 3986
§6.2.2 (syntax-based: case of scheme and host, case of percent-encodings, unreserved
characters decoded, dot segments removed) and §6.2.3 (scheme-based: default port dropped,
empty path as ``/``), and refuses what is not a plain absolute ``http(s)`` URL. Everything
else is significant: path case, a trailing slash, an encoded ``/`` (``%2F``), a trailing dot
in a host.

:func:`request_url` rebuilds the public URL of a request as its client saw it, which behind a
reverse proxy is not what the server sees. Its inputs, in order of trust: an explicit public
base URL (configuration); the proxy's ``X-Forwarded-*`` or ``Forwarded`` (RFC 7239) headers,
only when configured, taking the value the trusted proxy added (counted from the right, as
Werkzeug's ``ProxyFix`` does), never one a client could have sent ahead of it; else the
``Host`` header and the connection's scheme.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

Forwarded = Literal["none", "x-forwarded", "forwarded"]

#: Longest URL normalised; an ``htu`` longer than this is refused (servers cap the whole
#: request line at 8 KiB, and the proof at that too).
MAX_URL_LENGTH = 4096
#: Distinct URLs whose normal form is remembered: an API serves a bounded set of paths.
_MEMO_SIZE = 1024
_MEMO: dict[str, str | None] = {}

_DEFAULT_PORTS = {"http": "80", "https": "443"}
# RFC 3986 §2.3 unreserved characters: their percent-encodings are decoded (§6.2.2.2).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)")
# The printable ASCII a path may hold as it is: pchar and "/" (RFC 3986 §3.3), and "%".
_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# A registered name without percent-encodings, or a bracketed IPv6 literal (RFC 3986 §3.2.2).
_HOST = re.compile(r"[a-z0-9\-._~!$&'()*+,;=]+|\[[0-9a-f:.]+\]")
_PORT = re.compile(r"[0-9]{0,5}")
# What a Host header or a forwarded host may be: host [":" port], nothing that ends the
# authority early ("/", "?", "#", "@") or splits a header.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# A mount prefix: an absolute path, or nothing.
_PREFIX = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*)?")
# RFC 7239 §4: forwarded-pair = token "=" ( token / quoted-string ), pairs joined by ";".
_PAIR = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)=("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')


def normalize_url(url: str) -> str | None:
    """``scheme://host[:port]/path`` in normal form, without query and fragment, or ``None``
    if ``url`` is not an absolute ``http``/``https`` URL (RFC 3986 §6.2.2, §6.2.3).

    >>> normalize_url("HTTPS://API.Example.COM:443/a/./b/../%7euser?q=1#top")
    'https://api.example.com/a/~user'
    """
    if type(url) is not str:
        return None
    try:
        return _MEMO[url]
    except KeyError:
        pass
    result = _normalize(url)
    if len(_MEMO) >= _MEMO_SIZE:
        _MEMO.clear()
    _MEMO[url] = result
    return result


def _normalize(url: str) -> str | None:
    # Only printable ASCII without spaces: urlsplit would silently drop tabs and newlines.
    if not 0 < len(url) <= MAX_URL_LENGTH or not url.isascii() or not url.isprintable():
        return None
    if " " in url:
        return None
    found = _URL.match(url)
    if found is None:
        return None
    scheme, authority, path = found.groups()
    scheme = scheme.lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port is None or "@" in authority:  # RFC 9110 §4.2.4: no userinfo in http(s)
        return None
    host, port = _split_authority(authority.lower())
    if host is None or not _HOST.fullmatch(host) or not _PORT.fullmatch(port):
        return None
    port = port.lstrip("0") or ("0" if port else "")
    if port and int(port) > 65535:
        return None
    netloc = host if port in ("", default_port) else f"{host}:{port}"
    path = _normal_path(path)
    return None if path is None else f"{scheme}://{netloc}{path}"


def _split_authority(authority: str) -> tuple[str | None, str]:
    """``(host, port)``; the port is ``""`` when absent or empty (RFC 3986 §3.2.3)."""
    if authority.startswith("["):
        end = authority.find("]")
        rest = authority[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return None, ""
        return authority[: end + 1], rest[1:]
    host, _, port = authority.partition(":")
    return (host or None), port


def _normal_path(path: str) -> str | None:
    if not _PATH.fullmatch(path):
        path = _encode_others(path)
    if "%" in path:
        if _BAD_PERCENT.search(path):
            return None
        path = _PERCENT.sub(_normal_escape, path)
    return _remove_dot_segments(path) if "." in path else (path or "/")


def _encode_others(path: str) -> str:
    """Percent-encode the printable ASCII a path may not hold as it is (``"<>[\\]^`{|}``),
    as a browser does, so that a client that sent such a path raw still matches."""
    return "".join(c if _PATH.fullmatch(c) else f"%{ord(c):02X}" for c in path)


def _normal_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: ``.`` and ``..`` segments resolved."""
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    out: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
            continue
        if index == last:  # "/a/.." and "/a/." keep the slash: "/a/" and "/a/"
            out.append("")
    return "/" + "/".join(out)


def request_url(
    *,
    scheme: str,
    host: str | None,
    path: str | bytes,
    root_path: str = "",
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    public_url: str | None = None,
    forwarded: Forwarded = "none",
    hops: int = 1,
) -> str | None:
    """The normalised public URL of a request (without query), or ``None`` if it cannot be
    placed (no host, a malformed host or forwarded value).

    ``path`` is the path as it arrived on the wire, still percent-encoded: ASGI ``raw_path``
    (bytes), or WSGI ``RAW_URI``/``REQUEST_URI`` (text holding bytes as Latin-1, PEP 3333).
    The prefix a proxy stripped comes, in order, from ``public_url``'s path, a trusted
    ``X-Forwarded-Prefix``, or ``root_path`` (ASGI ``root_path``, WSGI ``SCRIPT_NAME``)
    unless the wire path already starts with it. ``public_url`` (``https://api.example.com``
    or ``https://example.com/api``) overrides scheme and host; else ``forwarded`` names the
    headers the proxy sets, and ``hops`` how many trusted proxies append to them.
    """
    wire = _wire_path(path)
    if public_url is not None:
        base = normalize_url(public_url)
        return None if base is None else normalize_url(base.rstrip("/") + wire)
    prefix: str | None = None
    port: str | None = None
    if forwarded != "none":
        found = _forwarded(_header_values(headers), forwarded, hops)
        if found is None:
            return None
        proto, forwarded_host, port, prefix = found
        scheme, host = proto or scheme, forwarded_host or host
    if not host or not _AUTHORITY.fullmatch(host) or not _SCHEME.fullmatch(scheme):
        return None
    if port and not host.endswith("]") and ":" not in host:
        host = f"{host}:{port}"
    if prefix is None:
        at_root = root_path and (wire == root_path or wire.startswith(root_path.rstrip("/") + "/"))
        prefix = "" if at_root else root_path
    if not _PREFIX.fullmatch(prefix):
        return None
    return normalize_url(f"{scheme}://{host}{prefix.rstrip('/')}{wire}")


def _wire_path(path: str | bytes) -> str:
    text = path.decode("latin-1") if isinstance(path, bytes) else path
    if not text.isascii() or not text.isprintable() or " " in text:
        # Bytes beyond printable ASCII are percent-encoded, as the client's URL had them.
        raw = path if isinstance(path, bytes) else _as_bytes(text)
        text = "".join(chr(b) if 0x20 < b < 0x7F else f"%{b:02X}" for b in raw)
    text = text.partition("?")[0]
    return text if text.startswith("/") else "/" + text


def _as_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")  # PEP 3333: WSGI carries bytes as Latin-1 text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _header_values(headers: Iterable[tuple[str | bytes, str | bytes]]) -> dict[str, str]:
    """Header name (lower case) -> its lines joined by ``,`` (RFC 9110 §5.3)."""
    joined: dict[str, str] = {}
    for name, value in headers:
        key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        joined[key] = f"{joined[key]},{text}" if key in joined else text
    return joined


def _forwarded(
    headers: dict[str, str], kind: Forwarded, hops: int
) -> tuple[str | None, str | None, str | None, str | None] | None:
    """``(proto, host, port, prefix)`` as the ``hops``-th proxy from the right set them, each
    ``None`` when absent; ``None`` if a trusted ``Forwarded`` header is malformed."""
    if kind == "forwarded":
        raw = headers.get("forwarded")
        elements = [] if raw is None else _forwarded_elements(raw)
        if elements is None:
            return None
        element = elements[-hops] if len(elements) >= hops else {}
        return element.get("proto"), element.get("host"), None, None
    proto, host, port, prefix = (
        _rightmost(headers.get(f"x-forwarded-{name}"), hops)
        for name in ("proto", "host", "port", "prefix")
    )
    return proto, host, port, prefix


def _rightmost(value: str | None, hops: int) -> str | None:
    """The value the ``hops``-th proxy from the right appended; ``None`` if there is none."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",")]
    return (items[-hops] or None) if len(items) >= hops else None


def _forwarded_elements(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 §4 elements as ``{name: value}`` (names in lower case), or ``None``."""
    elements: list[dict[str, str]] = [{}]
    position = 0
    while position < len(value):
        pair = _PAIR.match(value, position)
        if pair is None:
            return None
        name, text = pair.group(1).lower(), pair.group(2)
        if text.startswith('"'):
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        elements[-1][name] = text
        position = pair.end()
        if position < len(value):
            if value[position] == ",":
                elements.append({})
            elif value[position] != ";":
                return None
            position += 1
    return elements
