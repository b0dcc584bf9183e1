"""oauth_shield: accept OAuth 2.0 bearer tokens without getting burned.

>>> from oauth_shield import TokenValidator                      # doctest: +SKIP
>>> validator = TokenValidator(issuer="https://as.example.com",
...                            audience="https://api.example.com")
>>> token = await validator.validate(raw_token, scopes=["read"])
"""

from ._arguments import ValidatorOptions, ValidatorOverrides
from ._clock import Clock
from ._dpop import DPoPRequest, DPoPSettings
from ._errors import (
    AuthError,
    ConfigurationError,
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    IssuerUnavailableError,
    MissingTokenError,
    Reason,
    TemporarilyUnavailableError,
    UseDPoPNonceError,
    render_challenge,
    render_dpop_challenge,
)
from ._resource import ProtectedResource
from ._secret import Secret
from ._sync import SyncTokenValidator
from ._token import AccessToken
from ._validator import TokenValidator
from ._version import __version__ as __version__

__all__ = [
    "AccessToken",
    "AuthError",
    "Clock",
    "ConfigurationError",
    "DPoPRequest",
    "DPoPSettings",
    "InsufficientScopeError",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "IssuerUnavailableError",
    "MissingTokenError",
    "ProtectedResource",
    "Reason",
    "Secret",
    "SyncTokenValidator",
    "TemporarilyUnavailableError",
    "TokenValidator",
    "UseDPoPNonceError",
    "ValidatorOptions",
    "ValidatorOverrides",
    "render_challenge",
    "render_dpop_challenge",
]
