"""Issuer selection (oauth_shield._issuers) and its configuration: several issuers, and
templates with ``{tenantid}`` as Microsoft Entra ID names a multi-tenant issuer.

The template's shape is Entra's own: the ``issuer`` of
https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration is
``https://login.microsoftonline.com/{tenantid}/v2.0``, and a token's ``iss`` has the tenant's
id (its ``tid`` claim, a lower-case GUID) in its place
(learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_shield import ConfigurationError, InvalidTokenError, Reason, TokenValidator
from oauth_shield._config import Settings
from oauth_shield._issuers import Issuers, Template, parse_issuers

V2 = "https://login.microsoftonline.com/{tenantid}/v2.0"
V1 = "https://sts.windows.net/{tenantid}/"
KEYS = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
FABRIKAM = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
STRANGER = "00000000-1111-2222-3333-444444444444"


def v2(tid: str) -> str:
    return V2.replace("{tenantid}", tid)


def select(issuers: Issuers, **token: Any) -> str | Reason:
    try:
        return issuers.select(token)
    except InvalidTokenError as error:
        return error.reason


PLAIN = parse_issuers(("https://a.test", "https://b.test/realms/x"), None, False)
TENANTS = parse_issuers((V2,), frozenset({CONTOSO, FABRIKAM}), False)
ANY = parse_issuers((V2, V1), None, True)


@pytest.mark.parametrize(
    ("token", "selected"),
    [
        ({"iss": "https://a.test"}, "https://a.test"),
        ({"iss": "https://b.test/realms/x"}, "https://b.test/realms/x"),
        ({"iss": "https://a.test/"}, Reason.ISSUER_MISMATCH),
        ({"iss": "https://A.test"}, Reason.ISSUER_MISMATCH),
        ({"iss": "https://b.test/realms/x/"}, Reason.ISSUER_MISMATCH),
        ({"iss": "https://b.test/realms"}, Reason.ISSUER_MISMATCH),
        ({"iss": ["https://a.test"]}, Reason.ISSUER_MISMATCH),
        ({"iss": None}, Reason.ISSUER_MISMATCH),
        ({}, Reason.MISSING_CLAIM),
    ],
    ids=repr,
)
def test_plain_issuers_are_selected_by_exact_iss(token: dict[str, Any], selected: object) -> None:
    assert select(PLAIN, **token) == selected


@pytest.mark.parametrize(
    ("token", "selected"),
    [
        ({"iss": v2(CONTOSO), "tid": CONTOSO}, V2),
        ({"iss": v2(FABRIKAM), "tid": FABRIKAM}, V2),
        # A tenant not on the list; a tid that is not the one in iss; no tid at all.
        ({"iss": v2(STRANGER), "tid": STRANGER}, Reason.ISSUER_MISMATCH),
        ({"iss": v2(STRANGER), "tid": CONTOSO}, Reason.ISSUER_MISMATCH),
        ({"iss": v2(CONTOSO), "tid": FABRIKAM}, Reason.ISSUER_MISMATCH),
        ({"iss": v2(CONTOSO)}, Reason.ISSUER_MISMATCH),
        # tid must be a GUID: never a path, a wildcard, or the template itself.
        ({"iss": v2("organizations"), "tid": "organizations"}, Reason.ISSUER_MISMATCH),
        ({"iss": V2, "tid": "{tenantid}"}, Reason.ISSUER_MISMATCH),
        ({"iss": v2(f"{CONTOSO}/x"), "tid": f"{CONTOSO}/x"}, Reason.ISSUER_MISMATCH),
        ({"iss": v2(CONTOSO + "0"), "tid": CONTOSO + "0"}, Reason.ISSUER_MISMATCH),
        ({"iss": v2(CONTOSO), "tid": [CONTOSO]}, Reason.ISSUER_MISMATCH),
        # The rest of iss is compared exactly.
        ({"iss": v2(CONTOSO) + "/", "tid": CONTOSO}, Reason.ISSUER_MISMATCH),
        ({"iss": "http" + v2(CONTOSO)[5:], "tid": CONTOSO}, Reason.ISSUER_MISMATCH),
        ({"iss": v2(CONTOSO).replace("v2.0", "v2.1"), "tid": CONTOSO}, Reason.ISSUER_MISMATCH),
        ({"iss": f"https://evil.test/{CONTOSO}/v2.0", "tid": CONTOSO}, Reason.ISSUER_MISMATCH),
        # An upper-case tenant id is the same tenant, but iss must still carry the tid as is.
        ({"iss": v2(CONTOSO.upper()), "tid": CONTOSO.upper()}, V2),
        ({"iss": v2(CONTOSO.upper()), "tid": CONTOSO}, Reason.ISSUER_MISMATCH),
    ],
    ids=lambda value: repr(value)[:60],
)
def test_a_template_matches_its_tenants_only(token: dict[str, Any], selected: object) -> None:
    assert select(TENANTS, **token) == selected


def test_any_tenant_accepts_every_tenant_but_still_compares_exactly() -> None:
    assert select(ANY, iss=v2(STRANGER), tid=STRANGER) == V2
    assert select(ANY, iss=f"https://sts.windows.net/{STRANGER}/", tid=STRANGER) == V1
    assert select(ANY, iss=f"https://sts.windows.net/{STRANGER}", tid=STRANGER) == (
        Reason.ISSUER_MISMATCH
    )
    assert select(ANY, iss=v2(STRANGER), tid=FABRIKAM) == Reason.ISSUER_MISMATCH


def test_a_placeholder_may_appear_twice() -> None:
    # Entra External ID: https://<tid>.ciamlogin.com/<tid>/v2.0
    ciam = parse_issuers(("https://{tenantid}.ciamlogin.com/{tenantid}/v2.0",), None, True)
    good = f"https://{CONTOSO}.ciamlogin.com/{CONTOSO}/v2.0"
    assert select(ciam, iss=good, tid=CONTOSO) == ciam.templates[0].text
    mixed = f"https://{FABRIKAM}.ciamlogin.com/{CONTOSO}/v2.0"
    assert select(ciam, iss=mixed, tid=CONTOSO) == Reason.ISSUER_MISMATCH


@given(st.text(max_size=120), st.one_of(st.none(), st.text(max_size=40)))
def test_selection_never_fails_otherwise(iss: str, tid: str | None) -> None:
    token = {"iss": iss} if tid is None else {"iss": iss, "tid": tid}
    outcome = select(ANY, **token)
    assert outcome in (V2, V1, Reason.ISSUER_MISMATCH)
    if outcome != Reason.ISSUER_MISMATCH:
        assert tid is not None and iss in (v2(tid), f"https://sts.windows.net/{tid}/")


def test_the_work_is_bounded_by_the_token() -> None:
    # A long iss with the template's prefix and suffix: two comparisons, then a regex on a
    # fixed-length id; a 8 KiB tid is refused by its first character past 36.
    long = "https://login.microsoftonline.com/" + "a" * 8000 + "/v2.0"
    assert select(ANY, iss=long, tid="a" * 8000) == Reason.ISSUER_MISMATCH


def test_concrete_issuers_for_resource_metadata() -> None:
    assert TENANTS.concrete((V2,)) == (v2(FABRIKAM), v2(CONTOSO)) or TENANTS.concrete((V2,)) == (
        v2(CONTOSO),
        v2(FABRIKAM),
    )
    assert ANY.concrete((V2, V1)) == ()
    assert PLAIN.concrete(("https://b.test/realms/x", "https://a.test")) == (
        "https://b.test/realms/x",
        "https://a.test",
    )
    assert isinstance(TENANTS.templates[0], Template)


# --- configuration --------------------------------------------------------------------------


def build(**options: Any) -> Settings:
    return Settings(audience="api", **options)


def refusal(**options: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as raised:
        TokenValidator(audience="api", **options)
    return raised.value


def test_several_issuers_in_order_without_repeats() -> None:
    made = build(issuer=["https://b.test", "https://a.test", "https://b.test"])
    assert made.issuers == ("https://b.test", "https://a.test")
    assert made.issuer == "https://b.test"  # the first: what messages name


@pytest.mark.parametrize(
    ("options", "starts", "names"),
    [
        ({"issuer": V2, "any_tenant": True}, "jwks_uri is not set for issuer",
         "oauth_shield.providers.entra"),
        ({"issuer": V2, "jwks_uri": KEYS}, "tenants is not set", "any_tenant=True"),
        ({"issuer": V2, "jwks_uri": KEYS, "tenants": []}, "tenants must be a non-empty list", ""),
        ({"issuer": V2, "jwks_uri": KEYS, "tenants": ["contoso.com"]}, "tenants must be", "GUID"),
        ({"issuer": V2, "jwks_uri": KEYS, "tenants": [CONTOSO], "any_tenant": True},
         "tenants and any_tenant=True exclude each other", ""),
        ({"issuer": "https://a.test", "tenants": [CONTOSO]},
         "tenants needs an issuer template", ""),
        ({"issuer": "https://a.test", "any_tenant": True},
         "any_tenant needs an issuer template", ""),
        ({"issuer": "https://x.test/{tenant}/v2.0"},
         "issuer 'https://x.test/{tenant}/v2.0': the only placeholder", "{tenantid}"),
        ({"issuer": "https://x.test/{tenantid}/{x}", "jwks_uri": KEYS, "any_tenant": True},
         "issuer 'https://x.test/{tenantid}/{x}': the only placeholder", ""),
        ({"issuer": "http://x.test/{tenantid}", "jwks_uri": KEYS, "any_tenant": True},
         "issuer must use https", "'http://x.test/{tenantid}'"),
        ({"issuer": ["https://a.test"], "jwks_uri": {"https://b.test": KEYS}},
         "jwks_uri names 'https://b.test', which is not one of the issuers", ""),
        ({"issuer": ["https://a.test"], "jwks_uri": {"https://a.test": "http://keys.test"}},
         "jwks_uri must use https", ""),
        ({"issuer": []}, "issuer must name at least one issuer", ""),
        ({"issuer": [f"https://i{n}.test" for n in range(65)]}, "issuer: at most 64 issuers", ""),
        ({"issuer": "https://a.test", "any_tenant": "yes"}, "any_tenant must be True or False", ""),
    ],
    ids=lambda value: repr(value)[:50],
)  # fmt: skip
def test_each_mistake_is_named_with_its_fix(
    options: dict[str, Any], starts: str, names: str
) -> None:
    error = refusal(**options)
    assert str(error).startswith(starts), str(error)
    assert names in str(error)


def test_a_jwks_uri_string_applies_to_every_issuer() -> None:
    made = build(issuer=[V2, V1], jwks_uri=KEYS, any_tenant=True)
    assert dict(made.jwks_uris) == {V2: KEYS, V1: KEYS}
    mapped = build(issuer=["https://a.test", V2], jwks_uri={V2: KEYS}, any_tenant=True)
    assert dict(mapped.jwks_uris) == {V2: KEYS}  # https://a.test discovers its own


def test_settings_stay_hashable_and_comparable() -> None:
    options: dict[str, Any] = {
        "issuer": ["https://a.test", V2],
        "jwks_uri": {V2: KEYS},
        "tenants": [CONTOSO],
        "required_claims": {"ver": ["2.0", 2]},
        "scope_claims": "scp /realm_access/roles",
        "allowed_clients": "app-1",
    }
    first, second = build(**options), build(**options)
    assert first == second and hash(first) == hash(second)
    assert first != build(**{**options, "tenants": [FABRIKAM]})
