"""Every request to the authorization server goes through here.

One boundary for the rules that make fetching safe: https except on loopback, every URL
checked by the parser that will send it (httpx's), no redirects, one total deadline per
request, a cap on the body, no compressed bodies (a small gzip can inflate without bound),
strict JSON. Every failure, whatever raised it, becomes a :class:`FetchError`, which names
what went wrong and where, and never carries the server's body, the request (it may hold a
token) or the original exception.

Failure kinds, a closed set (``unreachable``: no usable answer arrived at all; the key set
then backs off and introspection answers 503, as for a 5xx, 408 or 429):

================  ==========================================================  ===========
kind              what happened                                               unreachable
================  ==========================================================  ===========
dns               the host name does not resolve                              yes
connect           the connection was refused or could not be made             yes
tls               TLS failed: certificate verification, or the handshake      yes
timeout           no complete answer within ``http_timeout``                  yes
network           the connection broke during the exchange                    yes
status_<n>        an HTTP status other than the expected one                  no
redirect          a 3xx (never followed)                                      no
too_large         a body over ``max_response_bytes``                          no
encoded_body      a ``Content-Encoding`` other than identity                  no
malformed_json    a body that is not one strict JSON object                   no
insecure_url      a URL that breaks the https rule (or downgrades the issuer) no
invalid_url       a URL that does not parse, or not as httpx parses it        no
issuer_mismatch   metadata naming another issuer (``_discovery``)             no
no_endpoint       metadata without the endpoint needed (``_discovery``)       no
no_usable_keys    a key set without a key we may use (``_keyset``)            no
rate_limited      the introspection call budget is spent (``_introspector``)  yes
internal_error    an unexpected exception: a bug                             no
================  ==========================================================  ===========
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._config import INSECURE_URL_PROBLEMS, Settings, url_error, without_credentials
from ._config import url_problem as _config_url_problem
from ._connection import Connection, default_connection
from ._diagnosis import printable
from ._issuers import EXAMPLE_TENANT, TENANT
from ._json import parse_object
from ._telemetry import LOG_ONLY, Telemetry

logger = logging.getLogger("oauth_shield.http")

#: Set on every request, after the configured extra headers (which may not override them).
_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}
#: A URL or detail read back from a shared failure marker is cut here (it crossed Redis).
MAX_MARKER_TEXT = 300
_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")
_TLS_FIX = (
    "if the server's certificate comes from a private CA, trust that CA: set ca_bundle "
    "(OAUTH_SHIELD_CA_BUNDLE) to a PEM file that holds it, or SSL_CERT_FILE for the whole "
    "process; the certificate must also name the host in the URL "
    "(docs/troubleshooting.md#a-private-ca-tls)"
)
#: kind -> (what happened, the usual fix)
_DESCRIPTIONS = {
    "dns": ("the host name does not resolve", "check the host name in the URL"),
    "connect": (
        "no connection could be made",
        "check that the server runs, on this port, and that this host may reach it "
        "(firewall, proxy)",
    ),
    "tls": ("TLS failed", _TLS_FIX),
    "timeout": (
        "no complete answer within http_timeout",
        "check the network path; raise http_timeout if the server is just slow",
    ),
    "network": ("the connection broke during the exchange", "usually transient; retried"),
    "redirect": (
        "the server answered with a redirect, which is never followed",
        "configure the URL it redirects to (a trailing slash? http to https?)",
    ),
    "too_large": (
        "the answer is larger than max_response_bytes",
        "raise max_response_bytes if the document is really this large",
    ),
    "encoded_body": (
        "the answer is compressed (Content-Encoding), which is refused",
        "have the server or the proxy in front of it send identity encoding",
    ),
    "malformed_json": (
        "the answer is not one JSON object",
        "an HTML page usually means a wrong path, a login page or a proxy in between: "
        "open the URL and check",
    ),
    "insecure_url": ("the URL is refused", None),
    "invalid_url": ("the URL is refused", None),
    "issuer_mismatch": (
        "the metadata names another issuer, so none of it is used (mix-up defence, RFC 8414 §3.3)",
        None,
    ),
    "no_endpoint": ("the metadata lacks an endpoint", None),
    "no_usable_keys": (
        "the key set has no key we may use",
        "compare the keys' kty, crv and alg with algorithms (OAUTH_SHIELD_ALGORITHMS); "
        "DEBUG on oauth_shield.keys lists each skipped key and why",
    ),
    "rate_limited": ("the introspection call budget is spent", "see introspection_rate"),
    "internal_error": ("an unexpected error (a bug in oauth_shield: please report it)", None),
}


class FetchError(Exception):
    """A request to the authorization server failed. ``kind`` is one of the closed set in the
    module docstring, ``url`` where (without credentials or query), ``unreachable`` whether no
    usable answer arrived at all (network, timeout), as opposed to an answer we refuse.
    ``detail`` and ``hint`` refine the explanation (see :meth:`explain`); both are sanitised,
    for a server may have chosen them."""

    def __init__(
        self,
        kind: str,
        *,
        url: str | None = None,
        unreachable: bool = False,
        detail: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(kind)
        self.kind = kind
        self.url = None if url is None else printable(without_credentials(url), MAX_MARKER_TEXT)
        self.unreachable = unreachable
        self.detail = None if detail is None else printable(detail, MAX_MARKER_TEXT)
        self.hint = None if hint is None else printable(hint, 2 * MAX_MARKER_TEXT)

    def marker(self) -> dict[str, object]:
        """This failure as a value another process can read (see ``_shared``)."""
        found: dict[str, object] = {"failed": self.kind, "unreachable": self.unreachable}
        for name in ("url", "detail", "hint"):
            if (value := getattr(self, name)) is not None:
                found[name] = value
        return found

    @classmethod
    def from_marker(cls, value: Mapping[str, object]) -> FetchError | None:
        """The failure a shared value records, if it records one."""
        kind = value.get("failed")
        if not isinstance(kind, str):
            return None
        text = {name: value.get(name) for name in ("url", "detail", "hint")}
        return cls(
            kind if _KIND.fullmatch(kind) else "internal_error",
            unreachable=value.get("unreachable") is True,
            **{name: found for name, found in text.items() if isinstance(found, str)},
        )

    @property
    def transient(self) -> bool:
        """The server could not answer now (unreachable, 5xx, 408, 429): a retry may work.
        Anything else is an answer we refuse."""
        return self.unreachable or self.kind.startswith("status_5") or self.kind in _TRANSIENT

    def explain(self) -> str:
        """One sentence for the log: what happened, where, and the usual fix."""
        what, fix = _describe(self.kind)
        text = what + (f" ({self.detail})" if self.detail else "") + f" [{self.kind}]"
        if self.url:
            text += f" at {self.url}"
        hint = self.hint or fix
        return f"{text}; {hint}" if hint else text


_TRANSIENT = frozenset({"status_408", "status_429"})


def _describe(kind: str) -> tuple[str, str | None]:
    if kind in _DESCRIPTIONS:
        return _DESCRIPTIONS[kind]
    status = kind.removeprefix("status_")
    if status == kind or not status.isdigit():
        return "the request failed", None
    what = f"the server answered HTTP {status}"
    if status == "404":
        return what, "check the URL"
    if status in ("400", "401", "403"):
        return what, (
            "for introspection, check client_id and client_secret (and introspection_auth); "
            "otherwise something in between (a proxy) wants credentials"
        )
    if status.startswith("5") or status in ("408", "429"):
        return what, "the server is in trouble; retried with backoff"
    return what, None


def url_problem(url: object, allow_http: bool = False) -> tuple[str, str] | None:
    """``(kind, why)`` if ``url`` may not be requested, else ``None``: the rules of
    :func:`oauth_shield._config.url_problem`, then httpx's own parser, which refuses hosts that
    ``urllib`` lets through (``999.1.1.1``, an invalid IDNA label) and would otherwise raise
    its own exceptions at request time."""
    problem = _config_url_problem(url, allow_http)
    if problem is not None:
        return ("insecure_url" if problem in INSECURE_URL_PROBLEMS else "invalid_url"), problem
    try:
        httpx.Request("GET", str(url))  # parses the URL and derives the Host header (IDNA)
    except (httpx.InvalidURL, UnicodeError, ValueError) as error:  # IDNAError is a UnicodeError
        return "invalid_url", f"is not a URL httpx can request ({printable(str(error), 80)})"
    return None


def check_urls(settings: Settings) -> None:
    """The configured URLs, checked at construction by the parser that will request them."""
    configured: list[tuple[str, str | None]] = [("issuer", issuer) for issuer in settings.issuers]
    configured += [("jwks_uri", url) for url in dict.fromkeys(settings.jwks_uris.values())]
    configured.append(("introspection_endpoint", settings.introspection_endpoint))
    for field, url in configured:
        if url is None:
            continue
        found = url_problem(url.replace(TENANT, EXAMPLE_TENANT), settings.insecure_http)
        if found is not None:
            raise url_error(field, url, found[1])


@dataclass(frozen=True, slots=True)
class JSONResponse:
    status_code: int
    data: dict[str, Any]
    headers: httpx.Headers


class HTTPClient:
    """A lazily created ``httpx.AsyncClient`` with the project's fetch rules."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_http: bool = False,
        connection: Connection | None = None,
    ) -> None:
        self.allow_http = allow_http
        self.timeout = timeout
        self._max_bytes = max_bytes
        self._transport = transport
        self._connection = connection or default_connection()
        self._client: httpx.AsyncClient | None = None
        self.telemetry: Telemetry = LOG_ONLY  # the validator's: a client span per request

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            options = self._connection.client_options()
            options["headers"].update(_HEADERS)
            if self._transport is not None:  # the transport brings its own TLS and proxy
                options.pop("proxy", None)
                options["verify"] = True
            self._client = httpx.AsyncClient(
                transport=self._transport, follow_redirects=False, timeout=self.timeout, **options
            )
        return self._client

    async def get_json(self, url: str) -> JSONResponse:
        return await self.send("GET", url)

    async def send(
        self,
        method: str,
        url: str,
        *,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        accept_status: tuple[int, ...] = (200,),
    ) -> JSONResponse:
        """Send one request and return its JSON object body, or raise :class:`FetchError`."""
        if self.telemetry.sink is None:
            return await self._send(method, url, form, headers, accept_status)
        # An HTTP client span (OpenTelemetry semantic conventions): never the body or headers.
        attributes: dict[str, str | int | float | bool] = {
            "http.request.method": method,
            "url.full": without_credentials(url),
        }
        with self.telemetry.span(method, attributes, client=True) as span:
            try:
                response = await self._send(method, url, form, headers, accept_status)
            except FetchError as error:
                status = error.kind.removeprefix("status_")
                if status.isdigit():
                    span.set("http.response.status_code", int(status))
                span.fail(error.kind)
                raise
            span.set("http.response.status_code", response.status_code)
            return response

    async def _send(
        self,
        method: str,
        url: str,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        accept_status: tuple[int, ...],
    ) -> JSONResponse:
        found = url_problem(url, self.allow_http)
        if found is not None:
            raise FetchError(found[0], url=url, detail=f"the URL {found[1]}")
        shown = without_credentials(url)  # as logged: userinfo and query may be secret
        started = time.perf_counter()
        outcome: JSONResponse | FetchError
        try:
            async with asyncio.timeout(self.timeout):
                exchanged = await self._exchange(method, url, form, headers, accept_status)
            outcome = exchanged if isinstance(exchanged, JSONResponse) else FetchError(exchanged)
        except (TimeoutError, httpx.TimeoutException):
            outcome = FetchError("timeout", unreachable=True, detail=f"{self.timeout:g} s")
        except httpx.HTTPError as error:
            outcome = _translate(error)
        except (httpx.InvalidURL, UnicodeError):
            outcome = FetchError("invalid_url")
        except Exception as error:  # validate() raises AuthError only: nothing may escape
            logger.error("%s %s: unexpected %s (a bug)", method, shown, type(error).__name__)
            outcome = FetchError("internal_error")
        elapsed = (time.perf_counter() - started) * 1000
        if isinstance(outcome, FetchError):
            logger.debug("%s %s failed: %s after %.1f ms", method, shown, outcome.kind, elapsed)
            raise FetchError(
                outcome.kind, url=url, unreachable=outcome.unreachable, detail=outcome.detail
            )
        logger.debug("%s %s: %d in %.1f ms", method, shown, outcome.status_code, elapsed)
        return outcome

    async def _exchange(
        self,
        method: str,
        url: str,
        form: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        accept_status: tuple[int, ...],
    ) -> JSONResponse | str:
        client = self._get_client()
        request = client.build_request(method, url, data=form, headers=headers)
        response = await client.send(request, stream=True)
        try:
            if response.status_code not in accept_status:
                return "redirect" if response.is_redirect else f"status_{response.status_code}"
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                return "encoded_body"
            body = await self._read_capped(response)
        finally:
            await response.aclose()
        if body is None:
            return "too_large"
        data = parse_object(body)
        if data is None:
            return "malformed_json"
        return JSONResponse(response.status_code, data, response.headers)

    async def _read_capped(self, response: httpx.Response) -> bytes | None:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # identity only, checked above
            size += len(chunk)
            if size > self._max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def forget(self) -> httpx.AsyncClient | None:
        """Drop the client without closing it (its connections belong to a loop that ended,
        or to the parent process); return it."""
        client, self._client = self._client, None
        return client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what caused it (httpx wraps httpcore, which wraps the socket's error)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 10:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _translate(error: httpx.HTTPError) -> FetchError:
    """A transport failure by its kind: DNS, refused connection, TLS, or a broken exchange."""
    for cause in _causes(error):
        if isinstance(cause, socket.gaierror):
            return FetchError("dns", unreachable=True, detail=cause.strerror)
        if isinstance(cause, ssl.SSLError):  # the verify message, or OpenSSL's reason code
            said = getattr(cause, "verify_message", None) or getattr(cause, "reason", None)
            return FetchError("tls", unreachable=True, detail=str(said or "handshake failed"))
        if isinstance(cause, ConnectionRefusedError):
            return FetchError("connect", unreachable=True, detail="connection refused")
    if isinstance(error, httpx.ConnectError | httpx.ProxyError):
        return FetchError("connect", unreachable=True)
    return FetchError("network", unreachable=True)
