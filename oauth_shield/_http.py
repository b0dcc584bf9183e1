"""Every request to the authorization server goes through here.

One boundary for the rules that make fetching safe: https except on loopback, no redirects,
one total deadline per request, a cap on the body, no compressed bodies (a small gzip can
inflate without bound), strict JSON. Failures become :class:`FetchError`, which names what
went wrong and never carries the server's body, the request (it may hold a token) or the
original exception.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._config import url_problem
from ._json import parse_object

logger = logging.getLogger("oauth_shield.http")

_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": "oauth_shield",
}


class FetchError(Exception):
    """A request to the authorization server failed. ``unreachable`` means no usable answer
    arrived at all (network, timeout), as opposed to an answer we refuse."""

    def __init__(self, kind: str, *, unreachable: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.unreachable = unreachable

    def marker(self) -> dict[str, object]:
        """This failure as a value another process can read (see ``_shared``)."""
        return {"failed": self.kind, "unreachable": self.unreachable}

    @classmethod
    def from_marker(cls, value: Mapping[str, object]) -> FetchError | None:
        """The failure a shared value records, if it records one."""
        kind = value.get("failed")
        if not isinstance(kind, str):
            return None
        return cls(kind, unreachable=value.get("unreachable") is True)

    @property
    def transient(self) -> bool:
        """The server could not answer now (unreachable, 5xx, 408, 429): a retry may work.
        Anything else is an answer we refuse."""
        return self.unreachable or self.kind.startswith("status_5") or self.kind in _TRANSIENT


_TRANSIENT = frozenset({"status_408", "status_429"})


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's verifying TLS context, made once per process: loading the CA bundle costs
    tens of milliseconds, which every new client would otherwise pay again."""
    return httpx.create_ssl_context()


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
    ) -> None:
        self.allow_http = allow_http
        self.timeout = timeout
        self._max_bytes = max_bytes
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                verify=_tls() if self._transport is None else True,
                follow_redirects=False,
                timeout=self.timeout,
                headers=_HEADERS,
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
        problem = url_problem(url, self.allow_http)
        if problem:
            raise FetchError("insecure_url")
        started = time.perf_counter()
        outcome: JSONResponse | str
        unreachable = False
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await self._exchange(method, url, form, headers, accept_status)
        except TimeoutError:
            outcome, unreachable = "timeout", True
        except httpx.HTTPError:
            outcome, unreachable = "unreachable", True
        elapsed = (time.perf_counter() - started) * 1000
        if isinstance(outcome, str):
            logger.debug("%s %s failed: %s after %.1f ms", method, url, outcome, elapsed)
            raise FetchError(outcome, unreachable=unreachable)
        logger.debug("%s %s: %d in %.1f ms", method, url, outcome.status_code, elapsed)
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
