"""How oauth_shield reaches the authorization server: TLS trust, a client certificate, a
proxy, the User-Agent and extra headers, checked once at construction.

The same :class:`Connection` serves every request a validator makes (metadata, key sets,
introspection) and the token requests of :mod:`oauth_shield.downstream`. TLS contexts are
made once per process for each distinct trust configuration (loading a CA bundle costs tens
of milliseconds), the default one included. Nothing here ever weakens TLS: a context that
does not verify certificates and host names is refused, and so are headers that would carry
credentials to every endpoint or undo a safety rule (``Accept-Encoding``: no compressed
bodies).
"""

from __future__ import annotations

import functools
import json
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx

from ._config import shown
from ._errors import ConfigurationError
from ._version import __version__

#: What the authorization server sees, unless told otherwise: WAFs refuse the libraries'
#: defaults (``python-httpx/...``) and operators want to know who calls.
DEFAULT_USER_AGENT = f"oauth-shield/{__version__}"

# RFC 9110 §5.1 field-name, and a field-value of visible ASCII and spaces (no CR/LF: no
# header injection through configuration).
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x20-\x7e]*")
#: Headers that carry credentials to every endpoint, or that oauth_shield sets itself.
_RESERVED = frozenset(
    {"authorization", "proxy-authorization", "cookie", "host", "content-length"}
    | {"content-type", "transfer-encoding", "accept-encoding", "connection", "te", "upgrade"}
    | {"user-agent", "dpop"}
)


@dataclass(frozen=True, slots=True)
class Connection:
    """The checked connection settings (see :func:`connection`)."""

    verify: ssl.SSLContext = field(repr=False)
    headers: Mapping[str, str]
    proxy: str | None = field(default=None, repr=False)  # may hold the proxy's password

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an ``httpx`` client (or Authlib's, built on it)."""
        options: dict[str, Any] = {"verify": self.verify, "headers": dict(self.headers)}
        if self.proxy is not None:
            options["proxy"] = self.proxy
        return options


def connection(
    *,
    user_agent: str | None = None,
    proxy: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    client_cert: str | os.PathLike[str] | None = None,
    client_key: str | os.PathLike[str] | None = None,
    http_headers: Mapping[str, str] | str | None = None,
) -> Connection:
    """Check the connection settings and build what the HTTP clients need.

    ``http_headers`` may be a JSON object in a string (``OAUTH_SHIELD_HTTP_HEADERS``).
    """
    headers = {"User-Agent": _user_agent(user_agent)}
    headers.update(_extra_headers(http_headers))
    return Connection(
        verify=_context(ca_bundle, ssl_context, client_cert, client_key),
        headers=MappingProxyType(headers),
        proxy=_proxy(proxy),
    )


@functools.cache
def default_connection() -> Connection:
    """The connection of everything configured with none: one per process."""
    return connection()


def _user_agent(value: object) -> str:
    if value is None:
        return DEFAULT_USER_AGENT
    if not isinstance(value, str) or not value.strip() or not _VALUE.fullmatch(value):
        raise ConfigurationError(
            f"user_agent must be printable ASCII; given {shown(value)}", field="user_agent"
        )
    return value


def _extra_headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ConfigurationError(
                "http_headers must be a JSON object of header names and values, such as "
                '{"X-Tenant": "a"}',
                field="http_headers",
            )
    if not isinstance(value, Mapping):
        raise ConfigurationError("http_headers must be a mapping", field="http_headers")
    found: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"http_headers: {shown(name)} is not a header name", field="http_headers"
            )
        if name.lower() in _RESERVED:
            raise ConfigurationError(
                f"http_headers: {name} may not be set here (it would carry credentials to "
                "every endpoint, or oauth_shield sets it itself; use user_agent for "
                "User-Agent)",
                field="http_headers",
                mentions=("user_agent",),
            )
        if not isinstance(text, str) or not _VALUE.fullmatch(text):
            raise ConfigurationError(
                f"http_headers: the value of {name} must be printable ASCII", field="http_headers"
            )
        found[name] = text
    return found


def _proxy(value: object) -> str | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise TypeError(value)
        parsed = httpx.URL(value)
        httpx.Proxy(value)  # the schemes httpx can use: http, https, socks5 (with its extra)
    except (TypeError, ValueError, httpx.InvalidURL):
        raise ConfigurationError(
            "proxy must be a proxy URL such as http://proxy.internal:3128", field="proxy"
        ) from None
    if not parsed.host:
        raise ConfigurationError("proxy has no host", field="proxy")
    return value


def _context(
    ca_bundle: object, ssl_context: object, client_cert: object, client_key: object
) -> ssl.SSLContext:
    if ssl_context is not None:
        if ca_bundle is not None or client_cert is not None or client_key is not None:
            raise ConfigurationError(
                "give ssl_context, or ca_bundle and client_cert: put the CA and the client "
                "certificate in your ssl_context",
                field="ssl_context",
                mentions=("ca_bundle", "client_cert"),
            )
        if not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigurationError("ssl_context must be an ssl.SSLContext", field="ssl_context")
        if ssl_context.verify_mode != ssl.CERT_REQUIRED or not ssl_context.check_hostname:
            raise ConfigurationError(
                "ssl_context must verify certificates and host names (CERT_REQUIRED, "
                "check_hostname): tokens and secrets go over this connection",
                field="ssl_context",
            )
        return ssl_context
    if client_key is not None and client_cert is None:
        raise ConfigurationError("client_key needs client_cert", field="client_key")
    paths = tuple(None if p is None else _path(name, p) for name, p in (
        ("ca_bundle", ca_bundle), ("client_cert", client_cert), ("client_key", client_key),
    ))  # fmt: skip
    return _tls(*paths)


def _path(name: str, value: object) -> str:
    if not isinstance(value, str | os.PathLike):
        raise ConfigurationError(f"{name} must be a file path", field=name)
    path = os.fspath(value)
    if not os.path.isfile(path):
        raise ConfigurationError(f"{name}: no such file {path!r}", field=name)
    return str(path)


@functools.cache
def _tls(
    ca_bundle: str | None = None, client_cert: str | None = None, client_key: str | None = None
) -> ssl.SSLContext:
    """A verifying TLS context per distinct trust configuration, made once per process: the
    default is httpx's (its CA bundle, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``)."""
    name = "ca_bundle"
    try:
        if ca_bundle is None:
            context = httpx.create_ssl_context()
        else:
            context = ssl.create_default_context(cafile=ca_bundle)
        if client_cert is not None:
            name = "client_cert"
            context.load_cert_chain(client_cert, client_key)
    except (ssl.SSLError, OSError, ValueError) as error:
        raise ConfigurationError(
            f"{name}: the file does not hold a usable PEM certificate (or key): "
            f"{type(error).__name__}",
            field=name,
        ) from None
    return context
