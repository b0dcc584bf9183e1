"""Call downstream services with a token made for them, never with the caller's.

Forwarding the inbound ``Authorization`` header hands the caller's token to every service
behind you, with an audience that was never meant for them. Instead:

- :class:`ClientCredentialsAuth`: the service's own token (RFC 6749 §4.4), for calls made on
  its own behalf;
- :class:`TokenExchanger` / :class:`TokenExchangeAuth`: the caller's token exchanged for one
  meant for the downstream audience (RFC 8693), for calls made on the caller's behalf;
- :func:`forward_headers` / :func:`response_headers`: what may cross a proxy hop, by allowlist.

Both ``httpx.Auth`` classes work with sync and async httpx clients. Tokens come from Authlib's
httpx OAuth 2.0 client, are cached until shortly before they expire, and are refreshed once for
all concurrent callers; a failed request makes calls fail at once for a second rather than
each asking again. A 401 from the downstream service discards the cached token and retries
once with a fresh one. The token endpoint must be https (plain http on loopback only).

>>> auth = ClientCredentialsAuth(                                          # doctest: +SKIP
...     token_endpoint=..., client_id=..., client_secret=...)
>>> async with httpx.AsyncClient(auth=auth) as client:
...     await client.get("https://orders.internal/api/orders")
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import warnings
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from typing import Any, AnyStr, Unpack

import httpx

from . import _fork
from ._arguments import ConnectionOptions
from ._cache import BoundedCache
from ._config import shown, url_error
from ._connection import Connection, connection
from ._http import url_problem
from ._introspection import basic_authorization
from ._secret import Secret
from ._token import token_digest

try:
    with warnings.catch_warnings():
        # Authlib 1.9 prefers httpx2 and deprecates its httpx fallback; oauth_shield is built on
        # httpx, so the fallback is what we use (see docs/design.md). authlib.deprecate installs
        # an "always" filter when imported: ours must come after it to take precedence.
        from authlib.deprecate import AuthlibDeprecationWarning

        warnings.simplefilter("ignore", AuthlibDeprecationWarning)
        from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client
except ImportError as error:  # Authlib is the `downstream` extra: nothing else needs it
    raise ImportError(
        "oauth_shield.downstream needs Authlib: pip install 'oauth-shield[downstream]'"
    ) from error


def _for_authlib(client_class: type, transport: Any) -> Any:
    """``transport`` as Authlib's client class can use it.

    Authlib builds its clients on httpx2 when that is installed (the ``mcp`` SDK brings it),
    and httpx2 refuses an httpx transport; the caller's transport is then bridged: each token
    request is handed to it as an httpx request, and its answer back as an httpx2 response.
    """
    if transport is None or issubclass(client_class, httpx.Client | httpx.AsyncClient):
        return transport
    base = next(c for c in client_class.__mro__ if not c.__module__.startswith("authlib"))
    http2 = sys.modules[base.__module__.split(".")[0]]
    if issubclass(client_class, http2.AsyncClient):

        class AsyncBridge(http2.AsyncBaseTransport):  # type: ignore[name-defined,misc]
            async def handle_async_request(self, request: Any) -> Any:
                sent = _request(request, await request.aread())
                answer = await transport.handle_async_request(sent)
                return _response(http2, answer, await answer.aread())

        return AsyncBridge()

    class Bridge(http2.BaseTransport):  # type: ignore[name-defined,misc]
        def handle_request(self, request: Any) -> Any:
            answer = transport.handle_request(_request(request, request.read()))
            return _response(http2, answer, answer.read())

    return Bridge()


def _request(request: Any, body: bytes) -> httpx.Request:
    return httpx.Request(
        request.method, str(request.url), headers=request.headers.raw, content=body
    )


def _response(http2: Any, answer: httpx.Response, body: bytes) -> Any:
    # The body is decoded already: the headers that described its transfer no longer apply.
    dropped = {b"content-encoding", b"content-length", b"transfer-encoding"}
    headers = [(k, v) for k, v in answer.headers.raw if k.lower() not in dropped]
    return http2.Response(answer.status_code, headers=headers, content=body)


__all__ = [
    "ClientCredentialsAuth",
    "DownstreamAuthError",
    "TokenExchangeAuth",
    "TokenExchanger",
    "forward_headers",
    "response_headers",
]

#: Refresh a token this long before it expires (or at 90 % of its life, if that is sooner).
REFRESH_LEEWAY = 30.0
#: Assumed lifetime of a token whose response gives no expires_in.
DEFAULT_LIFETIME = 300.0
#: Exchanged tokens remembered, by digest of the subject token.
EXCHANGE_CACHE_SIZE = 10_000
#: After a failed token request, how long calls fail at once without asking again.
FAILURE_BACKOFF = 1.0
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class DownstreamAuthError(Exception):
    """No token could be obtained for a downstream call. Names the endpoint and the OAuth error
    code, never a secret or the server's body."""


