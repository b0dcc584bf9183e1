"""Bearer credentials in HTTP requests, and the answer to a refused one (RFC 6750), pure.

Every adapter extracts the credential with :func:`credentials` and answers a refusal with
:func:`error_response` (through :mod:`oauth_shield.http`), so the rules below hold the same in
Quart, Flask, plain ASGI and any adapter written on that seam:

- only the ``Authorization`` header counts by default (RFC 6750 §2.1); its scheme is
  case-insensitive; query (§2.3) and form-body (§2.2) tokens are accepted only when enabled;
- a request that carries a token in more than one way, or several ``Authorization`` headers,
  is ``invalid_request`` (§3.1), whether or not those other ways are enabled; a WSGI server
  folds repeated headers into one value, which :func:`split_folded` takes apart again, so
  WSGI and ASGI adapters see the same credentials;
- no credentials, or another scheme (``Basic``), get a bare challenge without an error (§3.1);
- a malformed ``Authorization`` value is ``invalid_request``;
- an API key (``X-API-Key``) counts only where a route accepts API keys, and an API key next to
  any ``Authorization`` credential, or a second API key, is ``invalid_request``;
- with DPoP on (RFC 9449 §7.1), ``Authorization: DPoP <token>`` is a credential too; with DPoP
  required, ``Bearer`` (and the query and form, which only carry bearer tokens) is another
  scheme.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, NamedTuple
from urllib.parse import parse_qs

from ._config import DEFAULT_MAX_TOKEN_SIZE, DPoPMode
from ._errors import (
    AuthError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    Reason,
)

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: Form bodies larger than this are not searched for a token (RFC 6750 §2.2).
MAX_FORM_SCAN = 64 * 1024
#: Requests whose body has no defined semantics, so never carries a token (RFC 6750 §2.2:
#: "the GET method MUST NOT be used"): the adapters do not read their body at all.
_BODYLESS_METHODS = frozenset({"GET", "HEAD"})


def may_carry_form_token(method: str, content_type: str | None) -> bool:
    """Whether a request's body could hold an ``access_token`` (RFC 6750 §2.2)."""
    return method not in _BODYLESS_METHODS and (content_type or "").lower().startswith(
        FORM_CONTENT_TYPE
    )


def should_scan_form(method: str, header: Callable[[str], str | None]) -> bool:
    """Whether an adapter reads a body for ``access_token``: a form body (RFC 6750 §2.2) of a
    declared length up to :data:`MAX_FORM_SCAN`, never on ``GET`` or ``HEAD``.

    ``header(name)`` gives a request header's value (``request.headers.get``); it is called
    only for requests that may have a body, so a ``GET`` costs no header lookup.
    """
    if method in _BODYLESS_METHODS or not may_carry_form_token(method, header("Content-Type")):
        return False
    length = header("Content-Length")
    return length is not None and length.isdigit() and int(length) <= MAX_FORM_SCAN


def form_tokens(body: str) -> list[str]:
    """Every ``access_token`` value in a form-encoded body, blank ones included."""
    return parse_qs(body, keep_blank_values=True).get("access_token", [])


# RFC 9110 §5.6.2 token: an auth-scheme, or the name of an auth-param.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# After a comma, an auth-param is "name = value"; a new credential is a scheme, alone or
# followed by a space and its credentials (RFC 9110 §11.4).
_NEW_CREDENTIAL = re.compile(rf"[ \t]*{_TOKEN}(?:[ \t]+[^ \t=]|[ \t]*$)")


def split_folded(value: str) -> list[str]:
    """The credentials in one ``Authorization`` value that a WSGI server folded from several
    headers (RFC 9110 §5.3: joined by commas): ``"Basic a, Bearer b"`` is two.

    Commas inside quoted strings and between the auth-params of one credential
    (``Digest realm="a", nonce="b"``) do not split it.
    """
    if "," not in value:
        return [value]
    pieces: list[str] = []
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            pieces.append(value[start:index])
            start = index + 1
    pieces.append(value[start:])
    found = [pieces[0]]
    for piece in pieces[1:]:
        if _NEW_CREDENTIAL.match(piece):
            found.append(piece)
        else:
            found[-1] += "," + piece
    return [credential.strip(" \t") for credential in found]


def is_b64token(value: str) -> bool:
    """Whether ``value`` could be a bearer token at all (RFC 6750 §2.1 ``b64token``)."""
    return _B64TOKEN.fullmatch(value) is not None


class Credentials(NamedTuple):
    """The one credential a request carries: a token under the ``Bearer`` or ``DPoP`` scheme,
    or an API key."""

    kind: Literal["bearer", "dpop", "api_key"]
    value: str


