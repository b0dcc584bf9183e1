"""OpenTelemetry for the benchmark's servers: the SDK, with exporters that drop everything.

What is measured is what instrumentation costs inside the server (a histogram record and a
counter add per validation, the metrics' collection every few seconds, a span per validation
that waits), not what a collector costs: the exporters return at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: How often the metrics are collected (and dropped), as a Prometheus scrape would.
EXPORT_INTERVAL_MS = 5000


def instrument_if_asked(environ: Mapping[str, str]) -> None:
    """With ``BENCH_OTEL=1``, instrument every validator of this process."""
    if environ.get("BENCH_OTEL") != "1":
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from oauth_shield import otel

    class DroppedMetrics(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kw: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kw: Any) -> None:
            pass

    class DroppedSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    reader = PeriodicExportingMetricReader(
        DroppedMetrics(), export_interval_millis=EXPORT_INTERVAL_MS
    )
    tracers = TracerProvider()
    tracers.add_span_processor(BatchSpanProcessor(DroppedSpans()))
    otel.instrument(meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracers)