class _Grant:
    """One token request at one token endpoint, through Authlib, sync or async."""

    def __init__(
        self,
        token_endpoint: str,
        client_id: str,
        client_secret: str | Secret,
        auth_method: str,
        timeout: float,
        transport: httpx.BaseTransport | None,
        async_transport: httpx.AsyncBaseTransport | None,
        insecure_http: bool,
        reach: Connection,
    ) -> None:
        # Checked by httpx's parser too, which will send the request (not only urllib's).
        if (found := url_problem(token_endpoint, insecure_http)) is not None:
            raise url_error("token_endpoint", token_endpoint, found[1])
        self.token_endpoint = token_endpoint
        self._secret = client_secret if isinstance(client_secret, Secret) else Secret(client_secret)
        self._options: dict[str, Any] = {
            "client_id": client_id,
            "token_endpoint_auth_method": auth_method,
            "timeout": timeout,
            "follow_redirects": False,
        }
        self._transport = transport
        self._async_transport = async_transport
        self._reach = reach

    def _client(self, cls: Any, transport: Any) -> Any:
        options = {**self._options, **self._reach.client_options()}
        if transport is not None:  # the transport brings its own TLS and proxy
            options.pop("proxy", None)
            options["verify"] = True
        transport = _for_authlib(cls, transport)
        client = cls(client_secret=self._secret.reveal(), transport=transport, **options)
        # Authlib's client_secret_basic skips the form-encoding RFC 6749 §2.3.1 asks for.
        client.register_client_auth_method(("client_secret_basic", _form_encoded_basic))
        return client

    def fetch(self, params: Mapping[str, str]) -> tuple[Secret, float]:
        failure = None
        try:
            with self._client(OAuth2Client, self._transport) as client:
                token = client.fetch_token(self.token_endpoint, **params)
        except Exception as error:  # translated below, without its text
            failure = error
        return self._result(token if failure is None else None, failure)

    async def afetch(self, params: Mapping[str, str]) -> tuple[Secret, float]:
        failure = None
        try:
            async with self._client(AsyncOAuth2Client, self._async_transport) as client:
                token = await client.fetch_token(self.token_endpoint, **params)
        except Exception as error:
            failure = error
        return self._result(token if failure is None else None, failure)

    def _result(
        self, token: Mapping[str, Any] | None, failure: BaseException | None
    ) -> tuple[Secret, float]:
        if token is None or not isinstance(token.get("access_token"), str):
            if failure is None:
                code = "no access_token in the answer"
            else:
                code = getattr(failure, "error", None) or type(failure).__name__
            raise DownstreamAuthError(f"no token from {shown(self.token_endpoint)} ({code})")
        lifetime = token.get("expires_in")
        lifetime = (
            float(lifetime)
            if isinstance(lifetime, int | float) and lifetime > 0
            else DEFAULT_LIFETIME
        )
        refresh_in = max(min(lifetime - REFRESH_LEEWAY, lifetime * 0.9), 0.0)
        return Secret(token["access_token"]), time.monotonic() + refresh_in