def credentials(
    authorization: Sequence[str],
    *,
    api_keys: Sequence[str] = (),
    accept_api_keys: bool = False,
    query: Sequence[str] = (),
    form: Sequence[str] = (),
    allow_query: bool = False,
    allow_form: bool = False,
    max_size: int = DEFAULT_MAX_TOKEN_SIZE,
    dpop: DPoPMode = "disabled",
) -> Credentials:
    """The request's token or API key, or the :class:`AuthError` that answers it.

    :param dpop: the route's DPoP policy: ``"allowed"`` takes the ``DPoP`` scheme beside
        ``Bearer``, ``"required"`` takes only ``DPoP``.
    """
    if api_keys:
        # A comma is never part of a key: it is a WSGI server's fold of repeated headers.
        if len(api_keys) > 1 or "," in api_keys[0] or authorization or query or form:
            raise InvalidRequestError(Reason.MULTIPLE_CREDENTIALS)
        if not accept_api_keys:  # this route wants a bearer token: challenge for one
            raise MissingTokenError(Reason.OTHER_SCHEME)
        if len(api_keys[0]) > max_size:
            raise InvalidTokenError(Reason.TOKEN_TOO_LARGE)
        return Credentials("api_key", api_keys[0])
    if len(authorization) > 1:
        raise InvalidRequestError(Reason.MULTIPLE_CREDENTIALS)
    if dpop != "disabled" and authorization:
        token = _from_header(authorization[0], max_size, "dpop")
        if token is not None:
            if query or form:
                raise InvalidRequestError(Reason.MULTIPLE_CREDENTIALS)
            return Credentials("dpop", token)
        if dpop == "required":  # Bearer is another scheme here; so are the query and form
            if query or form:  # still two credentials
                raise InvalidRequestError(Reason.MULTIPLE_CREDENTIALS)
            raise MissingTokenError(Reason.OTHER_SCHEME)
    elif dpop == "required":
        raise MissingTokenError(Reason.OTHER_SCHEME if query or form else Reason.MISSING_TOKEN)
    token = bearer_token(
        authorization,
        query=query,
        form=form,
        allow_query=allow_query,
        allow_form=allow_form,
        max_size=max_size,
    )
    return Credentials("bearer", token)


def bearer_token(
    authorization: Sequence[str],
    *,
    query: Sequence[str] = (),
    form: Sequence[str] = (),
    allow_query: bool = False,
    allow_form: bool = False,
    max_size: int = DEFAULT_MAX_TOKEN_SIZE,
) -> str:
    """The one bearer token a request carries, or the :class:`AuthError` that answers it.

    :param authorization: every ``Authorization`` header value of the request.
    :param query: every ``access_token`` value in its query string.
    :param form: every ``access_token`` value in its form-encoded body.
    """
    if len(authorization) > 1:
        raise InvalidRequestError(Reason.MULTIPLE_CREDENTIALS)
    from_header = _from_header(authorization[0], max_size) if authorization else None
    if (from_header is not None) + len(query) + len(form) > 1:
        raise InvalidRequestError(Reason.MULTIPLE_CREDENTIALS)
    if from_header is not None:
        return from_header
    if query and allow_query:
        return _checked(query[0], max_size)
    if form and allow_form:
        return _checked(form[0], max_size)
    raise MissingTokenError(Reason.OTHER_SCHEME if authorization else Reason.MISSING_TOKEN)


def _from_header(value: str, max_size: int, wanted: str = "bearer") -> str | None:
    """The token of a ``Bearer`` (or ``wanted``) credential; ``None`` for another scheme
    (RFC 7235 §2.1: schemes are case-insensitive)."""
    scheme, _, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != wanted:
        return None
    # WSGI servers fold repeated headers into one value joined by commas (RFC 9110 §5.3), and a
    # b64token has no comma: this is several credentials, as ASGI would have shown us.
    if "," in rest:
        raise InvalidRequestError(Reason.MULTIPLE_CREDENTIALS)
    return _checked(rest.lstrip(" "), max_size)


def _checked(token: str, max_size: int) -> str:
    if len(token) > max_size:  # before the regex: bounded work whatever a client sends
        raise InvalidTokenError(Reason.TOKEN_TOO_LARGE)
    if not is_b64token(token):
        raise InvalidRequestError(Reason.MALFORMED_REQUEST)
    return token


class ErrorResponse(NamedTuple):
    """The HTTP answer to a refused request."""

    status: int
    headers: dict[str, str]
    body: bytes


def error_response(
    error: AuthError,
    realm: str | None = None,
    *,
    scope: Iterable[str] = (),
    resource_metadata: str | None = None,
    dpop_algs: Iterable[str] | None = None,
    bearer: bool = True,
) -> ErrorResponse:
    """Status, headers and JSON body answering ``error`` (RFC 6750 §3); the same everywhere.

    :param scope: the scopes the resource requires, for a ``401`` challenge.
    :param resource_metadata: the URL of the RFC 9728 metadata, for every challenge (§5.1).
    :param dpop_algs: the DPoP proof algorithms, when the resource accepts DPoP: a ``DPoP``
        challenge follows the ``Bearer`` one, or replaces it (``bearer=False``, RFC 9449 §7.1).
    """
    challenge = error.headers(
        realm, scope=scope, resource_metadata=resource_metadata, dpop_algs=dpop_algs, bearer=bearer
    )
    headers = {
        **challenge,
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
    }
    return ErrorResponse(error.status_code, headers, json.dumps(error.body()).encode())
