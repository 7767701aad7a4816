"""What telemetry costs a poll: kepler_async's polls per second and CPU per poll with
OpenTelemetry absent, installed with no SDK, and with the SDK recording every span
and metric.

Same server and loop as benchmarks/throughput.py (one pending job behind uvicorn in
its own process; N loops of ``await kepler.get_job(job_id)``), each run in a fresh
child process set up one way:

- ``absent``: ``opentelemetry`` cannot be imported (as without the ``otel`` extra);
- ``api, no SDK``: the API installed, no provider set (what a library user who does
  not trace gets);
- ``SDK``: a ``TracerProvider`` with a ``BatchSpanProcessor`` (spans exported to a
  sink that drops them) and a ``MeterProvider`` with a periodic reader.

    python benchmarks/otel_cost.py [--in-flight 10] [--seconds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import in_child, machine, save, table
from throughput import run, serve_forever

MODES = ["absent", "api, no SDK", "SDK"]
WIRES = {
    "httpx wire": "kepler_async (httpx transport)",
    "aiohttp wire": "kepler_async (aiohttp transport)",
}


def run_mode(
    mode: str, name: str, url: str, job_id: str, in_flight: int, seconds: float
) -> dict[str, Any]:
    if mode == "absent":
        for module in ("opentelemetry", "opentelemetry.trace", "opentelemetry.metrics"):
            sys.modules[module] = None  # type: ignore[assignment]
    elif mode == "SDK":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Sink(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Sink()))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    result = run(name, url, job_id, in_flight, seconds)
    from kepler_async._engine import _telemetry

    result["otel_installed"] = _telemetry._INSTALLED
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_forever, args=(child,), daemon=True)
    server.start()
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        url, job_id = parent.recv()
        for wire, name in WIRES.items():
            results[wire] = {}
            for _ in range(args.repeats):
                for mode in MODES:  # interleaved, so drift hits every mode alike
                    r = in_child(run_mode, mode, name, url, job_id, args.in_flight, args.seconds)
                    assert r["otel_installed"] == (mode != "absent")
                    results[wire].setdefault(mode, {"polls": [], "cpu": []})  # type: ignore[dict-item]
                    results[wire][mode]["polls"].append(r["polls"] / r["wall_s"])  # type: ignore[attr-defined]
                    results[wire][mode]["cpu"].append(r["cpu_s"] / r["polls"] * 1e6)  # type: ignore[attr-defined]
    finally:
        parent.send("stop")
        server.join(10)
    rows = []
    for wire, modes in results.items():
        absent_cpu = statistics.median(modes["absent"]["cpu"])  # type: ignore[arg-type]
        for mode in MODES:
            cpu = statistics.median(modes[mode]["cpu"])  # type: ignore[arg-type]
            polls = statistics.median(modes[mode]["polls"])  # type: ignore[arg-type]
            rows.append([wire, mode, polls, cpu, cpu / absent_cpu])
    print(
        table(
            f"otel_cost: get_job at {args.in_flight} in flight, median of {args.repeats} runs of "
            f"{args.seconds:g} s ({machine()})",
            ["wire", "OpenTelemetry", "polls/s", "CPU us/poll", "CPU x absent"],
            rows,
        )
    )
    save("otel_cost", {"machine": machine(), "args": vars(args), "results": results}, args.json)


if __name__ == "__main__":
    main()