def _form_encoded_basic(
    client: Any, method: str, uri: str, headers: Any, body: Any
) -> tuple[Any, Any, Any]:
    headers["Authorization"] = basic_authorization(client.client_id, client.client_secret)
    return uri, headers, body


class _Tokens:
    """A cached token, refreshed once for all waiting callers (threads or tasks). After a
    failed request, callers fail at once for :data:`FAILURE_BACKOFF` instead of each asking
    the token endpoint again."""

    def __init__(self) -> None:
        self.token: Secret | None = None
        self.refresh_at = 0.0
        self.lock = threading.Lock()
        self.task: asyncio.Task[tuple[Secret, float]] | None = None
        self.failure = ""
        self.failed_until = 0.0
        _fork.register(self)

    def _after_fork(self) -> None:
        """In a forked child: the lock may be held by a thread that does not exist here, and
        the task belongs to the parent's loop; the cached token stays good."""
        self.lock = threading.Lock()
        _fork.keep(self.task)
        self.task = None

    def fresh(self) -> Secret | None:
        now = time.monotonic()
        if self.token is not None and now < self.refresh_at:
            return self.token
        if now < self.failed_until:
            raise DownstreamAuthError(self.failure)
        return None

    def store(self, result: tuple[Secret, float]) -> Secret:
        self.token, self.refresh_at = result
        return self.token

    def _failed(self, error: DownstreamAuthError) -> None:
        self.failure, self.failed_until = str(error), time.monotonic() + FAILURE_BACKOFF

    def _attempt(self, fetch: Any) -> tuple[Secret, float]:
        try:
            return fetch()  # type: ignore[no-any-return]
        except DownstreamAuthError as error:
            self._failed(error)
            raise

    async def _aattempt(self, afetch: Any) -> tuple[Secret, float]:
        try:
            return await afetch()  # type: ignore[no-any-return]
        except DownstreamAuthError as error:
            self._failed(error)
            raise

    def discard(self, token: Secret) -> None:
        if self.token is token:
            self.token = None

    def get(self, fetch: Any) -> Secret:
        if (token := self.fresh()) is not None:
            return token
        with self.lock:  # threads wait for the one fetch in progress
            return self.fresh() or self.store(self._attempt(fetch))

    async def aget(self, afetch: Any) -> Secret:
        if (token := self.fresh()) is not None:
            return token
        task = self.task
        # A task of another loop (asyncio.run() twice, a test's loop) cannot be awaited here.
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self.task = asyncio.ensure_future(self._aattempt(afetch))
        return self.store(await asyncio.shield(task))


class _BearerAuth(httpx.Auth):
    """Attach a token, retry once with a fresh one on 401."""

    def _tokens(self) -> _Tokens:
        raise NotImplementedError

    def _fetch(self) -> tuple[Secret, float]:
        raise NotImplementedError

    async def _afetch(self) -> tuple[Secret, float]:
        raise NotImplementedError

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        tokens = self._tokens()
        token = tokens.get(self._fetch)
        request.headers["Authorization"] = f"Bearer {token.reveal()}"
        response = yield request
        if response.status_code == 401:
            tokens.discard(token)
            request.headers["Authorization"] = f"Bearer {tokens.get(self._fetch).reveal()}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        tokens = self._tokens()
        token = await tokens.aget(self._afetch)
        request.headers["Authorization"] = f"Bearer {token.reveal()}"
        response = yield request
        if response.status_code == 401:
            tokens.discard(token)
            request.headers["Authorization"] = (
                f"Bearer {(await tokens.aget(self._afetch)).reveal()}"
            )
            yield request


def _form(**params: str | None) -> dict[str, str]:
    """A token request's form parameters: the ones given a value."""
    return {name: value for name, value in params.items() if value is not None}


