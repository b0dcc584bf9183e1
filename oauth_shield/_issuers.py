"""Which configured issuer a token names, decided before anything is fetched (pure).

A validator may trust several issuers (``issuer=[...]``). Each token's ``iss`` picks one of
them from the unverified payload, and that issuer's key set alone may verify it: a key of
issuer A never verifies a token naming B, unless both publish the same key set. A token
naming no configured issuer is refused at once (``issuer_mismatch``): it costs a dictionary
lookup, never a fetch.

A *template* stands for many issuers that differ only by a tenant id, as Microsoft Entra ID's
multi-tenant metadata names its issuer ``https://login.microsoftonline.com/{tenantid}/v2.0``
(Microsoft.Identity.Web's issuer validator reads it the same way). A token matches a template
when its ``tid`` claim is a GUID, is allowed (``tenants``, or any with ``any_tenant``), and its
``iss`` equals the template with ``{tenantid}`` replaced by that ``tid``, compared exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError, InvalidTokenError, Reason
from ._text import shown, split_list

#: The placeholder of a tenant's id in an issuer template (as Entra's metadata writes it).
TENANT = "{tenantid}"
#: Issuers one validator trusts: a deployment has a handful; more is a configuration slip, and
#: each costs its own metadata and key set.
MAX_ISSUERS = 64
#: A tenant id stands in a template's place for the URL checks.
EXAMPLE_TENANT = "00000000-0000-0000-0000-000000000000"

# Entra tenant ids are GUIDs (8-4-4-4-12 hex digits); nothing else may stand for {tenantid}.
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MISSING: Any = object()


def is_template(issuer: str) -> bool:
    return TENANT in issuer


def is_tenant_id(value: object) -> bool:
    return type(value) is str and _GUID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Template:
    """An issuer with ``{tenantid}`` in it, and the tenants it accepts (``None``: any)."""

    text: str
    tenants: frozenset[str] | None
    prefix: str = ""
    suffix: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.text[: self.text.index(TENANT)])
        object.__setattr__(self, "suffix", self.text[self.text.rindex(TENANT) + len(TENANT) :])

    def names(self, iss: str, claims: Mapping[str, Any]) -> bool:
        """Whether a token with this ``iss`` and these claims comes from one of our tenants."""
        if (
            len(iss) <= len(self.prefix) + len(self.suffix)
            or not iss.startswith(self.prefix)
            or not iss.endswith(self.suffix)
        ):
            return False
        tid = claims.get("tid", _MISSING)
        if not is_tenant_id(tid) or (self.tenants is not None and tid.lower() not in self.tenants):
            return False
        return iss == self.text.replace(TENANT, tid)

    def issuers(self) -> tuple[str, ...]:
        """The issuers of the allowed tenants (none known for any tenant)."""
        return tuple(self.text.replace(TENANT, tid) for tid in sorted(self.tenants or ()))


@dataclass(frozen=True, slots=True)
class Issuers:
    """The configured issuers: exact ones and templates."""

    plain: frozenset[str]
    templates: tuple[Template, ...] = ()

    def select(self, claims: Mapping[str, Any]) -> str:
        """The configured issuer (a template as configured) that the token's ``iss`` names;
        raises ``missing_claim`` or ``issuer_mismatch``."""
        iss = claims.get("iss", _MISSING)
        if type(iss) is str:
            if iss in self.plain:
                return iss
            for template in self.templates:
                if template.names(iss, claims):
                    return template.text
        raise InvalidTokenError(Reason.MISSING_CLAIM if iss is _MISSING else Reason.ISSUER_MISMATCH)

    def concrete(self, issuers: Iterable[str]) -> tuple[str, ...]:
        """``issuers`` (as configured) with each template replaced by its allowed tenants'
        issuers: every issuer identifier known in full, for RFC 9728's list."""
        templates = {template.text: template for template in self.templates}
        found: list[str] = []
        for issuer in issuers:
            template = templates.get(issuer)
            found += template.issuers() if template is not None else (issuer,)
        return tuple(found)


def parse_issuers(issuers: tuple[str, ...], tenants: object, any_tenant: bool) -> Issuers:
    """Check templates, ``tenants`` and ``any_tenant`` together; the URLs are the caller's."""
    if len(issuers) > MAX_ISSUERS:
        raise ConfigurationError(
            f"issuer: at most {MAX_ISSUERS} issuers, not {len(issuers)}", field="issuer"
        )
    for issuer in issuers:
        rest = issuer.replace(TENANT, "")
        if "{" in rest or "}" in rest:  # a misspelt placeholder, most likely
            raise ConfigurationError(
                f"issuer {shown(issuer)}: the only placeholder an issuer may hold is {TENANT}",
                field="issuer",
            )
    templates = [issuer for issuer in issuers if is_template(issuer)]
    allowed = _tenants(tenants, any_tenant, templates)
    return Issuers(
        frozenset(issuer for issuer in issuers if not is_template(issuer)),
        tuple(Template(template, allowed) for template in templates),
    )


def _tenants(value: object, any_tenant: bool, templates: list[str]) -> frozenset[str] | None:
    if value is None:
        if templates and not any_tenant:
            raise ConfigurationError(
                f"tenants is not set, and issuer {shown(templates[0])} accepts any tenant's "
                "tokens: name the tenants (directory ids) to accept in tenants=[...], or accept "
                "every organisation's tokens for this audience with any_tenant=True",
                field="tenants",
                mentions=("any_tenant",),
            )
        if any_tenant and not templates:
            raise ConfigurationError(
                f"any_tenant needs an issuer template with {TENANT} in it", field="any_tenant"
            )
        return None
    if any_tenant:
        raise ConfigurationError(
            "tenants and any_tenant=True exclude each other: give one", field="tenants"
        )
    if not templates:
        raise ConfigurationError(
            f"tenants needs an issuer template with {TENANT} in it (such as "
            "'https://login.microsoftonline.com/{tenantid}/v2.0')",
            field="tenants",
        )
    items = split_list(value) if isinstance(value, str) else value
    if not isinstance(items, Iterable) or isinstance(items, Mapping | bytes):
        items = [items]
    found = list(items)
    bad = [item for item in found if not is_tenant_id(item)]
    if not found or bad:
        raise ConfigurationError(
            "tenants must be a non-empty list of tenant (directory) ids, GUIDs as tokens carry "
            f"them in tid; not {shown(bad[0]) if bad else 'an empty list'}",
            field="tenants",
        )
    return frozenset(item.lower() for item in found)
