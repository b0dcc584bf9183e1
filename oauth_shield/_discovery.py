"""Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0), fetched and checked.

The metadata's ``issuer`` must equal the configured issuer exactly, or nothing is used from it:
a document that names another issuer is the signature of a mix-up attack (RFC 8414 §3.3).
Endpoints it names must themselves be https (or loopback http).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._config import url_problem
from ._http import FetchError, HTTPClient
from ._shared import SharedCache
from ._singleflight import SingleFlight

logger = logging.getLogger("oauth_shield.discovery")

#: Endpoints rarely move; re-read the metadata hourly, with the next key-set fetch.
METADATA_TTL = 3600.0
#: A failed discovery is shared this long, so that processes waiting for it fail with it.
FAILURE_TTL = 1.0


def metadata_urls(issuer: str) -> tuple[str, str]:
    """OpenID Connect (appended) then RFC 8414 (inserted before the path) discovery URLs."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    openid = urlunsplit(parts._replace(path=f"{path}/.well-known/openid-configuration"))
    oauth = urlunsplit(parts._replace(path=f"/.well-known/oauth-authorization-server{path}"))
    return openid, oauth


class Discovery:
    """The issuer's metadata, cached for :data:`METADATA_TTL` and fetched single-flight."""

    def __init__(
        self,
        issuer: str,
        http: HTTPClient,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        wall: Callable[[], float] = time.time,
        shared: SharedCache | None = None,
    ) -> None:
        self.issuer = issuer
        self._http = http
        self._monotonic = monotonic
        self._wall = wall
        self._shared = shared
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = -float("inf")
        self._flight: SingleFlight[str, dict[str, Any]] = SingleFlight()

    async def endpoint(self, name: str) -> str:
        """A checked endpoint URL from the metadata (``jwks_uri``, ``introspection_endpoint``)."""
        metadata = await self.metadata()
        url = metadata.get(name)
        if not isinstance(url, str) or url_problem(url, self._http.allow_http):
            logger.error("metadata of %s has no usable %s", self.issuer, name)
            raise FetchError("metadata_" + name)
        return url

    async def metadata(self) -> dict[str, Any]:
        """The metadata; refetched when older than the TTL, kept if a refetch fails."""
        if self._metadata is not None and self._monotonic() - self._fetched_at < METADATA_TTL:
            return self._metadata
        try:
            return await self._flight.run("metadata", self._fetch)
        except FetchError:
            if self._metadata is None:
                raise
            logger.warning("metadata refresh for %s failed; keeping the last one", self.issuer)
            return self._metadata

    def forget_loop(self, keep: Callable[[object], None]) -> None:
        keep(self._flight)
        self._flight = SingleFlight()

    async def aclose(self) -> None:
        await self._flight.aclose()

    async def _fetch(self) -> dict[str, Any]:
        """The metadata from another process through the shared cache, or from the issuer."""
        if self._shared is None:
            document, life = await self._from_issuer()
        else:
            document, life = await self._shared.once(
                self._shared.key("metadata"),
                self._from_issuer,
                budget=self._http.timeout,
                bound=lambda found: FAILURE_TTL if "failed" in found else METADATA_TTL,
            )
        if (failure := FetchError.from_marker(document)) is not None:
            raise failure
        metadata = document.get("metadata")
        # Checked again on the way out of the shared cache, not only on the way in.
        if not isinstance(metadata, dict) or metadata.get("issuer") != self.issuer:
            raise FetchError("issuer_mismatch")
        self._metadata = metadata
        self._fetched_at = self._monotonic() - (METADATA_TTL - min(life, METADATA_TTL))
        return metadata

    async def _from_issuer(self) -> tuple[dict[str, Any], float]:
        """OpenID then RFC 8414 metadata as a shareable document (a failure, briefly)."""
        error: FetchError | None = None
        for url in metadata_urls(self.issuer):
            try:
                response = await self._http.get_json(url)
            except FetchError as failed:
                if failed.unreachable:
                    return failed.marker(), FAILURE_TTL
                if error is None or not error.transient:  # report a transient failure first
                    error = failed
                continue
            if response.data.get("issuer") != self.issuer:
                logger.error(
                    "metadata at %s names another issuer than %s; refusing it (mix-up defence)",
                    url,
                    self.issuer,
                )
                return FetchError("issuer_mismatch").marker(), FAILURE_TTL
            return {"metadata": response.data, "at": self._wall()}, METADATA_TTL
        return (error or FetchError("no_metadata")).marker(), FAILURE_TTL