class ClientCredentialsAuth(_BearerAuth):
    """The service's own access token, by the client-credentials grant (RFC 6749 §4.4).

    :param resource: the downstream API (RFC 8707 resource indicator), if the server wants one.
    :param transport: / :param async_transport: httpx transports for the token requests.
    :param insecure_http: allow a plain-http token endpoint off loopback (tests only).

    ``user_agent``, ``proxy``, ``ca_bundle``, ``ssl_context``, ``client_cert`` (mutual TLS),
    ``client_key`` and ``http_headers`` set how the token endpoint is reached, as for
    :class:`~oauth_shield.TokenValidator`.
    """

    def __init__(
        self,
        *,
        token_endpoint: str,
        client_id: str,
        client_secret: str | Secret,
        scope: str | None = None,
        resource: str | None = None,
        audience: str | None = None,
        auth_method: str = "client_secret_basic",
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        insecure_http: bool = False,
        **connection_options: Unpack[ConnectionOptions],
    ) -> None:
        self._grant = _Grant(
            token_endpoint,
            client_id,
            client_secret,
            auth_method,
            timeout,
            transport,
            async_transport,
            insecure_http,
            connection(**connection_options),
        )
        self._params = _form(
            grant_type="client_credentials", scope=scope, resource=resource, audience=audience
        )
        self._cache = _Tokens()

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(token_endpoint={shown(self._grant.token_endpoint)})"

    def _tokens(self) -> _Tokens:
        return self._cache

    def _fetch(self) -> tuple[Secret, float]:
        return self._grant.fetch(self._params)

    async def _afetch(self) -> tuple[Secret, float]:
        return await self._grant.afetch(self._params)


class TokenExchanger:
    """Exchanges callers' tokens for tokens meant for one downstream audience (RFC 8693).

    Long-lived (one per downstream service): it caches an exchanged token per subject token,
    keyed by the subject's digest, until shortly before it expires.

    >>> orders = TokenExchanger(                                           # doctest: +SKIP
    ...     token_endpoint=..., client_id=..., client_secret=..., audience="https://orders.internal")
    >>> httpx.AsyncClient(auth=orders.auth(current_bearer))
    """

    def __init__(
        self,
        *,
        token_endpoint: str,
        client_id: str,
        client_secret: str | Secret,
        audience: str | None = None,
        resource: str | None = None,
        scope: str | None = None,
        auth_method: str = "client_secret_basic",
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        insecure_http: bool = False,
        **connection_options: Unpack[ConnectionOptions],
    ) -> None:
        self._grant = _Grant(
            token_endpoint,
            client_id,
            client_secret,
            auth_method,
            timeout,
            transport,
            async_transport,
            insecure_http,
            connection(**connection_options),
        )
        self._params = _form(
            grant_type=TOKEN_EXCHANGE,
            subject_token_type=ACCESS_TOKEN_TYPE,
            requested_token_type=ACCESS_TOKEN_TYPE,
            audience=audience,
            resource=resource,
            scope=scope,
        )
        self._cache: BoundedCache[_Tokens] = BoundedCache(EXCHANGE_CACHE_SIZE)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenExchanger(token_endpoint={shown(self._grant.token_endpoint)})"

    def auth(self, subject_token: str | Secret) -> TokenExchangeAuth:
        """An ``httpx.Auth`` sending, for the caller whose token this is, an exchanged token."""
        subject = subject_token if isinstance(subject_token, Secret) else Secret(subject_token)
        return TokenExchangeAuth(self, subject)

    def _tokens_for(self, subject: Secret) -> _Tokens:
        digest = token_digest(subject.reveal())
        with self._lock:
            tokens = self._cache.get(digest, 0.0)
            if tokens is None:
                tokens = _Tokens()
                self._cache.put(digest, tokens, float("inf"))
        return tokens

    def _fetch(self, subject: Secret) -> tuple[Secret, float]:
        return self._grant.fetch({**self._params, "subject_token": subject.reveal()})

    async def _afetch(self, subject: Secret) -> tuple[Secret, float]:
        return await self._grant.afetch({**self._params, "subject_token": subject.reveal()})


