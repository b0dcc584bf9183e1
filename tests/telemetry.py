"""OpenTelemetry's in-memory SDK readers, for asserting exact metrics and spans in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from oauth_shield import otel
from oauth_shield.events import Event

#: A data point's attributes, as a hashable set.
Attrs = frozenset[tuple[str, Any]]


class Recorded:
    """A meter provider and a tracer provider that keep everything in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.events: list[Event] = []

    def instrument(self, validator: Any = None, **options: Any) -> otel.Instrumentation:
        return otel.instrument(
            validator, meter_provider=self.meters, tracer_provider=self.tracers, **options
        )

    def metrics(self) -> dict[str, tuple[str, dict[Attrs, Any]]]:
        """name -> (unit, {attributes: value}); a histogram's value is (count, sum)."""
        found: dict[str, tuple[str, dict[Attrs, Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points: dict[Attrs, Any] = {}
                    for point in metric.data.data_points:
                        key = frozenset(dict(point.attributes or {}).items())
                        value = getattr(point, "value", None)
                        points[key] = (point.count, point.sum) if value is None else value
                    found[metric.name] = (metric.unit or "", points)
        return found

    def points(self, name: str) -> dict[Attrs, Any]:
        return self.metrics().get(name, ("", {}))[1]

    def value(self, name: str, **match: Any) -> Any:
        """The sum of ``name``'s points whose attributes include ``match`` (dots as ``__``)."""
        wanted = {key.replace("__", "."): value for key, value in match.items()}
        total: Any = 0
        for attrs, value in self.points(name).items():
            if wanted.items() <= dict(attrs).items():
                total = value if not total else _add(total, value)
        return total

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, tuple):
        return (a[0] + b[0], a[1] + b[1])
    return a + b


@contextmanager
def recorded(validator: Any = None, **options: Any) -> Iterator[Recorded]:
    """Telemetry on (for ``validator``, or process-wide), then off again."""
    found = Recorded()
    instrumentation = found.instrument(validator, **options)
    try:
        yield found
    finally:
        instrumentation.uninstrument()


def attrs(**values: Any) -> Attrs:
    """Attributes written with ``__`` for dots: ``attrs(oauth_shield__result="success")``."""
    return frozenset((key.replace("__", "."), value) for key, value in values.items())
