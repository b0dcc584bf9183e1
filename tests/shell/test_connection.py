"""How oauth_shield reaches the authorization server: User-Agent, extra headers, a private
CA, mutual TLS and a proxy, for discovery, key sets, introspection and downstream token
requests alike; and every setting that would weaken TLS or leak a credential refused.

TLS, mTLS and the proxy run over real loopback sockets (asyncio servers, a self-signed CA
made with ``cryptography``); headers are seen by the server that receives them.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oauth_shield import ConfigurationError, TokenValidator, __version__
from oauth_shield.downstream import ClientCredentialsAuth
from oauth_shield.testing import LocalIssuer, loopback_socket
from tests.conftest import ValidatorFactory

Handler = Callable[[bytes], bytes]
Serve = Callable[..., Awaitable[str]]


def answer(status: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
    return (head + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Loopback servers: ``handler(request head) -> response``, over TLS when given a context;
    every request head is kept in ``heads``."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler, tls: ssl.SSLContext | None = None) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(handler(head))
                await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        sock = loopback_socket()
        servers.append(await asyncio.start_server(handle, sock=sock, ssl=tls))
        return f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def certificate(folder: Path, name: str, issuer: tuple[Any, Any] | None = None) -> Any:
    """A certificate for 127.0.0.1 (self-signed, a CA, unless ``issuer`` signs it), its key,
    and the paths of both in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_cert, signer_key = issuer or (None, key)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_cert.subject if signer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(signer_key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key, cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca = certificate(folder, "private-ca")
    server = certificate(folder, "server", issuer=ca[:2])
    client = certificate(folder, "client", issuer=ca[:2])
    return {"ca": ca[2], "server": server[2:], "client": client[2:]}


def server_tls(pki: dict[str, Any], require_client: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki["server"])
    if require_client:  # mutual TLS: only clients with a certificate from the private CA
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki["ca"])
    return context


def jwks(issuer: LocalIssuer, heads: list[bytes]) -> Handler:
    def handler(head: bytes) -> bytes:
        heads.append(head)
        return answer("200 OK", {"keys": issuer.published})

    return handler


def header(head: bytes, name: str) -> str | None:
    found = re.search(rb"\r\n" + name.encode() + rb": ([^\r]*)", head, re.IGNORECASE)
    return found.group(1).decode() if found else None


# --- headers ----------------------------------------------------------------------------


async def test_the_user_agent_names_oauth_shield_and_its_version(
    make_validator: ValidatorFactory, issuer: LocalIssuer, serve: Serve
) -> None:
    heads: list[bytes] = []
    url = await serve(jwks(issuer, heads))
    await make_validator(jwks_uri=url + "/jwks", transport=None).validate(issuer.token())
    assert header(heads[0], "User-Agent") == f"oauth-shield/{__version__}"


async def test_user_agent_and_extra_headers_reach_every_endpoint(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return issuer.handle(request)

    issuer.clients["rs"] = "rs-secret"
    validator = make_validator(
        transport=httpx.MockTransport(spy),
        user_agent="orders-api/2.1 (ops@example.com)",
        http_headers={"X-Tenant": "acme"},
        client_id="rs",
        client_secret="rs-secret",
    )
    await validator.validate(issuer.token())
    await validator.validate(issuer.opaque_token())
    paths = {request.url.path for request in seen}
    assert {"/.well-known/openid-configuration", "/jwks", "/introspect"} <= paths
    for request in seen:
        assert request.headers["User-Agent"] == "orders-api/2.1 (ops@example.com)"
        assert request.headers["X-Tenant"] == "acme"
        assert request.headers["Accept-Encoding"] == "identity"  # never overridden


def test_downstream_token_requests_carry_them_too(issuer: LocalIssuer) -> None:
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return issuer.handle(request)

    issuer.clients["service"] = "service-secret"
    auth = ClientCredentialsAuth(
        token_endpoint="https://issuer.test/token",
        client_id="service",
        client_secret="service-secret",
        transport=httpx.MockTransport(spy),
        user_agent="orders-api/2.1",
        http_headers={"X-Tenant": "acme"},
    )
    with httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))) as c:
        c.get("https://downstream.test/x")
    assert seen[0].url.path == "/token"
    assert seen[0].headers["User-Agent"] == "orders-api/2.1"
    assert seen[0].headers["X-Tenant"] == "acme"


# --- TLS ----------------------------------------------------------------------------------


async def test_a_private_ca_is_trusted_through_ca_bundle(
    make_validator: ValidatorFactory, issuer: LocalIssuer, serve: Serve, pki: dict[str, Any]
) -> None:
    url = await serve(jwks(issuer, []), server_tls(pki)) + "/jwks"
    refused = make_validator(jwks_uri=url, transport=None)
    with pytest.raises(Exception, match="cannot be checked"):
        await refused.validate(issuer.token())
    trusting = make_validator(jwks_uri=url, transport=None, ca_bundle=pki["ca"])
    assert (await trusting.validate(issuer.token())).subject == "user-1"


async def test_an_ssl_context_that_verifies_is_used(
    make_validator: ValidatorFactory, issuer: LocalIssuer, serve: Serve, pki: dict[str, Any]
) -> None:
    url = await serve(jwks(issuer, []), server_tls(pki)) + "/jwks"
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    validator = make_validator(jwks_uri=url, transport=None, ssl_context=context)
    assert (await validator.validate(issuer.token())).subject == "user-1"


