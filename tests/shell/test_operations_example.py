"""docs/operations.md's example and queries: the example app serves, and every metric its
PromQL queries name is in the Prometheus exposition of a validator at work."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

from oauth_shield import AuthError, TokenValidator, events, otel
from oauth_shield._telemetry import instrument_all
from oauth_shield.testing import LocalIssuer, SigningKey
from tests.conftest import ValidatorFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def promql_names() -> set[str]:
    """Every metric the doc's PromQL blocks select (label names in ``by (...)`` and in
    selectors are not metrics)."""
    blocks = "\n".join(re.findall(r"```promql\n(.*?)```", DOC.read_text(), re.DOTALL))
    blocks = re.sub(r"\bby \([^)]*\)|\{[^}]*\}", " ", blocks)
    names = set(re.findall(r"\boauth_shield_[a-z_]+", blocks))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


async def test_every_metric_the_queries_name_is_exposed(
    make_validator: ValidatorFactory, issuer: LocalIssuer
) -> None:
    registry = CollectorRegistry()
    meters = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    issuer.clients["rs"] = "rs-secret-value"
    validator = make_validator(client_id="rs", client_secret="rs-secret-value")
    instrumentation = otel.instrument(validator, meter_provider=meters)
    try:
        await validator.validate(issuer.token())
        await validator.validate(issuer.opaque_token())
        with pytest.raises(AuthError):
            await validator.validate(issuer.token(exp=1))
        stranger = SigningKey("RS256", kid="stranger")
        for _ in range(2):  # the first refetches (two fetches per window), the second waits
            with pytest.raises(AuthError):
                await validator.validate(
                    stranger.sign({"alg": "RS256", "typ": "at+jwt", "kid": "s"}, issuer.claims())
                )
        issuer.rotate(keep_old=False)
        await validator.check()  # a rotation
        # What a lost Redis would report (the real loss: tests/integration/test_operations.py).
        validator._telemetry.emit(
            events.SharedTierDown(
                issuer=issuer.issuer, error_type="ConnectionError", retry_in=5, first=True
            )
        )
        exposed = generate_latest(registry).decode()
    finally:
        instrumentation.uninstrument()
    names = promql_names()
    assert len(names) >= 8  # the queries really were found
    missing = {
        name for name in names if not re.search(rf"^{name}(_bucket|_sum|_count)?\{{", exposed, re.M)
    }
    assert missing == set()


async def test_the_example_app_serves_its_health_route(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = LocalIssuer()
    with issuer.serve():
        monkeypatch.setenv("OAUTH_SHIELD_ISSUER", issuer.issuer)
        monkeypatch.setenv("OAUTH_SHIELD_AUDIENCE", issuer.audience)
        monkeypatch.setenv("METRICS_PORT", "0")
        monkeypatch.setattr(events, "_global", ())
        sys.modules.pop("examples.operations", None)
        try:
            example: Any = importlib.import_module("examples.operations")
            validator = example.app.extensions["oauth_shield"].validator
            assert isinstance(validator, TokenValidator)
            assert validator._telemetry.sink is not None  # instrument() reached it
            answer = await example.app.test_client().get("/healthz")
            assert answer.status_code == 200
            assert answer.headers["Cache-Control"] == "no-store"
            assert (await answer.get_json())["issuer"] == issuer.issuer
            await validator.aclose()
        finally:
            instrument_all(None)
            sys.modules.pop("examples.operations", None)
