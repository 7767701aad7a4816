"""The OpenTelemetry SDK as a test installs it: global providers with an in-memory
span exporter and metric reader, removed again after the test.

OpenTelemetry lets a process set its global providers once; between tests the
"set once" guards are reset, as the SDK's own test utilities do, so that every other
test of the suite runs with no provider set (telemetry silent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

__all__ = ["Recorded", "dump", "recorded", "reset_otel_globals", "tree"]


def reset_otel_globals() -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


class Recorded:
    """What the SDK received during a test."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name -> [(attributes, value)] (a sum's value, a histogram's count and
        sum as a pair)."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = found.setdefault(metric.name, [])
                    for point in metric.data.data_points:
                        value: Any = getattr(point, "value", None)
                        if value is None:
                            value = (getattr(point, "count", None), getattr(point, "sum", None))
                        points.append((dict(point.attributes or {}), value))
        return found


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """The SDK installed as the global tracer and meter providers for one test."""
    reset_otel_globals()
    found = Recorded()
    trace.set_tracer_provider(found.tracer_provider)
    metrics.set_meter_provider(found.meter_provider)
    try:
        yield found
    finally:
        found.tracer_provider.shutdown()
        found.meter_provider.shutdown()
        reset_otel_globals()


def tree(spans: list[ReadableSpan]) -> list[str]:
    """The spans as an indented tree: ``KIND name``, children under parents, in start
    order (what a trace viewer draws)."""
    by_id = {span.context.span_id: span for span in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in by_id else None, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            lines.append(f"{'  ' * depth}{span.kind.name} {span.name}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def dump(spans: list[ReadableSpan]) -> str:
    """Every span as JSON text (names, attributes, events, links, status)."""
    return "\n".join(json.dumps(json.loads(span.to_json())) for span in spans)
