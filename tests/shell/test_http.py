"""The fetch rules every request to the authorization server follows (oauth_shield._http)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from oauth_shield._http import FetchError, HTTPClient

URL = "https://issuer.test/jwks"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, *, timeout: float = 1.0, max_bytes: int = 4096) -> HTTPClient:
    return HTTPClient(timeout=timeout, max_bytes=max_bytes, transport=httpx.MockTransport(handler))


async def fetch_error(http: HTTPClient, url: str = URL) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await http.get_json(url)
    await http.aclose()
    error = caught.value
    # What comes out names the failure, and carries nothing of the exchange.
    assert error.__cause__ is None and error.__context__ is None
    assert str(error) == error.kind
    return error


async def test_a_json_object_is_returned_with_its_headers() -> None:
    http = client(
        lambda r: httpx.Response(200, json={"keys": []}, headers={"Cache-Control": "max-age=9"})
    )
    response = await http.get_json(URL)
    assert response.data == {"keys": []}
    assert response.headers["Cache-Control"] == "max-age=9"
    await http.aclose()


async def test_redirects_are_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "https://attacker.test/jwks"})

    error = await fetch_error(client(handler))
    assert error.kind == "redirect" and not error.unreachable
    assert seen == [URL]


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(500, text="<html>Internal error: key=secret</html>"), "status_500"),
        (httpx.Response(404, json={"keys": []}), "status_404"),
        (httpx.Response(200, text="<!doctype html><p>login</p>"), "malformed_json"),
        (httpx.Response(200, text='{"keys": ['), "malformed_json"),
        (httpx.Response(200, json=[1, 2]), "malformed_json"),
        (httpx.Response(200, text='{"keys": [], "keys": []}'), "malformed_json"),
        (httpx.Response(200, content=b"x" * 5000), "too_large"),
        (
            httpx.Response(
                200, content=gzip.compress(b'{"keys": []}'), headers={"Content-Encoding": "gzip"}
            ),
            "encoded_body",
        ),
    ],
    ids=["500", "404", "html", "truncated", "array", "duplicate-members", "oversized", "gzip"],
)
async def test_answers_we_refuse(response: httpx.Response, kind: str) -> None:
    error = await fetch_error(client(lambda r: response))
    assert error.kind == kind and not error.unreachable


async def test_a_body_without_length_is_cut_off_at_the_cap() -> None:
    produced = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal produced
        while True:
            produced += 1
            yield b"x" * 1024

    error = await fetch_error(client(lambda r: httpx.Response(200, content=endless())))
    assert error.kind == "too_large"
    assert produced <= 6  # stopped just past 4 KiB, not at the end of the stream


async def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    response = httpx.Response(200, content=b"{}", headers={"Content-Length": "999999"})
    error = await fetch_error(client(lambda r: response))
    assert error.kind == "too_large"


async def test_a_slow_server_costs_the_timeout_and_no_more() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200, json={})

    http = HTTPClient(timeout=0.2, max_bytes=4096, transport=httpx.MockTransport(slow))
    started = asyncio.get_running_loop().time()
    error = await fetch_error(http)
    assert error.kind == "timeout" and error.unreachable
    assert asyncio.get_running_loop().time() - started < 1


async def test_a_failed_connection_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    error = await fetch_error(client(refuse))
    assert error.kind == "connect" and error.unreachable
    assert error.url == URL


def raise_in_transport(exception: BaseException) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception

    return handler


def caused(outer: Exception, inner: BaseException) -> Exception:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exception", "kind", "unreachable"),
    [
        (caused(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known")),
         "dns", True),
        (caused(httpx.ConnectError("x"), ConnectionRefusedError(111, "refused")),
         "connect", True),
        (caused(httpx.ConnectError("x"), ssl.SSLCertVerificationError("verify failed")),
         "tls", True),
        (caused(httpx.ReadError("x"), ssl.SSLError("bad record mac")), "tls", True),
        (httpx.ReadTimeout("slow"), "timeout", True),
        (httpx.RemoteProtocolError("closed"), "network", True),
        (httpx.ReadError("reset"), "network", True),
        (httpx.InvalidURL("Invalid IPv4 address"), "invalid_url", False),
        (UnicodeError("Invalid A-label"), "invalid_url", False),
        (RuntimeError("a bug"), "internal_error", False),
        (KeyError("a bug"), "internal_error", False),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)  # fmt: skip
async def test_every_failure_of_the_exchange_becomes_a_fetch_error(
    exception: Exception, kind: str, unreachable: bool
) -> None:
    """Whatever the transport raises, the caller sees a FetchError naming the kind and the URL,
    never the original exception (validate() must raise AuthError only)."""
    error = await fetch_error(client(raise_in_transport(exception)))
    assert (error.kind, error.unreachable, error.url) == (kind, unreachable, URL)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://issuer.test/jwks", "insecure_url"),
        ("ftp://issuer.test/jwks", "insecure_url"),
        ("file:///etc/passwd", "insecure_url"),
        ("https://u:p@issuer.test/jwks", "insecure_url"),
        ("//issuer.test/jwks", "insecure_url"),
        ("https:///jwks", "invalid_url"),
        # Pass urllib's checks but not httpx's parser, which would raise its own exceptions.
        ("https://999.1.1.1/jwks", "invalid_url"),
        ("https://xn--zz.example/jwks", "invalid_url"),
    ],
)
async def test_unusable_urls_are_never_requested(url: str, kind: str) -> None:
    requested: list[httpx.Request] = []
    error = await fetch_error(
        client(lambda r: requested.append(r) or httpx.Response(200, json={})), url
    )
    assert error.kind == kind and not error.unreachable
    assert requested == []


def test_a_failure_explains_itself_without_the_urls_secrets() -> None:
    error = FetchError("status_404", url="https://u:pw@issuer.test/jwks?api_key=hunter2")
    said = error.explain()
    assert said == (
        "the server answered HTTP 404 [status_404] at https://***@issuer.test/jwks?...; "
        "check the URL"
    )
    assert "hunter2" not in said and "pw" not in said


def test_a_shared_failure_is_read_back_sanitised() -> None:
    """A marker crossed Redis: whoever could write there must not forge log lines with it."""
    marker = {
        "failed": "dns\nINFO forged line",
        "unreachable": True,
        "url": "https://issuer.test/\r\nforged" + "x" * 1000,
        "detail": "\x1b[31mred",
        "hint": 42,
    }
    error = FetchError.from_marker(marker)
    assert error is not None
    assert error.kind == "internal_error" and error.unreachable
    said = error.explain()
    assert said.isprintable() and len(said) < 1000
    assert "\n" not in said and "\x1b" not in said
    again = FetchError.from_marker(FetchError("tls", url=URL, detail="d", hint="h").marker())
    assert again is not None
    assert (again.kind, again.url, again.detail, again.hint) == ("tls", URL, "d", "h")


async def test_plain_http_is_allowed_on_loopback() -> None:
    http = client(lambda r: httpx.Response(200, json={"ok": True}))
    for url in ("http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]/jwks"):
        assert (await http.get_json(url)).data == {"ok": True}
    await http.aclose()


async def test_a_form_post_is_form_encoded_with_extra_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"active": False})

    http = client(handler)
    await http.send("POST", URL, form={"token": "a b&c"}, headers={"Authorization": "Basic eDp5"})
    await http.aclose()
    assert seen[0].content == b"token=a+b%26c"
    assert seen[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert seen[0].headers["Authorization"] == "Basic eDp5"
    assert seen[0].headers["Accept-Encoding"] == "identity"


async def test_no_log_line_or_event_carries_a_urls_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key set URL may be signed (``?sig=...``): its query is a secret wherever it goes."""
    from oauth_shield import IssuerUnavailableError, TokenValidator, events
    from oauth_shield.testing import LocalIssuer

    issuer = LocalIssuer()
    signed = f"{issuer.issuer}/jwks?sig=SIGNATURE-SECRET"
    told: list[events.Event] = []
    caplog.set_level(logging.DEBUG, logger="oauth_shield")
    validator = TokenValidator(
        issuer=issuer.issuer,
        audience=issuer.audience,
        jwks_uri=signed,
        transport=issuer.transport(),
    )
    validator.subscribe(told.append)
    await validator.validate(issuer.token())  # a fetch that works
    await validator.check()
    issuer.fault = lambda request: httpx.Response(500)
    with pytest.raises(IssuerUnavailableError):
        await validator.check()  # and one that fails
    await validator.aclose()
    assert told and caplog.records
    said = repr(told) + "\n".join(record.getMessage() for record in caplog.records)
    assert "SIGNATURE-SECRET" not in said