class TokenExchangeAuth(_BearerAuth):
    """Made by :meth:`TokenExchanger.auth`: one caller's token, exchanged."""

    def __init__(self, exchanger: TokenExchanger, subject: Secret) -> None:
        self._exchanger = exchanger
        self._subject = subject

    def __repr__(self) -> str:
        return f"TokenExchangeAuth({self._exchanger!r})"

    def _tokens(self) -> _Tokens:
        return self._exchanger._tokens_for(self._subject)

    def _fetch(self) -> tuple[Secret, float]:
        return self._exchanger._fetch(self._subject)

    async def _afetch(self) -> tuple[Secret, float]:
        return await self._exchanger._afetch(self._subject)


# --- proxying ------------------------------------------------------------------------------

#: Inbound headers a proxy may pass on by default: content negotiation and tracing.
FORWARDED = frozenset(
    {"accept", "accept-language", "content-type", "content-language", "user-agent"}
    | {"x-request-id", "x-correlation-id", "traceparent", "tracestate", "baggage"}
)
#: Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never the next.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Never copied from one hop to the next, whatever an allowlist says.
CREDENTIALS = frozenset(
    {"authorization", "proxy-authorization", "proxy-authenticate", "cookie", "set-cookie"}
    | {"x-api-key", "www-authenticate", "authentication-info", "proxy-authentication-info"}
)


#: A mapping or (name, value) pairs, of text (frameworks, httpx) or bytes (ASGI raw headers).
Headers = Mapping[AnyStr, AnyStr] | Iterable[tuple[AnyStr, AnyStr]]


def forward_headers(
    inbound: Headers[AnyStr], allow: Iterable[str | bytes] = FORWARDED
) -> list[tuple[AnyStr, AnyStr]]:
    """The headers to send downstream: only ``allow``-listed ones, never credentials, cookies
    or hop-by-hop headers (nor those the inbound ``Connection`` header names). Repeated
    headers stay repeated: the result is a list of pairs, which httpx and every framework take.
    Names match whatever their case or type; bytes pairs (ASGI raw headers) come back as bytes."""
    pairs = _pairs(inbound)
    allowed = {_name(name) for name in allow} - _blocked(pairs)
    return [(name, value) for name, value in pairs if _name(name) in allowed]


def response_headers(upstream: Headers[AnyStr]) -> list[tuple[AnyStr, AnyStr]]:
    """The headers of a downstream response that may be relayed to the caller: all but
    credentials, cookies and hop-by-hop headers (and the length the framework sets again)."""
    pairs = _pairs(upstream)
    blocked = _blocked(pairs) | {"content-length", "content-encoding"}
    return [(name, value) for name, value in pairs if _name(name) not in blocked]


def _pairs(headers: Headers[AnyStr]) -> list[tuple[AnyStr, AnyStr]]:
    """Every (name, value), repeats included (httpx's ``items()`` would join them)."""
    multi_items = getattr(headers, "multi_items", None)
    if multi_items is not None:
        return list(multi_items())
    return list(headers.items() if isinstance(headers, Mapping) else headers)


def _name(name: str | bytes) -> str:
    """A header name as compared: text (latin-1, as HTTP/1.1 carries it), lower case."""
    return (name.decode("latin-1") if isinstance(name, bytes) else name).strip().lower()


def _blocked(pairs: list[tuple[AnyStr, AnyStr]]) -> set[str]:
    named = {
        _name(token)
        for name, value in pairs
        if _name(name) == "connection"
        for token in value.split(b"," if isinstance(value, bytes) else ",")
    }
    return set(HOP_BY_HOP | CREDENTIALS) | named
