"""What every adapter does with a request, written once, framework-free.

An adapter reads what its request presents into :class:`RequestCredentials`, asks a
:class:`Guard` for the :class:`Identity` behind it, and on :class:`~oauth_shield.AuthError`
sends :meth:`Guard.refusal`. The guard holds the validator, the adapter settings and the API
keys; it holds no per-request state, so one guard serves every request of an application.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._bearer import Credentials, ErrorResponse, credentials, error_response
from ._claims import required_scopes
from ._errors import AuthError, MissingTokenError, Reason
from ._options import AdapterSettings
from ._secret import Secret
from ._sync import SyncTokenValidator
from ._token import AccessToken
from ._validator import TokenValidator
from .apikeys import APIKeyStore


@dataclass(frozen=True, slots=True)
class RequestCredentials:
    """Everything a request presents that could authenticate it, as the adapter found it.

    Give every value, not just the first: two ``Authorization`` headers, or a token in the
    header and one in the query, are one credential too many (RFC 6750 §3.1), even where the
    second place is not enabled. A WSGI adapter splits a folded ``Authorization`` value with
    :func:`~oauth_shield.http.split_folded` first.
    """

    authorization: Sequence[str] = ()
    """Every ``Authorization`` header value."""
    api_keys: Sequence[str] = ()
    """Every value of the API-key header (``AdapterSettings.api_key_header``)."""
    query: Sequence[str] = ()
    """Every ``access_token`` value in the query string."""
    form: Sequence[str] = ()
    """Every ``access_token`` value in a form body (see ``should_scan_form``)."""
    requester: str | None = None
    """Who sent the request (the client's address), so that one client cannot spend the
    introspection budget of all the others; never logged."""


class Identity(NamedTuple):
    """Who a request is: the validated token, and the raw bearer token behind a
    :class:`~oauth_shield.Secret` (``None`` for an API key), for token exchange only."""

    token: AccessToken
    bearer: Secret | None


class Guard:
    """One application's validator, adapter settings and API keys, used per request.

    :param validator: a :class:`~oauth_shield.TokenValidator` (use :meth:`authenticate`) or a
        :class:`~oauth_shield.SyncTokenValidator` (use :meth:`authenticate_sync`).
    """

    def __init__(
        self,
        validator: TokenValidator | SyncTokenValidator,
        settings: AdapterSettings | None = None,
        api_keys: APIKeyStore | None = None,
    ) -> None:
        self.validator = validator
        self.settings = settings or AdapterSettings.from_config({}, validator)
        self.api_keys = api_keys

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        validator: TokenValidator | SyncTokenValidator,
        api_keys: APIKeyStore | None = None,
        **explicit: Any,
    ) -> Guard:
        """A guard whose settings come from ``explicit`` arguments (when not ``None``), else
        ``OAUTH_SHIELD_*`` keys of ``config``, and whose API keys come from ``api_keys`` or
        ``OAUTH_SHIELD_API_KEYS`` / ``_FILE``."""
        settings = AdapterSettings.from_config(config, validator, **explicit)
        keys = api_keys if api_keys is not None else APIKeyStore.configured(config)
        return cls(validator, settings, keys)

    def __repr__(self) -> str:
        return f"Guard({self.validator!r}, api_keys={self.api_keys!r})"

    def credentials(self, request: RequestCredentials, *, api_keys: bool = False) -> Credentials:
        """The request's one credential, or the :class:`AuthError` that answers it.

        :param api_keys: whether this route accepts an API key instead of a bearer token.
        """
        settings = self.settings
        return credentials(
            request.authorization,
            api_keys=request.api_keys,
            accept_api_keys=api_keys and self.api_keys is not None,
            query=request.query,
            form=request.form,
            allow_query=settings.allow_query_token,
            allow_form=settings.allow_form_token,
            max_size=self.validator.settings.max_token_size,
        )

    async def authenticate(
        self,
        request: RequestCredentials,
        scopes: Iterable[str] | str | None = None,
        *,
        api_keys: bool = False,
    ) -> Identity:
        """Validate the request's credential and require every one of ``scopes``; raises
        :class:`AuthError` (only) when the request is not acceptable."""
        found = self.credentials(request, api_keys=api_keys)
        if found.kind == "api_key":
            return self._api_key(found.value, scopes)
        validator = self.validator
        if not isinstance(validator, TokenValidator):
            raise TypeError("authenticate() needs a TokenValidator: use authenticate_sync()")
        token = await validator.validate(found.value, scopes, requester=request.requester)
        return Identity(token, Secret(found.value))

    def authenticate_sync(
        self,
        request: RequestCredentials,
        scopes: Iterable[str] | str | None = None,
        *,
        api_keys: bool = False,
    ) -> Identity:
        """:meth:`authenticate` for a :class:`~oauth_shield.SyncTokenValidator`."""
        found = self.credentials(request, api_keys=api_keys)
        if found.kind == "api_key":
            return self._api_key(found.value, scopes)
        validator = self.validator
        if not isinstance(validator, SyncTokenValidator):
            raise TypeError("authenticate_sync() needs a SyncTokenValidator: use authenticate()")
        token = validator.validate(found.value, scopes, requester=request.requester)
        return Identity(token, Secret(found.value))

    def _api_key(self, key: str, scopes: Iterable[str] | str | None) -> Identity:
        if self.api_keys is None:  # credentials() returns a key only when there is a store
            raise MissingTokenError(Reason.OTHER_SCHEME)
        return Identity(self.api_keys.validate(key, required_scopes(scopes)), None)

    def refusal(self, error: AuthError) -> ErrorResponse:
        """The status, headers and JSON body that answer ``error`` (RFC 6750 §3)."""
        return error_response(error, self.settings.realm)
