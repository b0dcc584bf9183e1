"""A small authorization server for tests and demos: keys, tokens, discovery, introspection.

``LocalIssuer`` mints RFC 9068 access tokens and opaque tokens, and answers the requests a
resource server makes (discovery, JWKS, introspection). Its one request handler works as an
``httpx.MockTransport`` (no network, with request counters) and, through :meth:`serve`, as a
real HTTP server on loopback. It is for tests: it keeps everything in memory and trusts the
caller.

>>> issuer = LocalIssuer()                                                 # doctest: +SKIP
>>> validator = TokenValidator(issuer=issuer.issuer, audience=issuer.audience,
...                            transport=issuer.transport())
>>> await validator.validate(issuer.token(scope="read"))
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import parse_qs, unquote_plus, urlsplit, urlunsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

__all__ = [
    "DPoPKey",
    "LocalIssuer",
    "SigningKey",
    "b64url",
    "make_proof",
    "serve_asgi",
    "serve_wsgi",
    "sign_compact",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_part(value: Mapping[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
    return b64url(raw)


def sign_compact(
    header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes, key: PrivateKey, alg: str
) -> str:
    """A compact JWS over ``header`` and ``payload`` (dicts, or raw bytes for hostile tests)."""
    signing_input = f"{_json_part(header)}.{_json_part(payload)}".encode("ascii")
    if isinstance(key, rsa.RSAPrivateKey):
        hash_alg = _HASHES[alg[2:]]()
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        )
        signature = key.sign(signing_input, pad, hash_alg)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(_HASHES[alg[2:]]())))
        size = (key.curve.key_size + 7) // 8
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        signature = key.sign(signing_input)
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


class SigningKey:
    """A private key with its ``kid``, ``alg`` and public JWK."""

    def __init__(self, alg: str = "RS256", kid: str | None = None, *, bits: int = 2048) -> None:
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{secrets.token_hex(4)}"
        self.private: PrivateKey
        if alg.startswith(("RS", "PS")):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            wrapped: Any = RSAKey.import_key(self.private)
        elif alg.startswith("ES"):
            self.private = ec.generate_private_key(_CURVES[alg]())
            wrapped = ECKey.import_key(self.private)
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
            wrapped = OKPKey.import_key(self.private)
        self.jwk: dict[str, Any] = {
            **wrapped.as_dict(private=False),
            "kid": self.kid,
            "use": "sig",
            "alg": alg,
        }

    def sign(self, header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes) -> str:
        return sign_compact(header, payload, self.private, self.alg)


class DPoPKey(SigningKey):
    """A client's DPoP key pair: makes proofs as a client library does (RFC 9449 §4).

    >>> key = DPoPKey()
    >>> proof = key.proof("GET", "https://api.test/items?page=2", access_token=token)
    >>> issuer.token(cnf={"jkt": key.jkt})                      # a token bound to the key
    """

    def __init__(self, alg: str = "ES256", *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(alg, kid="dpop", bits=2048)
        self.clock = clock
        # The public key only, required members only: what a client puts in a proof header.
        self.public_jwk: dict[str, Any] = {
            name: self.jwk[name] for name in ("kty", "crv", "x", "y", "n", "e") if name in self.jwk
        }
        self.jkt: str = JWKRegistry.import_key(self.public_jwk).thumbprint()
        """The key's RFC 7638 SHA-256 thumbprint: ``cnf.jkt`` of the tokens bound to it."""

    def proof(self, method: str, url: str, **options: Any) -> str:
        """A proof for one request; see :func:`make_proof` for the ``options``."""
        return make_proof(self, method, url, **options)


