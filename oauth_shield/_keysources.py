"""The key sets of every configured issuer, and their metadata (async shell).

Theory of operation
-------------------
- Everything here is built once, at construction, from the configuration: one
  :class:`Discovery` per issuer that is not a template (its metadata, with its own mix-up
  check), and one :class:`RemoteKeySet` per distinct source of keys. A source is a configured
  ``jwks_uri`` (issuers naming the same URL share one key set, fetched once: Entra tenants do)
  or an issuer's metadata (each discovered issuer has its own). Nothing is ever added per
  token, so memory is bounded by the configuration whatever tokens arrive.
- Which key set verifies a token is decided by the issuer its ``iss`` selects
  (``_issuers``), before any lookup or fetch: a key of issuer A never verifies a token naming
  B unless A and B publish the same ``jwks_uri``.
- Each key set keeps its own gates (single-flight, the unknown-kid window, the failure
  backoff): a flood of unknown kids naming issuer B costs B's key set at most two fetches per
  window, and nothing to the others.
- With a shared cache, each key set and each metadata document is shared under the namespace
  of its (first) issuer, as a validator for that issuer alone would share it: one tier (one
  client, one outage state, one fork renewal) with a key namespace per issuer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ._clock import Clock
from ._config import Settings
from ._discovery import Discovery
from ._http import FetchError, HTTPClient
from ._issuers import is_template
from ._keyset import RemoteKeySet
from ._shared import SharedCache
from ._telemetry import LOG_ONLY, Telemetry


class KeySources:
    """Every configured issuer's :class:`Discovery` (when it has metadata) and key set."""

    def __init__(
        self,
        settings: Settings,
        http: HTTPClient,
        clock: Clock,
        shared: SharedCache | None,
        on_keys_removed: Callable[[], None],
        telemetry: Telemetry = LOG_ONLY,
    ) -> None:
        self.discoveries: dict[str, Discovery] = {}
        self.by_issuer: dict[str, RemoteKeySet] = {}
        by_source: dict[str, RemoteKeySet] = {}
        for issuer in settings.issuers:
            discovery = None
            if not is_template(issuer):
                discovery = Discovery(issuer, http, clock.monotonic, wall=clock.time, shared=shared)
                discovery.telemetry = telemetry
                self.discoveries[issuer] = discovery
            url = settings.jwks_uris.get(issuer)
            source = "jwks_uri " + url if url is not None else "metadata " + issuer
            keys = by_source.get(source)
            if keys is None:
                keys = by_source[source] = RemoteKeySet(
                    settings,
                    http,
                    discovery,
                    jwks_uri=url,
                    issuer=issuer,
                    monotonic=clock.monotonic,
                    wall=clock.time,
                    shared=shared,
                    on_keys_removed=on_keys_removed,
                    telemetry=telemetry,
                )
            self.by_issuer[issuer] = keys
        self.key_sets = tuple(by_source.values())

    @property
    def discovery(self) -> Discovery | None:
        """The metadata of the first issuer that has some (introspection, ``metadata()``)."""
        return next(iter(self.discoveries.values()), None)

    def start(self) -> None:
        for keys in self.key_sets:
            keys.start()

    async def refresh(self) -> tuple[RemoteKeySet, FetchError] | None:
        """Fetch every key set now (concurrently); the first that failed, with its failure."""
        failures = await asyncio.gather(*(keys.refresh() for keys in self.key_sets))
        for keys, failure in zip(self.key_sets, failures, strict=True):
            if failure is not None:
                return keys, failure
        return None

    def forget_loop(self, keep: Callable[[object], None]) -> None:
        for keys in self.key_sets:
            keys.forget_loop(keep)
        for discovery in self.discoveries.values():
            discovery.forget_loop(keep)

    async def aclose(self) -> None:
        for keys in self.key_sets:
            await keys.aclose()
        for discovery in self.discoveries.values():
            await discovery.aclose()
