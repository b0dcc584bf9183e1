"""Validated settings and their named defaults; every check runs once, at construction."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, cast
from urllib.parse import urlsplit

from ._claimpaths import (
    DEFAULT_SCOPE_CLAIMS,
    ClaimPath,
    RequiredClaims,
    check_clients,
    check_required_claims,
    check_scope_claims,
)
from ._errors import ConfigurationError
from ._issuers import EXAMPLE_TENANT, TENANT, Issuers, is_template, parse_issuers
from ._secret import Secret

# Re-exported: these lived here first, and callers import them from here.
from ._text import json_setting, split_list
from ._text import shown as shown
from ._text import without_credentials as without_credentials

#: RFC 9068 §2.1 asks for asymmetric signatures; these four cover the deployed base.
DEFAULT_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")
#: Every algorithm that can be allowlisted: asymmetric signatures only (RFC 8725 §3.1, §3.2).
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
    | {"EdDSA", "Ed25519", "Ed448"}
)
#: Clocks drift; 30 s absorbs ordinary skew without keeping dead tokens alive for long.
DEFAULT_LEEWAY = 30.0
#: A leeway beyond five minutes stops being skew and starts being a longer token lifetime.
MAX_LEEWAY = 300.0
#: Tokens larger than this are refused before any parsing (typical header limits are 8 KiB).
DEFAULT_MAX_TOKEN_SIZE = 8192
#: Key sets change rarely; five minutes bounds how long a removed key is still trusted.
DEFAULT_JWKS_TTL = 300.0
#: At most two fetches per 30 s for unknown kids, so random kids cannot turn us into an amplifier.
DEFAULT_JWKS_COOLDOWN = 30.0
#: How long last known good keys outlive their TTL while the issuer cannot be reached.
DEFAULT_JWKS_MAX_STALE = 86400.0
#: Whole-request budget for one fetch from the authorization server.
DEFAULT_HTTP_TIMEOUT = 5.0
#: Key sets and metadata are a few KiB; a cap keeps a hostile or broken server from filling memory.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
#: Verified tokens remembered; about 1 KiB each, so the default stays near 10 MiB.
DEFAULT_VERIFIED_CACHE_SIZE = 10_000

#: Introspection answers are cached this long at most (and never beyond the token's exp).
DEFAULT_INTROSPECTION_TTL = 60.0
#: A refused token is remembered this long, so repeating it does not reach the server again.
DEFAULT_INTROSPECTION_NEGATIVE_TTL = 10.0
#: Entries in each introspection cache (positive, negative).
DEFAULT_INTROSPECTION_CACHE_SIZE = 10_000
#: Cache misses per second that may reach the introspection endpoint, per validator...
DEFAULT_INTROSPECTION_RATE = 100.0
#: ...with this burst; beyond it a miss answers 503, so a token scan cannot flood the server.
DEFAULT_INTROSPECTION_BURST = 200
#: One requester may use this share of that rate and burst: it takes four to spend the rest's.
DEFAULT_INTROSPECTION_REQUESTER_SHARE = 0.25
#: Outage grace for introspection: none, fail closed (docs/deployment.md, "outage policy").
DEFAULT_INTROSPECTION_GRACE = 0.0
#: Introspection fields kept by default (RFC 7662 §2.2); everything else is dropped on arrival.
DEFAULT_INTROSPECTION_FIELDS = frozenset(
    {"active", "scope", "client_id", "sub", "exp", "iat", "nbf", "aud", "iss", "token_type"}
    | {"username", "jti"}
)
#: Fields the rules read; always kept, so that a cached answer can be checked again.
RULE_FIELDS = frozenset(
    {"active", "scope", "client_id", "sub", "exp", "nbf", "aud", "iss", "token_type", "cnf"}
)

#: Where RFC 9068 puts the client (§2.2); providers name theirs (azp, cid, appid) in presets.
DEFAULT_CLIENT_CLAIM = "client_id"
#: The presets of ``oauth_shield.providers``, each of which compensates for what the relaxed
#: profile no longer requires with what its provider guarantees.
PRESETS = frozenset(
    {"auth0", "cognito", "entra", "github_actions", "keycloak", "kubernetes", "okta"}
)

Profile = Literal["rfc9068", "jwt"]
AuthMethod = Literal["client_secret_basic", "client_secret_post"]
#: How DPoP-bound tokens are treated (RFC 9449): refused as today, accepted beside bearer
#: tokens, or the only tokens accepted.
DPoPMode = Literal["disabled", "allowed", "required"]
DPOP_MODES = ("disabled", "allowed", "required")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (the one place plain http is allowed)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: The plain-http refusal, which names its fix (the setting, as the user will name it).
HTTPS_REQUIRED = (
    "must use https; plain http is allowed on loopback only, or anywhere with "
    "insecure_http=True (development networks only)"
)
#: The URL problems that are about security (where the request would go in clear, or with
#: credentials), as opposed to a URL that is malformed.
INSECURE_URL_PROBLEMS = frozenset(
    {HTTPS_REQUIRED, "must be an https URL", "must not carry credentials"}
)


def url_problem(url: object, allow_http: bool = False) -> str | None:
    """Why ``url`` may not be used to reach the authorization server, or ``None``.

    Plain http is for loopback only, unless ``allow_http`` (the ``insecure_http`` setting).
    The shell checks the URL again with the parser that will send the request (httpx).
    """
    if not isinstance(url, str):
        return "must be a string"
    if not url.isascii() or not url.isprintable() or " " in url:
        return "must be printable ASCII without spaces"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL (check the port and the brackets around an IPv6 address)"
    if parts.scheme not in ("https", "http"):
        return "must be an https URL"
    if not host:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if parts.fragment or "#" in url:
        return "must not have a fragment"
    if parts.scheme == "https" or allow_http or is_loopback(host):
        return None
    return HTTPS_REQUIRED


def check_url(field: str, url: object, allow_http: bool = False) -> str:
    problem = url_problem(url, allow_http)
    if problem:
        raise url_error(field, url, problem)
    return cast(str, url)


def url_error(field: str, url: object, problem: str) -> ConfigurationError:
    """The refusal of a configured URL: the setting, the value given, and why."""
    mentions = ("insecure_http",) if problem == HTTPS_REQUIRED else ()
    return ConfigurationError(
        f"{field} {problem}; given {shown(url)}", field=field, mentions=mentions
    )


def check_number(field: str, value: object, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(
            f"{field} must be a finite number, not {shown(value)}", field=field
        )
    if not low <= value <= high:
        raise ConfigurationError(
            f"{field} must be between {low:g} and {high:g}, not {value:g}", field=field
        )
    return float(value)


def check_count(field: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigurationError(
            f"{field} must be an integer >= {low}, not {shown(value)}", field=field
        )
    return value


def check_strings(field: str, value: object) -> tuple[str, ...]:
    """A non-empty string (split by :func:`split_list`), or a non-empty collection of strings,
    as a tuple."""
    items = split_list(value) if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, Mapping | bytes):
        raise ConfigurationError(
            f"{field} must be a string or a list of strings, not {shown(value)}", field=field
        )
    result = tuple(items)
    if not result or not all(isinstance(item, str) and item for item in result):
        raise ConfigurationError(
            f"{field} must be a non-empty string or list of them, not {shown(value)}",
            field=field,
        )
    return result


def check_algorithms(value: object) -> frozenset[str]:
    names = check_strings("algorithms", value)
    for name in names:
        if name.lower() == "none" or name.upper().startswith("HS"):
            raise ConfigurationError(
                f"algorithms: {name!r} can never be enabled (RFC 8725 §3.1)", field="algorithms"
            )
        if name not in SUPPORTED_ALGORITHMS:
            raise ConfigurationError(
                f"algorithms: {name!r} is not supported; choose from "
                f"{', '.join(sorted(SUPPORTED_ALGORITHMS))}",
                field="algorithms",
            )
    return frozenset(names)


def _issuer_list(value: object) -> tuple[str, ...]:
    """``issuer``: one issuer (a string, never split: an issuer is compared exactly), several
    (a list), or a JSON array of them in one string (an ``OAUTH_SHIELD_ISSUER`` value)."""
    if isinstance(value, str) and value.startswith("["):
        value = json_setting(value, "issuer", list, "a JSON array of issuers")
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return (cast(str, value),)  # one issuer, checked as a URL by the caller
    issuers = tuple(dict.fromkeys(value))
    if not issuers:
        raise ConfigurationError("issuer must name at least one issuer", field="issuer")
    return issuers


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What a :class:`~oauth_shield.TokenValidator` was configured with, validated.

    ``issuer`` may be given as one issuer or several; once checked it is the first of them
    (the one messages name), and ``issuers`` holds them all. ``audience`` is ``()`` when the
    validator checks clients instead (``audience=None``).
    """

    issuer: str
    audience: tuple[str, ...]
    algorithms: frozenset[str] = frozenset(DEFAULT_ALGORITHMS)
    leeway: float = DEFAULT_LEEWAY
    jwks_uri: str | Mapping[str, str] | None = field(default=None, hash=False)  # a mapping
    profile: Profile = "rfc9068"
    max_token_size: int = DEFAULT_MAX_TOKEN_SIZE
    jwks_ttl: float = DEFAULT_JWKS_TTL
    jwks_cooldown: float = DEFAULT_JWKS_COOLDOWN
    jwks_max_stale: float = DEFAULT_JWKS_MAX_STALE
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    verified_cache_size: int = DEFAULT_VERIFIED_CACHE_SIZE
    introspection_endpoint: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = field(default=None, repr=False)
    introspection_auth: AuthMethod = "client_secret_basic"
    introspect_all: bool = False
    introspection_ttl: float = DEFAULT_INTROSPECTION_TTL
    introspection_negative_ttl: float = DEFAULT_INTROSPECTION_NEGATIVE_TTL
    introspection_cache_size: int = DEFAULT_INTROSPECTION_CACHE_SIZE
    introspection_rate: float = DEFAULT_INTROSPECTION_RATE
    introspection_burst: int = DEFAULT_INTROSPECTION_BURST
    introspection_requester_share: float = DEFAULT_INTROSPECTION_REQUESTER_SHARE
    introspection_fields: frozenset[str] = DEFAULT_INTROSPECTION_FIELDS
    introspection_grace: float = DEFAULT_INTROSPECTION_GRACE
    insecure_http: bool = False
    dpop: DPoPMode = "disabled"
    scope_claims: tuple[ClaimPath, ...] = DEFAULT_SCOPE_CLAIMS
    required_claims: RequiredClaims = ()
    allowed_clients: frozenset[str] | None = None
    client_claim: str = DEFAULT_CLIENT_CLAIM
    require_scope_claim: bool = False
    tenants: frozenset[str] | None = None
    any_tenant: bool = False
    preset: str | None = None
    # Derived in __post_init__:
    issuers: tuple[str, ...] = field(init=False, default=())
    """Every configured issuer, in order (templates as written)."""
    issuer_rules: Issuers = field(init=False, default=Issuers(frozenset()), repr=False)
    """How a token's ``iss`` selects one of ``issuers``."""
    jwks_uris: Mapping[str, str] = field(init=False, default_factory=dict, repr=False, hash=False)
    """The key set URL of each issuer that has one configured (the others discover theirs)."""
    claim_rules: bool = field(init=False, default=False, repr=False)
    """Whether a rule beyond RFC 9068's applies to claims (clients, values, scope claims)."""

    @property
    def introspection(self) -> bool:
        """Whether opaque tokens are introspected (client credentials are configured)."""
        return self.client_id is not None

    @property
    def requester_rate(self) -> tuple[float, int]:
        """The rate and burst of one requester's bucket: its share of the validator's."""
        share = self.introspection_requester_share
        return self.introspection_rate * share, max(1, int(self.introspection_burst * share))

    def __post_init__(self) -> None:
        for name in ("introspect_all", "insecure_http"):  # first: insecure_http guards the URLs
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{name} must be True or False, not {shown(getattr(self, name))}", field=name
                )
        self._check_issuers()
        set_ = object.__setattr__
        set_(self, "algorithms", check_algorithms(self.algorithms))
        set_(self, "leeway", check_number("leeway", self.leeway, 0, MAX_LEEWAY))
        if self.profile not in ("rfc9068", "jwt"):
            raise ConfigurationError(
                f"profile must be 'rfc9068' or 'jwt', not {shown(self.profile)}", field="profile"
            )
        check_count("max_token_size", self.max_token_size, 256)
        set_(self, "jwks_ttl", check_number("jwks_ttl", self.jwks_ttl, 1))
        set_(self, "jwks_cooldown", check_number("jwks_cooldown", self.jwks_cooldown, 0))
        set_(self, "jwks_max_stale", check_number("jwks_max_stale", self.jwks_max_stale, 0))
        set_(self, "http_timeout", check_number("http_timeout", self.http_timeout, 0.01, 300))
        check_count("max_response_bytes", self.max_response_bytes, 1024)
        check_count("verified_cache_size", self.verified_cache_size, 0)
        if self.dpop not in DPOP_MODES:
            raise ConfigurationError(
                f"dpop must be 'disabled', 'allowed' or 'required', not {shown(self.dpop)}",
                field="dpop",
            )
        self._check_claim_rules()
        self._check_introspection()

    def warnings(self) -> list[str]:
        """The settings that weaken a default, each as a sentence for the startup log."""
        found = []
        if self.insecure_http:
            found.append("insecure_http is on: tokens and key sets may travel in clear text")
        if self.profile != "rfc9068" and self.preset is None:
            found.append(
                "the relaxed 'jwt' profile is on: typ at+jwt and RFC 9068 claims are not required"
            )
        if self.leeway > 60:
            found.append(f"leeway is {self.leeway:g} s: expired tokens are accepted that long")
        if self.introspection_grace > 0:
            found.append(
                f"introspection_grace is {self.introspection_grace:g} s: during an outage, "
                "revoked tokens are accepted that long after their last check"
            )
        return found

    def _check_issuers(self) -> None:
        """``issuer`` (one or several, templates), ``jwks_uri`` (one, or one per issuer),
        ``tenants`` and ``any_tenant``."""
        set_ = object.__setattr__
        issuers = _issuer_list(self.issuer)
        for issuer in issuers:
            example = issuer.replace(TENANT, EXAMPLE_TENANT) if isinstance(issuer, str) else issuer
            if (problem := url_problem(example, self.insecure_http)) is not None:
                raise url_error("issuer", issuer, problem)
            if "?" in issuer:
                raise ConfigurationError(
                    f"issuer must not have a query (RFC 8414 §2); given {shown(issuer)}",
                    field="issuer",
                )
        if not isinstance(self.any_tenant, bool):
            raise ConfigurationError("any_tenant must be True or False", field="any_tenant")
        rules = parse_issuers(issuers, self.tenants, self.any_tenant)
        set_(self, "issuers", issuers)
        set_(self, "issuer", issuers[0])
        set_(self, "issuer_rules", rules)
        set_(self, "tenants", rules.templates[0].tenants if rules.templates else None)
        set_(self, "jwks_uris", self._jwks_uris(issuers))

    def _jwks_uris(self, issuers: tuple[str, ...]) -> Mapping[str, str]:
        uris = self.jwks_uri
        if isinstance(uris, str) and uris.lstrip().startswith("{"):  # OAUTH_SHIELD_JWKS_URI
            uris = json_setting(uris, "jwks_uri", dict, "a JSON object of issuer: URL")
        if uris is None:
            found: dict[str, str] = {}
        elif isinstance(uris, Mapping):
            unknown = [name for name in uris if name not in issuers]
            if unknown:
                raise ConfigurationError(
                    f"jwks_uri names {shown(unknown[0])}, which is not one of the issuers",
                    field="jwks_uri",
                )
            found = {
                name: check_url("jwks_uri", url, self.insecure_http) for name, url in uris.items()
            }
            object.__setattr__(self, "jwks_uri", MappingProxyType(dict(found)))
        else:
            url = check_url("jwks_uri", uris, self.insecure_http)
            found = dict.fromkeys(issuers, url)
        for issuer in issuers:
            if is_template(issuer) and issuer not in found:
                raise ConfigurationError(
                    f"jwks_uri is not set for issuer {shown(issuer)}: a template's key set "
                    "cannot be discovered; set jwks_uri (for Microsoft Entra ID: "
                    "https://login.microsoftonline.com/common/discovery/v2.0/keys), or use "
                    "oauth_shield.providers.entra(...)",
                    field="jwks_uri",
                )
        return MappingProxyType(found)

    def _check_claim_rules(self) -> None:
        """``audience=None``, clients, scope claims and required claims."""
        set_ = object.__setattr__
        for name in ("require_scope_claim",):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be True or False", field=name)
        set_(self, "allowed_clients", check_clients(self.allowed_clients))
        if self.audience is None:
            if self.allowed_clients is None:
                raise ConfigurationError(
                    "audience is None, and allowed_clients is not set: without an audience "
                    "nothing says a token was meant for this API; set audience, or name the "
                    "clients whose tokens it accepts in allowed_clients (AWS Cognito access "
                    "tokens carry client_id instead of aud)",
                    field="audience",
                    mentions=("allowed_clients",),
                )
            set_(self, "audience", ())
        else:
            set_(self, "audience", check_strings("audience", self.audience))
        if not isinstance(self.client_claim, str) or not self.client_claim:
            raise ConfigurationError(
                f"client_claim must be a claim name, not {shown(self.client_claim)}",
                field="client_claim",
            )
        set_(self, "scope_claims", check_scope_claims(self.scope_claims))
        set_(self, "required_claims", check_required_claims(self.required_claims))
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigurationError(
                f"preset must be one of {', '.join(sorted(PRESETS))}, not {shown(self.preset)}",
                field="preset",
            )
        set_(
            self,
            "claim_rules",
            self.scope_claims != DEFAULT_SCOPE_CLAIMS
            or bool(self.required_claims)
            or self.allowed_clients is not None
            or self.client_claim != DEFAULT_CLIENT_CLAIM
            or self.require_scope_claim,
        )

    def _check_introspection(self) -> None:
        set_ = object.__setattr__
        if self.introspection_endpoint is not None:
            check_url("introspection_endpoint", self.introspection_endpoint, self.insecure_http)
        if self.client_id is not None and (
            not isinstance(self.client_id, str) or not self.client_id
        ):
            raise ConfigurationError(
                f"client_id must be a non-empty string, not {shown(self.client_id)}",
                field="client_id",
            )
        secret_names = ("client_secret_file", "client_id")
        if self.client_id is not None and self.client_secret is None:
            raise ConfigurationError(
                "client_secret (or client_secret_file) is required with client_id",
                field="client_secret",
                mentions=secret_names,
            )
        if self.client_id is None and self.client_secret is not None:
            raise ConfigurationError(
                "client_secret (or client_secret_file) is set, but client_id is not: "
                "introspection needs both; set client_id, or remove the secret",
                field="client_secret",
                mentions=secret_names,
            )
        for name in ("introspection_endpoint", "introspect_all"):
            if self.client_id is None and getattr(self, name):
                raise ConfigurationError(
                    f"{name} is set, but client_id is not: introspection needs client_id and "
                    "client_secret",
                    field=name,
                    mentions=("client_id", "client_secret"),
                )
        if self.introspection_auth not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(
                "introspection_auth must be client_secret_basic or client_secret_post, not "
                f"{shown(self.introspection_auth)}",
                field="introspection_auth",
            )
        for name in ("introspection_ttl", "introspection_negative_ttl", "introspection_grace"):
            set_(self, name, check_number(name, getattr(self, name), 0))
        set_(
            self,
            "introspection_rate",
            check_number("introspection_rate", self.introspection_rate, 0.001),
        )
        check_count("introspection_cache_size", self.introspection_cache_size, 0)
        check_count("introspection_burst", self.introspection_burst, 1)
        share = "introspection_requester_share"
        set_(self, share, check_number(share, self.introspection_requester_share, 0.001, 1))
        fields = check_strings("introspection_fields", self.introspection_fields)
        set_(self, "introspection_fields", frozenset(fields) | RULE_FIELDS | self._rule_claims())

    def _rule_claims(self) -> frozenset[str]:
        """The claims this configuration's own rules read: kept in an introspection answer,
        so that a cached or shared answer can be checked again."""
        paths = [*self.scope_claims, *(path for path, _ in self.required_claims)]
        names = {path[0] for path in paths} | {self.client_claim}
        return frozenset(names | ({"tid"} if self.issuer_rules.templates else set()))
