"""A failed key-set fetch says what failed, where, and what to change, over real sockets.

Each failure a deployment meets (a host name that does not resolve, a closed port, a server
that never answers, a 404, a certificate from a private CA, an HTML page) leaves one ERROR
line that names the URL and tells the cases apart; before, all of them read
``key set fetch failed (unreachable)``. The servers are plain asyncio servers on loopback,
TLS included (a self-signed certificate made here with ``cryptography``).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oauth_shield import Reason
from oauth_shield._connection import _tls, default_connection
from oauth_shield.testing import LocalIssuer, loopback_socket
from tests.conftest import ValidatorFactory, refused

Serve = Callable[..., Awaitable[str]]


def http_response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start loopback servers answering every request with ``response`` (``None``: accept,
    read, never answer), over TLS when given a context; returns the base URL."""
    servers: list[asyncio.Server] = []
    connections: set[asyncio.StreamWriter] = set()

    async def start(response: bytes | None, tls: ssl.SSLContext | None = None) -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.add(writer)
            try:
                await reader.readuntil(b"\r\n\r\n")
                if response is None:
                    await asyncio.Event().wait()  # hold the connection until cancelled
                writer.write(response)
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass  # the client gave up (timeout, failed certificate check)
            finally:
                writer.close()

        sock = loopback_socket()
        server = await asyncio.start_server(answer, sock=sock, ssl=tls)
        servers.append(server)
        scheme = "https" if tls else "http"
        return f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
    for writer in connections:
        writer.transport.abort()
    for server in servers:
        await server.wait_closed()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (what a private CA looks like to a client that
    does not trust it), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oauth_shield test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def jwks_body(issuer: LocalIssuer) -> bytes:
    return http_response("200 OK", json.dumps({"keys": issuer.published}).encode())


def the_error_line(caplog: pytest.LogCaptureFixture) -> str:
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "oauth_shield.keys" and r.levelno == logging.ERROR
    ]
    assert len(lines) == 1, lines
    return lines[0]


async def fails_with(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    caplog: pytest.LogCaptureFixture,
    jwks_uri: str,
    **options: object,
) -> str:
    """Validate a good token against a key set at ``jwks_uri`` (real sockets: no transport);
    expect a 503 and return the one ERROR line the failed fetch left."""
    validator = make_validator(jwks_uri=jwks_uri, transport=None, **options)
    await refused(validator, issuer.token(), Reason.KEYS_UNAVAILABLE, caplog=caplog)
    return the_error_line(caplog)


async def test_a_host_name_that_does_not_resolve(
    make_validator: ValidatorFactory, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    url = "https://no-such-host.invalid/jwks"  # RFC 6761: never resolves
    said = await fails_with(make_validator, issuer, caplog, url)
    assert f"[dns] at {url}" in said
    assert "does not resolve" in said and "check the host name" in said


async def test_a_closed_port(
    make_validator: ValidatorFactory, issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    sock = loopback_socket()  # bound, never listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/jwks"
    try:
        said = await fails_with(make_validator, issuer, caplog, url)
    finally:
        sock.close()
    assert f"(connection refused) [connect] at {url}" in said
    assert "check that the server runs" in said


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (None, "no complete answer within http_timeout (0.1 s) [timeout] at {url}"),
        (
            http_response("404 Not Found", b'{"error": "not found"}'),
            "the server answered HTTP 404 [status_404] at {url}; check the URL",
        ),
        (
            http_response("200 OK", b"<!doctype html><title>Sign in</title>", "text/html"),
            "the answer is not one JSON object [malformed_json] at {url}; an HTML page usually "
            "means a wrong path, a login page",
        ),
    ],
    ids=["never-answers", "404", "html"],
)
async def test_a_server_that_answers_badly(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    caplog: pytest.LogCaptureFixture,
    serve: Serve,
    response: bytes | None,
    expected: str,
) -> None:
    url = await serve(response) + "/jwks"
    said = await fails_with(make_validator, issuer, caplog, url, http_timeout=0.1)
    assert expected.format(url=url) in said


async def test_a_certificate_from_a_private_ca(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    caplog: pytest.LogCaptureFixture,
    serve: Serve,
    certificate: tuple[Path, Path],
) -> None:
    url = await serve(jwks_body(issuer), server_tls(certificate)) + "/jwks"
    said = await fails_with(make_validator, issuer, caplog, url)
    assert "TLS failed (" in said and f"[tls] at {url}" in said
    assert "certificate" in said  # OpenSSL's verify message: self-signed certificate
    assert "SSL_CERT_FILE" in said and "ca_bundle (OAUTH_SHIELD_CA_BUNDLE)" in said


async def test_ssl_cert_file_trusts_a_private_ca(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    serve: Serve,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first documented fix (docs/troubleshooting.md): SSL_CERT_FILE, read once per
    process when the first client is made."""
    url = await serve(jwks_body(issuer), server_tls(certificate)) + "/jwks"
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    _tls.cache_clear()
    default_connection.cache_clear()
    try:
        validator = make_validator(jwks_uri=url, transport=None)
        assert (await validator.validate(issuer.token())).subject == "user-1"
    finally:
        _tls.cache_clear()  # the next client reads the real bundle again
        default_connection.cache_clear()


async def test_ca_bundle_trusts_a_private_ca(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    serve: Serve,
    certificate: tuple[Path, Path],
) -> None:
    """The documented fix for one validator: ``ca_bundle`` (``OAUTH_SHIELD_CA_BUNDLE``)."""
    url = await serve(jwks_body(issuer), server_tls(certificate)) + "/jwks"
    validator = make_validator(jwks_uri=url, transport=None, ca_bundle=certificate[0])
    assert (await validator.validate(issuer.token())).subject == "user-1"


async def test_a_transport_with_its_own_ssl_context_trusts_a_private_ca(
    make_validator: ValidatorFactory,
    issuer: LocalIssuer,
    serve: Serve,
    certificate: tuple[Path, Path],
) -> None:
    """The second documented fix: ``transport=httpx.AsyncHTTPTransport(verify=context)``."""
    url = await serve(jwks_body(issuer), server_tls(certificate)) + "/jwks"
    context = ssl.create_default_context(cafile=str(certificate[0]))
    validator = make_validator(jwks_uri=url, transport=httpx.AsyncHTTPTransport(verify=context))
    assert (await validator.validate(issuer.token())).subject == "user-1"
