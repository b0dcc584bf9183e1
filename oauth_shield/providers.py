"""Presets for identity providers: the ``TokenValidator`` arguments that fit each one's tokens.

Most APIs sit behind a provider whose access tokens are not RFC 9068 tokens: no ``typ:
at+jwt``, permissions in claims of its own, sometimes no ``aud``. Each function here returns
a plain ``dict`` of keyword arguments with every check that provider's tokens allow: its
issuer and key set, where its permissions live, how its access tokens differ from its ID
tokens, and what it guarantees in place of what RFC 9068 would require. Use it anywhere the
arguments go::

    validator = TokenValidator(**providers.okta("https://example.okta.com",
                                                audience="api://default"))
    shield = Shield(app, **providers.entra(TENANT_ID, audience=API_CLIENT_ID))

Add or override arguments as for any dict (``{**providers.auth0(...), "leeway": 10}``).
The relaxed ``"jwt"`` profile is set only for providers that cannot issue RFC 9068 tokens; a
preset marks itself (``preset=``), so that choice is not logged as a weakened default.
docs/providers.md shows each provider's token and what its side must be configured to do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ._arguments import ValidatorOptions
from ._claimpaths import ClaimName
from ._errors import ConfigurationError
from ._issuers import TENANT, is_tenant_id

__all__ = [
    "auth0",
    "cognito",
    "entra",
    "github_actions",
    "keycloak",
    "kubernetes",
    "okta",
]

#: Entra's multi-tenant "tenants": any work or school account, or those and personal accounts.
ENTRA_MULTI_TENANT = frozenset({"organizations", "common"})
#: The issuer of GitHub Actions' OIDC tokens.
GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"

_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?")
_NAME = re.compile(r"[^\s/?#]+")  # a realm, an authorization server: one path segment
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def keycloak(
    base_url: str,
    realm: str,
    *,
    audience: str | Sequence[str],
    client_roles_of: str | None = None,
) -> ValidatorOptions:
    """A Keycloak realm's access tokens.

    Keycloak signs plain ``JWT`` access tokens (``typ`` header ``JWT``) and tells its token
    kinds apart by the *payload's* ``typ``: ``Bearer`` for access tokens, ``ID`` and
    ``Refresh`` for the others; that is required. Permissions are the realm's roles
    (``realm_access.roles``) and, with ``client_roles_of``, that client's roles
    (``resource_access.<client>.roles``). The client is ``azp`` (give ``allowed_clients`` to
    restrict it). Keycloak puts this API in ``aud`` only with an audience mapper (or
    "audience resolve") on the client's scopes: configure one.

    :param base_url: the server's URL, e.g. ``https://sso.example.com`` (with ``/auth`` for
        Keycloak before 17).
    :param realm: the realm's name, as it appears in ``/realms/<realm>``.
    """
    _check(isinstance(realm, str) and _NAME.fullmatch(realm), "realm", "a realm's name")
    scope_claims: list[ClaimName] = [("realm_access", "roles")]
    if client_roles_of is not None:
        _check(
            isinstance(client_roles_of, str) and client_roles_of, "client_roles_of", "a client id"
        )
        scope_claims.append(("resource_access", client_roles_of, "roles"))
    return {
        "issuer": f"{_base(base_url, 'base_url')}/realms/{realm}",
        "audience": audience,
        "profile": "jwt",
        "required_claims": {"typ": "Bearer"},
        "scope_claims": tuple(scope_claims),
        "client_claim": "azp",
        "preset": "keycloak",
    }


def auth0(domain: str, *, audience: str | Sequence[str], rfc9068: bool = False) -> ValidatorOptions:
    """An Auth0 tenant's access tokens for one API (its identifier is the ``audience``).

    Auth0's issuer ends with a slash (``https://<domain>/``). Permissions are ``scope`` and,
    with RBAC's "Add Permissions in the Access Token", ``permissions``. Auth0 issues RFC 9068
    tokens when the API's "JSON Web Token (JWT) Profile" is ``RFC 9068``: then say
    ``rfc9068=True`` and every RFC 9068 rule applies; otherwise (the "Auth0" profile) the
    tokens are plain ``JWT`` s whose client is ``azp``, and the audience alone tells them
    from ID tokens (whose ``aud`` is the client).

    :param domain: the tenant's domain or custom domain, e.g. ``example.us.auth0.com``.
    """
    host = domain.removeprefix("https://").rstrip("/") if isinstance(domain, str) else ""
    _check(_HOST.fullmatch(host), "domain", "a host name such as 'example.us.auth0.com'")
    _check(isinstance(rfc9068, bool), "rfc9068", "True or False")
    options: ValidatorOptions = {
        "issuer": f"https://{host}/",
        "audience": audience,
        "scope_claims": ("scope", "permissions"),
        "preset": "auth0",
    }
    if not rfc9068:
        options |= {"profile": "jwt", "client_claim": "azp"}
    return options


def entra(
    tenant: str,
    *,
    audience: str | Sequence[str],
    version: int = 2,
    tenants: Sequence[str] | None = None,
    any_tenant: bool = False,
) -> ValidatorOptions:
    """Microsoft Entra ID (Azure AD) access tokens for an API registered in ``tenant``.

    Entra's tokens are plain ``JWT`` s; delegated permissions are the ``scp`` string,
    application permissions the ``roles`` array, and a token must carry one of them (an ID
    token never is an access token here). ``ver`` must be the version the API's registration
    asks for (``accessTokenAcceptedVersion``: 2 gives v2.0 tokens, null or 1 gives v1.0
    tokens), and ``azpacr`` (v2) or ``appidacr`` (v1), present in access tokens only, one of
    ``0``, ``1``, ``2``. The client is ``azp`` (v2) or ``appid`` (v1). Keys come from Entra's
    key set URL, whose keys carry no ``alg`` (RS256 fits them).

    :param tenant: the directory (tenant) id of a single-tenant API, a GUID; or
        ``"organizations"`` (or ``"common"``) for a multi-tenant API, whose issuer is then
        the template ``https://login.microsoftonline.com/{tenantid}/v2.0``.
    :param audience: the API's application (client) id and/or its App ID URI
        (``api://...``), as ``aud`` carries it (v2: the client id).
    :param tenants: multi-tenant only: the tenant ids whose tokens are accepted.
    :param any_tenant: multi-tenant only: accept every organisation's tokens for this
        audience (then authorise by ``tid`` yourself).
    """
    _check(version in (1, 2) and isinstance(version, int), "version", "1 or 2")
    multi = tenant in ENTRA_MULTI_TENANT
    _check(
        multi or is_tenant_id(tenant),
        "tenant",
        "a directory (tenant) id, a GUID as tokens carry it in tid, or 'organizations'",
    )
    if not multi and (tenants is not None or any_tenant):
        raise ConfigurationError(
            "tenants and any_tenant are for a multi-tenant API: set tenant='organizations'",
            field="tenant",
        )
    tid = TENANT if multi else tenant.lower()
    v2 = version == 2
    options: ValidatorOptions = {
        "issuer": (
            f"https://login.microsoftonline.com/{tid}/v2.0"
            if v2
            else f"https://sts.windows.net/{tid}/"
        ),
        "audience": audience,
        "jwks_uri": (
            f"https://login.microsoftonline.com/{tenant}/discovery/"
            + ("v2.0/keys" if v2 else "keys")
        ),
        "profile": "jwt",
        "scope_claims": ("scp", "roles"),
        "require_scope_claim": True,
        "required_claims": (
            {"ver": "2.0", "azpacr": ["0", "1", "2"]}
            if v2
            else {"ver": "1.0", "appidacr": ["0", "1", "2"]}
        ),
        "client_claim": "azp" if v2 else "appid",
        "preset": "entra",
    }
    if multi:
        options |= {"tenants": tenants, "any_tenant": any_tenant}
    return options


def okta(
    org_url: str, *, authorization_server: str = "default", audience: str | Sequence[str]
) -> ValidatorOptions:
    """An Okta custom authorization server's access tokens (``default`` unless named).

    Okta signs plain JWTs without ``typ``; scopes are the ``scp`` array (always present in
    an access token, never in an ID token: required), and the client is ``cid``. The org
    authorization server's tokens (issuer without ``/oauth2/...``) are for Okta's own APIs and
    cannot be validated by yours.

    :param org_url: the org's URL, e.g. ``https://example.okta.com``.
    :param authorization_server: the authorization server's id (``default``, ``aus...``).
    """
    _check(
        isinstance(authorization_server, str) and _NAME.fullmatch(authorization_server),
        "authorization_server",
        "an authorization server id such as 'default'",
    )
    return {
        "issuer": f"{_base(org_url, 'org_url')}/oauth2/{authorization_server}",
        "audience": audience,
        "profile": "jwt",
        "scope_claims": ("scp",),
        "require_scope_claim": True,
        "client_claim": "cid",
        "preset": "okta",
    }


def cognito(region: str, user_pool_id: str, *, client_ids: Sequence[str]) -> ValidatorOptions:
    """An Amazon Cognito user pool's access tokens, for the app clients ``client_ids``.

    Cognito access tokens carry no ``aud``: ``client_id`` says which app client they are for,
    and must be one of ``client_ids``. ``token_use`` must be ``access`` (an ID token's is
    ``id``, and its ``aud`` is a client id: never accepted here). Permissions are ``scope`` and
    the user's groups (``cognito:groups``), as aws-jwt-verify reads them.

    :param region: the pool's AWS region, e.g. ``eu-west-1``.
    :param user_pool_id: e.g. ``eu-west-1_AbCdEf123``.
    """
    _check(isinstance(region, str) and _REGION.fullmatch(region), "region", "e.g. 'eu-west-1'")
    _check(
        isinstance(user_pool_id, str) and re.fullmatch(rf"{re.escape(region)}_\w+", user_pool_id),
        "user_pool_id",
        f"the pool's id, '{region}_' and its name",
    )
    _check(
        isinstance(client_ids, Sequence) and not isinstance(client_ids, str) and client_ids,
        "client_ids",
        "a list of app client ids",
    )
    return {
        "issuer": f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}",
        "audience": None,
        "allowed_clients": list(client_ids),
        "profile": "jwt",
        "required_claims": {"token_use": "access"},
        "scope_claims": ("scope", "cognito:groups"),
        "preset": "cognito",
    }


def github_actions(
    *,
    audience: str | Sequence[str],
    repository: str | Sequence[str] | None = None,
    repository_owner: str | Sequence[str] | None = None,
) -> ValidatorOptions:
    """GitHub Actions' OIDC tokens (a workflow proving which repository it runs in).

    Any workflow of any repository can ask GitHub for a token with any audience, so an
    audience alone admits the world's workflows: name the ``repository`` (``owner/name``) or
    the ``repository_owner`` (organisation or user) whose workflows are accepted, one or a
    list. Refine with ``required_claims`` (``ref``, ``environment``, ``job_workflow_ref``...;
    ``repository_id`` and ``repository_owner_id`` survive a rename, names may be reused).
    """
    if repository is None and repository_owner is None:
        raise ConfigurationError(
            "repository or repository_owner must be given: with an audience alone, every "
            "workflow of every GitHub repository that asks for it gets an acceptable token",
            field="repository",
            mentions=("repository_owner",),
        )
    required: dict[ClaimName, object] = {}
    for name, value in (("repository", repository), ("repository_owner", repository_owner)):
        if value is not None:
            required[name] = _one_or_list(value, name)
    return {
        "issuer": GITHUB_ACTIONS_ISSUER,
        "audience": audience,
        "profile": "jwt",
        "required_claims": required,
        "preset": "github_actions",
    }


def kubernetes(
    issuer: str, *, audience: str | Sequence[str], service_accounts: Sequence[str] | None = None
) -> ValidatorOptions:
    """Kubernetes service-account tokens (projected, bound tokens) from one cluster.

    Give the pods a token with this API's audience (a ``serviceAccountToken`` projected
    volume with ``audience:``), never the API server's default audience. ``service_accounts``
    (``"namespace:name"``) restricts which accounts' tokens are accepted, matched against
    ``sub`` (``system:serviceaccount:<namespace>:<name>``).

    :param issuer: the cluster's service-account issuer (``--service-account-issuer``), e.g.
        ``https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE``; its metadata must be
        reachable without credentials, or give ``jwks_uri`` too.
    """
    options: ValidatorOptions = {
        "issuer": issuer,
        "audience": audience,
        "profile": "jwt",
        "preset": "kubernetes",
    }
    if service_accounts is not None:
        accounts = _one_or_list(service_accounts, "service_accounts")
        for account in accounts:
            _check(
                _SERVICE_ACCOUNT.fullmatch(account),
                "service_accounts",
                "'namespace:name' entries",
            )
        options["required_claims"] = {
            "sub": [f"system:serviceaccount:{account}" for account in accounts]
        }
    return options


def _check(ok: Any, field: str, what: str) -> None:
    if not ok:
        raise ConfigurationError(f"{field} must be {what}", field=field)


def _base(url: object, field: str) -> str:
    """A provider's base URL without its trailing slash (the validator checks the URL)."""
    _check(isinstance(url, str) and url, field, "the provider's https URL")
    return str(url).rstrip("/")


def _one_or_list(value: object, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, Sequence)
        or not items
        or not all(isinstance(item, str) and item for item in items)
    ):
        raise ConfigurationError(f"{field} must be a string or a list of strings", field=field)
    return list(items)
