"""The cost of the redaction filter per log record, with and without secrets in the record.

Each row logs the same records through a logger whose handler formats them into memory, once
plain and once with oauth_shield.logging installed (record factory and handler filter), in
interleaved rounds; it reports microseconds per record and the extra cost of the filter.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from oauth_shield import logging as shield_logging
from oauth_shield.testing import LocalIssuer

from .timing import Contender, measure, median_us

N = 2000


def _records(token: str) -> dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]]:
    return {
        "plain message": ("user %s fetched %d items in %.1f ms", ("alice", 42, 3.14), {}),
        "access log with query token": (
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "GET", f"/items?access_token={token}&page=2", "1.1", 200),
            {},
        ),
        "Authorization header": (
            "request headers: %s",
            ({"Authorization": f"Bearer {token}"},),
            {},
        ),
        "extra fields": (
            "upstream call",
            (),
            {"extra": {"url": "https://orders/x", "status": 200}},
        ),
    }


def suite(*, rounds: int = 15) -> dict[str, Any]:
    token = LocalIssuer().token()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("bench.redaction")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    results: dict[str, Any] = {}
    for name, (message, args, kwargs) in _records(token).items():

        def emit(
            message: str = message, args: tuple[Any, ...] = args, kwargs: dict[str, Any] = kwargs
        ) -> None:
            for _ in range(N):
                logger.info(message, *args, **kwargs)
            stream.seek(0)
            stream.truncate()

        def plain(emit: Any = emit) -> None:
            shield_logging.uninstall()
            emit()

        def redacted(emit: Any = emit) -> None:
            shield_logging.install(loggers=["bench.redaction"])
            emit()
            shield_logging.uninstall()

        rows = [Contender("plain", plain, N), Contender("redacted", redacted, N)]
        measure(rows, rounds=rounds)
        results[name] = {
            "plain_us": round(median_us(rows[0]), 2),
            "redacted_us": round(median_us(rows[1]), 2),
            "filter_cost_us": round(median_us(rows[1]) - median_us(rows[0]), 2),
        }
    logger.removeHandler(handler)
    return results
