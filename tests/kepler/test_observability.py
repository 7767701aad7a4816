"""Observability as users run it: a Starlette app behind uvicorn with OpenTelemetry's
ASGI instrumentation, where one request's trace holds the server span, the ``score``
span under it and the client's requests under that; and the official OTLP/HTTP
exporter sending those spans to a small receiver on 127.0.0.1, to prove the wire
format. Real sockets, real time (the simulator runs 1,000x fast)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kepler_async.testing import LIVE_KEY, KeplerSimulator, serve, simulated_client
from tests.otel import Recorded, recorded, tree

__all__ = ["recorded"]


def scoring_app(sim: KeplerSimulator) -> OpenTelemetryMiddleware:
    """The README's web service, instrumented as its users instrument theirs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with simulated_client(sim) as kepler:
            app.state.kepler = kepler
            yield

    async def company(request: Request) -> JSONResponse:
        score = await request.app.state.kepler.score(request.path_params["domain"])
        return JSONResponse({"domain": score.domain})

    app = Starlette(routes=[Route("/companies/{domain}", company)], lifespan=lifespan)
    return OpenTelemetryMiddleware(app)


def cold_sim() -> KeplerSimulator:
    sim = KeplerSimulator(seed=7, time_scale=0.001, failure_mix={}, per_key_cold_per_hour=None)
    sim.script("plaid.com", duration=45)
    return sim


def test_one_requests_trace_holds_the_score_and_its_polls(recorded: Recorded) -> None:
    with serve(scoring_app(cold_sim()), lifespan="on") as url:
        reply = httpx.get(f"{url}/companies/plaid.com", timeout=30)
    assert reply.status_code == 200
    spans = recorded.spans()
    drawn = tree(spans)
    print("\n" + "\n".join(drawn))
    server = drawn[0]
    assert server.startswith("SERVER GET")
    ours = [line.strip() for line in drawn[1:] if "kepler" in line or "/v1/" in line]
    assert ours[0] == "INTERNAL kepler score"
    assert ours[1] == "CLIENT POST /v1/score"
    assert set(ours[2:-1]) == {"CLIENT GET /v1/jobs/{job_id}"}
    assert ours[-1] == "CLIENT GET /v1/score/{domain}"
    by_name = {s.name: s for s in spans}
    score = by_name["kepler score"]
    trace_id = score.context.trace_id
    assert all(s.context.trace_id == trace_id for s in spans)  # one trace
    assert score.parent is not None
    assert drawn.index("  INTERNAL kepler score") > 0  # under the server's span
    for line in drawn:
        if "/v1/" in line:
            assert line.startswith("    CLIENT")  # children of the score span


def test_the_official_otlp_exporter_sends_our_spans(recorded: Recorded) -> None:
    received: list[bytes] = []

    async def collector(request: Request) -> Response:
        received.append(await request.body())
        return Response(status_code=200)

    receiver = Starlette(routes=[Route("/v1/traces", collector, methods=["POST"])])
    with serve(receiver) as collector_url:
        processor = SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector_url}/v1/traces"))
        recorded.tracer_provider.add_span_processor(processor)
        with serve(scoring_app(cold_sim()), lifespan="on") as url:
            assert httpx.get(f"{url}/companies/plaid.com", timeout=30).status_code == 200
        processor.shutdown()
    names = set()
    attributes = {}
    for body in received:
        export = ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    names.add(span.name)
                    if span.name == "kepler score":
                        attributes = {a.key: a.value.string_value for a in span.attributes}
    assert {"kepler score", "POST /v1/score", "GET /v1/jobs/{job_id}"} <= names
    assert attributes["kepler_async.subject"] == "plaid.com"
    assert attributes["kepler_async.api"] == "kepler"
    assert all(LIVE_KEY.encode() not in body for body in received)
