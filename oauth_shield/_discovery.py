"""Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0), fetched and checked.

The metadata's ``issuer`` must equal the configured issuer exactly, or nothing is used from it:
a document that names another issuer is the signature of a mix-up attack (RFC 8414 §3.3).
Endpoints it names pass the fetch rules (https, or loopback http; URLs httpx can request) and
keep the issuer's scheme: an https issuer's metadata cannot send the client secret and users'
tokens to a plain-http endpoint, loopback included, unless ``insecure_http`` is on.

Failures are not logged here but raised as :class:`FetchError` with the URL and the likely fix
(a trailing slash on the issuer, a host alias, a missing endpoint); the key set and the
introspector log them, once per failed fetch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._diagnosis import issuer_hint, printable
from ._http import FetchError, HTTPClient, url_problem
from ._shared import SharedCache
from ._singleflight import SingleFlight
from ._telemetry import LOG_ONLY, Telemetry

logger = logging.getLogger("oauth_shield.discovery")

#: Endpoints rarely move; re-read the metadata hourly, with the next key-set fetch.
METADATA_TTL = 3600.0
#: A failed discovery is shared this long, so that processes waiting for it fail with it.
FAILURE_TTL = 1.0

_DOWNGRADE = (
    "is plain http for an https issuer (a downgrade: the client secret and users' tokens "
    "would travel in clear text)"
)


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
        self._source: str | None = None  # the URL the metadata came from
        self._fetched_at = -float("inf")
        self._flight: SingleFlight[str, dict[str, Any]] = SingleFlight()
        self.telemetry: Telemetry = LOG_ONLY  # the validator's (spans)

    async def endpoint(self, name: str) -> str:
        """A checked endpoint URL from the metadata (``jwks_uri``, ``introspection_endpoint``)."""
        metadata = await self.metadata()
        url = metadata.get(name)
        if not isinstance(url, str):
            raise FetchError(
                "no_endpoint",
                url=self._source,
                detail=f"no {name}",
                hint=f"if the server has one, set {name} (OAUTH_SHIELD_{name.upper()})",
            )
        found = (
            ("insecure_url", _DOWNGRADE)
            if not self._http.allow_http and _downgrades(self.issuer, url)
            else url_problem(url, self._http.allow_http)
        )
        if found is not None:
            raise FetchError(
                found[0],
                url=url,
                detail=f"{name} from the metadata at {self._source} {found[1]}",
                hint=(
                    f"fix the server's public URL (behind a TLS proxy?), or set {name} "
                    f"(OAUTH_SHIELD_{name.upper()}) yourself"
                ),
            )
        return url

    async def metadata(self) -> dict[str, Any]:
        """The metadata; refetched when older than the TTL, kept if a refetch fails."""
        if self._metadata is not None and self._monotonic() - self._fetched_at < METADATA_TTL:
            return self._metadata
        try:
            return await self._flight.run("metadata", self._fetch_traced)
        except FetchError as error:
            if self._metadata is None:
                raise
            logger.warning("metadata refresh failed: %s; keeping the last one", error.explain())
            return self._metadata

    def forget_loop(self, keep: Callable[[object], None]) -> None:
        keep(self._flight)
        self._flight = SingleFlight()

    async def aclose(self) -> None:
        await self._flight.aclose()

    async def _fetch_traced(self) -> dict[str, Any]:
        with self.telemetry.span("oauth_shield.discovery") as span:
            try:
                return await self._fetch()
            except FetchError as error:
                span.fail(error.kind)
                raise

    async def _fetch(self) -> dict[str, Any]:
        """The metadata from another process through the shared cache, or from the issuer."""
        if self._shared is None:
            document, life = await self._from_issuer()
        else:
            document, life = await self._shared.once(
                self._shared.key("metadata", issuer=self.issuer),
                self._from_issuer,
                budget=self._http.timeout,
                bound=lambda found: FAILURE_TTL if "failed" in found else METADATA_TTL,
            )
        if (failure := FetchError.from_marker(document)) is not None:
            raise failure
        metadata = document.get("metadata")
        source = document.get("url")
        source = source if isinstance(source, str) else metadata_urls(self.issuer)[0]
        # Checked again on the way out of the shared cache, not only on the way in.
        if not isinstance(metadata, dict) or metadata.get("issuer") != self.issuer:
            named = metadata.get("issuer") if isinstance(metadata, dict) else None
            raise self._mix_up(source, named)
        self._metadata = metadata
        self._source = source
        self._fetched_at = self._monotonic() - (METADATA_TTL - min(life, METADATA_TTL))
        return metadata

    async def _from_issuer(self) -> tuple[dict[str, Any], float]:
        """OpenID then RFC 8414 metadata as a shareable document (a failure, briefly)."""
        failures: list[FetchError] = []
        for url in metadata_urls(self.issuer):
            try:
                response = await self._http.get_json(url)
            except FetchError as failed:
                if failed.unreachable:
                    return failed.marker(), FAILURE_TTL
                failures.append(failed)
                continue
            if response.data.get("issuer") != self.issuer:
                return self._mix_up(url, response.data.get("issuer")).marker(), FAILURE_TTL
            return {"metadata": response.data, "at": self._wall(), "url": url}, METADATA_TTL
        return self._not_found(*failures).marker(), FAILURE_TTL

    def _mix_up(self, url: str, named: object) -> FetchError:
        shown = repr(printable(named)) if isinstance(named, str) else "no issuer"
        return FetchError(
            "issuer_mismatch",
            url=url,
            detail=f"it names {shown}, issuer is {self.issuer!r}",
            hint=issuer_hint(self.issuer, named),
        )

    def _not_found(self, first: FetchError, second: FetchError) -> FetchError:
        """Both documents refused: report a transient failure first (an outage must not look
        like a refusal), else the second, naming the first too."""
        if first.transient and not second.transient:
            first, second = second, first
        if second.transient:
            return second
        return FetchError(
            second.kind,
            url=second.url,
            detail=f"and {first.kind} at {first.url}: no metadata for this issuer",
            hint=(
                f"check that issuer {self.issuer!r} is exactly the server's issuer identifier "
                "(its path included), or set jwks_uri (and introspection_endpoint)"
            ),
        )


def _downgrades(issuer: str, url: str) -> bool:
    """Whether an endpoint named by an https issuer's metadata is plain http."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        return False  # not a URL at all: url_problem says so
    return urlsplit(issuer).scheme == "https" and scheme == "http"
