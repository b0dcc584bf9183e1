"""The health document: can this validator check tokens right now, and if not, why.

Read from the validator's state only: building it fetches nothing, so a probe every second
costs the issuer nothing. No secret is in it: the configured issuer URL, ages, counts and
failure kinds (the closed set of docs/keysets.md).

Status rule (docs/operations.md):

- ``failing``: tokens cannot be checked. JWTs: no usable key set (none, or older than
  ``jwks_ttl + jwks_max_stale``) and the last fetch failed. With ``introspect_all``: the
  introspection endpoint is in an outage.
- ``degraded``: tokens are checked, but something needs attention: stale keys, a failed
  refresh, no fetch yet (a cold start), introspection unreachable, the shared tier down.
- ``ok``: otherwise.

Adapters answer ``failing`` with 503 and the others with 200, so a load balancer takes out
an instance only when it cannot serve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._keyset import RemoteKeySet
    from ._validator import TokenValidator

#: The HTTP status of the health route for each status.
HTTP_STATUS = {"ok": 200, "degraded": 200, "failing": 503}


def health_document(validator: TokenValidator) -> dict[str, Any]:
    """The health document of ``validator`` (see the module docstring). With several
    issuers, ``keys`` is the first issuer's key set and ``key_sets`` lists them all: failing
    only when none of them can check a token (the others' tokens are still served), degraded
    when any needs attention."""
    remotes = validator._sources.key_sets
    key_sets = [_keys(remote) for remote in remotes]
    introspection = _introspection(validator)
    shared = _shared(validator)
    settings = validator.settings
    needs_keys = not settings.introspect_all
    if (
        needs_keys
        and all(
            k["state"] == "none" and k["last_fetch"] not in ("none", "success") for k in key_sets
        )
    ) or (settings.introspect_all and introspection == "unreachable"):
        status = "failing"
    elif (
        any(k["state"] != "fresh" or k["last_fetch"] != "success" for k in key_sets)
        or introspection == "unreachable"
        or shared == "down"
    ):
        status = "degraded"
    else:
        status = "ok"
    document: dict[str, Any] = {
        "status": status,
        "issuer": settings.issuer,
        "keys": key_sets[0],
        "introspection": introspection,
        "shared_cache": shared,
    }
    if len(key_sets) > 1:
        document["key_sets"] = [
            {"issuer": remote.issuer, **found}
            for remote, found in zip(remotes, key_sets, strict=True)
        ]
    return document


def _keys(remote: RemoteKeySet) -> dict[str, Any]:
    state = remote._state
    now = remote._monotonic()
    installed = state.keys is not None
    if not installed or now >= state.stale_until:
        name = "none"
    elif now >= state.expires_at:
        name = "stale"
    else:
        name = "fresh"
    failure = remote.last_failure
    if failure is not None:
        last = failure.kind
    elif state.failed:
        last = "internal_error"
    else:
        last = "success" if installed else "none"
    return {
        "state": name,
        "age_seconds": round(now - state.fetched_at, 3) if installed else None,
        "expires_in_seconds": round(state.expires_at - now, 3) if installed else None,
        "count": len(state.keys) if state.keys is not None else 0,
        "last_fetch": last,
    }


def _introspection(validator: TokenValidator) -> str:
    introspector = validator._introspector
    if introspector is None:
        return "absent"
    if introspector._outage is not None:
        return "unreachable"
    return "reachable" if introspector.calls else "unknown"


def _shared(validator: TokenValidator) -> str:
    shared = validator._shared
    if shared is None:
        return "absent"
    return "down" if shared.down else "up"


def cache_counts(validator: TokenValidator) -> dict[str, tuple[int, int]]:
    """Hits and misses of each cache of ``validator`` so far (for the metrics)."""
    verified = validator._verified
    counts = {"verified": (verified.hits, verified.misses)}
    introspector = validator._introspector
    if introspector is not None:
        counts["introspection"] = (introspector.hits, introspector.misses)
    shared = validator._shared
    if shared is not None:
        for kind in sorted({*shared.hits, *shared.misses}):
            counts[f"shared.{kind}"] = (shared.hits.get(kind, 0), shared.misses.get(kind, 0))
    return counts