async def test_mutual_tls_with_a_client_certificate(
    make_validator: ValidatorFactory, issuer: LocalIssuer, serve: Serve, pki: dict[str, Any]
) -> None:
    url = await serve(jwks(issuer, []), server_tls(pki, require_client=True)) + "/jwks"
    anonymous = make_validator(jwks_uri=url, transport=None, ca_bundle=pki["ca"])
    with pytest.raises(Exception, match="cannot be checked"):
        await anonymous.validate(issuer.token())
    cert, key = pki["client"]
    known = make_validator(
        jwks_uri=url, transport=None, ca_bundle=pki["ca"], client_cert=cert, client_key=key
    )
    assert (await known.validate(issuer.token())).subject == "user-1"


async def test_a_downstream_token_endpoint_behind_a_private_ca_and_mtls(
    serve: Serve, pki: dict[str, Any]
) -> None:
    heads: list[bytes] = []

    def token(head: bytes) -> bytes:
        heads.append(head)
        return answer("200 OK", {"access_token": "at-1", "token_type": "Bearer", "expires_in": 60})

    url = await serve(token, server_tls(pki, require_client=True)) + "/token"
    auth = ClientCredentialsAuth(
        token_endpoint=url,
        client_id="service",
        client_secret="service-secret",
        ca_bundle=pki["ca"],
        client_cert=pki["client"][0],
        client_key=pki["client"][1],
    )
    sent = await asyncio.to_thread(lambda: next(auth.sync_auth_flow(httpx.Request("GET", url))))
    assert sent.headers["Authorization"] == "Bearer at-1"
    assert header(heads[0], "User-Agent") == f"oauth-shield/{__version__}"


# --- a proxy ------------------------------------------------------------------------------


async def test_every_request_goes_through_the_proxy(
    make_validator: ValidatorFactory, clock: Any, serve: Serve
) -> None:
    """A forward proxy on loopback sees the absolute-form requests and answers for the issuer
    (the issuer's name does not resolve: only the proxy knows the way). Plain http, so the
    proxy sees the requests; an https issuer goes through it with CONNECT, the same way."""
    issuer = LocalIssuer("http://issuer.test", "https://api.test", clock=clock.time)
    through: list[str] = []

    def proxy(head: bytes) -> bytes:
        target = head.split(b" ", 2)[1].decode()
        through.append(target)
        request = httpx.Request("GET", target)
        response = issuer.handle(request)
        return answer(f"{response.status_code} OK", response.json())

    proxy_url = await serve(proxy)
    validator = make_validator(
        issuer=issuer.issuer, transport=None, proxy=proxy_url, insecure_http=True
    )
    assert (await validator.validate(issuer.token())).subject == "user-1"
    assert through == [
        "http://issuer.test/.well-known/openid-configuration",
        "http://issuer.test/jwks",
    ]


# --- refused at construction -------------------------------------------------------------


def unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"user_agent": "a\r\nX-Injected: 1"}, "user_agent must be printable ASCII"),
        ({"http_headers": {"Authorization": "Basic x"}}, "Authorization may not be set"),
        ({"http_headers": {"Accept-Encoding": "gzip"}}, "Accept-Encoding may not be set"),
        ({"http_headers": {"X-A": "a\nb"}}, "must be printable ASCII"),
        ({"http_headers": {"bad name": "x"}}, "is not a header name"),
        ({"http_headers": "not json"}, "a JSON object"),
        ({"proxy": "not a url"}, "proxy must be a proxy URL"),
        ({"proxy": "ftp://proxy.test"}, "proxy must be a proxy URL"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "no such file"),
        ({"client_key": "/x.key"}, "client_key needs client_cert"),
        ({"ssl_context": unverified()}, "must verify certificates and host names"),
        ({"ssl_context": ssl.create_default_context(), "ca_bundle": "/x"}, "put the CA"),
        ({"ssl_context": "strict"}, "must be an ssl.SSLContext"),
    ],
)
def test_settings_that_weaken_tls_or_leak_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        TokenValidator(issuer="https://issuer.test", audience="https://api.test", **options)


def test_a_file_that_is_no_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match=r"^ca_bundle: the file does not hold"):
        TokenValidator(issuer="https://issuer.test", audience="https://api.test", ca_bundle=junk)


def test_the_environment_names_its_keys(pki: dict[str, Any]) -> None:
    env = {
        "OAUTH_SHIELD_ISSUER": "https://issuer.test",
        "OAUTH_SHIELD_AUDIENCE": "https://api.test",
        "OAUTH_SHIELD_CA_BUNDLE": str(pki["ca"]),
        "OAUTH_SHIELD_HTTP_HEADERS": '{"X-Tenant": "acme"}',
        "OAUTH_SHIELD_USER_AGENT": "orders-api/2.1",
    }
    TokenValidator.from_env(env)  # accepted as written
    with pytest.raises(ConfigurationError, match=r"^OAUTH_SHIELD_HTTP_HEADERS: Cookie"):
        TokenValidator.from_env({**env, "OAUTH_SHIELD_HTTP_HEADERS": '{"Cookie": "a=b"}'})
    with pytest.raises(ConfigurationError, match=r"^OAUTH_SHIELD_CA_BUNDLE: no such file"):
        TokenValidator.from_env({**env, "OAUTH_SHIELD_CA_BUNDLE": "/nonexistent"})


def test_the_default_tls_context_is_one_per_process() -> None:
    first = TokenValidator(issuer="https://a.test", audience="x")
    second = TokenValidator(issuer="https://b.test", audience="y")
    assert first._http._connection.verify is second._http._connection.verify