def make_proof(
    key: DPoPKey,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
    header: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A DPoP proof JWT for one request (RFC 9449 §4.2), signed by ``key``.

    ``htu`` is ``url`` without query and fragment; ``ath`` is set when ``access_token`` is
    given; ``iat`` defaults to the key's clock, ``jti`` to 128 random bits. ``header`` and
    ``claims`` entries override (``None`` removes one), for hostile tests.
    """
    parts = urlsplit(url)
    full_header = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk, **(header or {})}
    payload: dict[str, Any] = {
        "jti": jti if jti is not None else secrets.token_urlsafe(16),
        "htm": method,
        "htu": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
        "iat": int(key.clock()) if iat is None else iat,
    }
    if access_token is not None:
        payload["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
    if nonce is not None:
        payload["nonce"] = nonce
    payload.update(claims or {})
    return key.sign(
        {name: value for name, value in full_header.items() if value is not None},
        {name: value for name, value in payload.items() if value is not None},
    )


def _proof_thumbprint(proof: str, method: str, url: str) -> str | None:
    """The thumbprint of a proof's key if its signature verifies (by joserfc's algorithms,
    independently of oauth_shield) and it names ``method`` and ``url``; for the test
    authorization server."""
    try:
        head, payload, signature = (_b64url_decode(part) for part in proof.split("."))
        header, claims = json.loads(head), json.loads(payload)
        key = JWKRegistry.import_key(header["jwk"])
        # The model itself: the registry's lookup warns about "EdDSA" (RFC 9864).
        verified = JWSRegistry.algorithms[header["alg"]].verify(
            proof.rsplit(".", 1)[0].encode(), signature, key
        )
    except Exception:
        return None
    if not verified or header.get("typ") != "dpop+jwt":
        return None
    return (
        str(key.thumbprint()) if (claims.get("htm"), claims.get("htu")) == (method, url) else None
    )


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class LocalIssuer:
    """An in-memory authorization server. Not for production: it trusts every caller."""

    def __init__(
        self,
        issuer: str = "https://issuer.test",
        audience: str = "https://api.test",
        *,
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        keys: list[SigningKey] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        self.keys = list(keys) if keys is not None else [SigningKey(alg) for alg in algorithms]
        self.published: list[dict[str, Any]] = [key.jwk for key in self.keys]
        self.opaque: dict[str, dict[str, Any]] = {}
        self.minted: dict[str, dict[str, Any]] = {}  # every JWT minted here, with its claims
        self.jwks_headers: dict[str, str] = {}
        self.clients: dict[str, str] = {}  # introspection credentials; empty: no check
        self.requests: Counter[str] = Counter()
        self.fault: Callable[[httpx.Request], httpx.Response | None] | None = None

    # --- tokens ------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """RFC 9068 claims for this issuer and audience, with ``overrides`` applied
        (a value of ``None`` removes the claim)."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "user-1",
            "client_id": "client-1",
            "scope": "read",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(12),
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(
        self,
        *,
        alg: str | None = None,
        header: Mapping[str, Any] | None = None,
        key: SigningKey | None = None,
        **claims: Any,
    ) -> str:
        """A signed ``at+jwt`` access token; ``header`` entries override (``None`` removes)."""
        key = key or next(k for k in self.keys if alg in (None, k.alg))
        full = {"alg": key.alg, "typ": "at+jwt", "kid": key.kid, **(header or {})}
        full = {name: value for name, value in full.items() if value is not None}
        payload = self.claims(**claims)
        token = key.sign(full, payload)
        self.minted[token] = payload
        return token

    def dpop_token(self, key: DPoPKey, *, opaque: bool = False, **claims: Any) -> str:
        """A token bound to ``key`` (``cnf.jkt``, RFC 9449 §6): a JWT, or an opaque token whose
        introspection answer carries the ``cnf`` (RFC 9449 §6.2)."""
        bound = {"cnf": {"jkt": key.jkt}, **claims}
        return self.opaque_token(**bound) if opaque else self.token(**bound)

    def opaque_token(self, **claims: Any) -> str:
        """An opaque token that introspects as active with these claims."""
        token = secrets.token_urlsafe(32)
        self.opaque[token] = {"active": True, **self.claims(**claims)}
        return token

    def revoke(self, token: str) -> None:
        self.opaque.pop(token, None)

    def rotate(self, *, keep_old: bool = True) -> SigningKey:
        """Sign with a new key from now on; keep publishing the old ones unless told not to."""
        new = SigningKey(self.keys[0].alg)
        self.keys.insert(0, new)
        self.published = [new.jwk, *(self.published if keep_old else [])]
        return new

    # --- the server ----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request (the body of the mock transport and of the real server)."""
        path = request.url.path
        self.requests[path] += 1
        if self.fault is not None and (answer := self.fault(request)) is not None:
            return answer
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.metadata())
        if path == "/jwks":
            return httpx.Response(200, json={"keys": self.published}, headers=self.jwks_headers)
        if path == "/token" and request.method == "POST":
            return self._token_endpoint(request)
        if path == "/introspect" and request.method == "POST":
            form = {name: values[0] for name, values in parse_qs(request.content.decode()).items()}
            if self.clients and self._authenticated(request, form) is None:
                return httpx.Response(401, json={"error": "invalid_client"})
            return httpx.Response(
                200, json=self.opaque.get(form.get("token", ""), {"active": False})
            )
        return httpx.Response(404, json={"error": "not_found"})

    def _token_endpoint(self, request: httpx.Request) -> httpx.Response:
        """Client credentials (RFC 6749 §4.4) and token exchange (RFC 8693), JWTs out."""
        form = {name: values[0] for name, values in parse_qs(request.content.decode()).items()}
        client_id = self._authenticated(request, form)
        if client_id is None:
            return httpx.Response(401, json={"error": "invalid_client"})
        audience = form.get("audience") or form.get("resource") or self.audience
        claims: dict[str, Any] = {"aud": audience, "client_id": client_id, "sub": client_id}
        if "scope" in form:
            claims["scope"] = form["scope"]
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:token-exchange":
            subject = self.minted.get(form.get("subject_token", "")) or self.opaque.get(
                form.get("subject_token", "")
            )
            if subject is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            claims |= {"sub": subject.get("sub"), "act": {"sub": client_id}}
        elif grant != "client_credentials":
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        token_type = "Bearer"
        if "DPoP" in request.headers:  # RFC 9449 §5: a proof binds the token to its key
            jkt = _proof_thumbprint(request.headers["DPoP"], "POST", f"{self.issuer}/token")
            if jkt is None:
                return httpx.Response(400, json={"error": "invalid_dpop_proof"})
            claims["cnf"], token_type = {"jkt": jkt}, "DPoP"
        token = self.token(**claims)
        expires_in = self.minted[token]["exp"] - int(self.clock())
        answer = {"access_token": token, "token_type": token_type, "expires_in": expires_in}
        if grant != "client_credentials":
            answer["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        return httpx.Response(200, json=answer)

    def _authenticated(self, request: httpx.Request, form: dict[str, str]) -> str | None:
        """The client, by client_secret_basic (form-decoded, RFC 6749 §2.3.1) or _post; any
        client when no credentials are configured."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            pair = base64.b64decode(credentials).decode()
            client_id, _, secret = (unquote_plus(part) for part in pair.partition(":"))
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not self.clients:
            return client_id or "anonymous"
        expected = self.clients.get(client_id)
        return (
            client_id if expected is not None and secrets.compare_digest(expected, secret) else None
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "introspection_endpoint": f"{self.issuer}/introspect",
            "token_endpoint": f"{self.issuer}/token",
            "dpop_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        }

    def transport(self) -> httpx.MockTransport:
        """An in-process transport for ``TokenValidator(transport=...)``."""
        return httpx.MockTransport(self.handle)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point, so the same handler can be served over real HTTP."""
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = f"{self.issuer}{scope['path']}?{scope['query_string'].decode()}"
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        response = self.handle(httpx.Request(scope["method"], url, headers=headers, content=body))
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.content})

    @contextlib.contextmanager
    def serve(self) -> Iterator[LocalIssuer]:
        """Serve over HTTP on a free loopback port (needs uvicorn); sets :attr:`issuer`."""
        sock = loopback_socket()
        self.issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with serve_asgi(self, sock=sock, lifespan="off"):
            yield self


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only then,
    # and without it Nagle's algorithm adds ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_asgi(
    app: Any,
    *,
    sock: socket.socket | None = None,
    lifespan: Literal["auto", "on", "off"] = "auto",
    log_level: str = "warning",
    **options: Any,
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a background thread; yields its base URL.

    uvicorn's own logging set-up is skipped (``log_config=None``): a test server must not
    replace the handlers of the process it runs in. ``options`` go to ``uvicorn.Config``
    (``http="httptools"``, ``root_path="/api"``).
    """
    import uvicorn

    sock = sock or loopback_socket()
    config = uvicorn.Config(app, log_level=log_level, lifespan=lifespan, log_config=None, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve a WSGI app with the standard library's server, a thread per request.

    Its access log is off: it writes the full URL of each request, query string and all, and a
    query string may carry a token.
    """
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        request_queue_size = 512  # socketserver's default backlog of 5 drops bursts

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, ThreadingServer, QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
