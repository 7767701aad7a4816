"""The Kepler simulator as a Starlette ASGI app, and an httpx transport into it.

The app serves any object with the simulator's answers (``ServedApi``); the simulator
builds its app from here (``KeplerSimulator.create_app``), so this module sits below
it and names it only through that contract.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._faults import FaultPlan, answer_with_faults
from ._sim_types import SimCounters, SimKey, SimResponse, error

__all__ = ["COUNTERS_PATH", "SIM_BASE_URL", "ServedApi", "asgi_transport", "create_app"]

#: The base URL to pair with ``asgi_transport``: any host works in-process.
SIM_BASE_URL = "http://kepler.simulator.test"
#: Where a served simulator shows its counters (``kepler-async simulate`` prints it).
COUNTERS_PATH = "/_simulator/counters"

Handler = Callable[[Request, SimKey], Awaitable[SimResponse]]

UNAUTHORIZED = error(401, "unauthorized", "missing or invalid X-API-Key")


class ServedApi(Protocol):
    """What the app asks of the simulator it serves (``KeplerSimulator``)."""

    counters: SimCounters
    faults: FaultPlan

    def authenticate(self, headers: Mapping[str, str]) -> SimKey | None: ...
    def post_score(self, key: SimKey, body: object) -> SimResponse: ...
    def get_job(self, key: SimKey, job_id: str) -> SimResponse: ...
    def get_score(self, key: SimKey, raw: str) -> SimResponse: ...
    def history(self, key: SimKey, raw: str, query: Mapping[str, str]) -> SimResponse: ...
    def cohort(self, key: SimKey, raw: str) -> SimResponse: ...
    def confidence(self, key: SimKey, raw: str) -> SimResponse: ...
    def distribution(self, key: SimKey) -> SimResponse: ...
    def movers(self, key: SimKey, window: str | None) -> SimResponse: ...
    def signals(self, key: SimKey) -> SimResponse: ...
    def usage(self, key: SimKey) -> SimResponse: ...


def _respond(result: SimResponse) -> Response:
    return JSONResponse(result.body, status_code=result.status, headers=dict(result.headers))


def create_app(sim: ServedApi) -> Starlette:
    """An ASGI app serving ``sim`` with every endpoint of the Kepler OpenAPI file."""

    def endpoint(name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            sim.counters.requests[name] += 1

            async def answer() -> Response:
                key = sim.authenticate(request.headers)
                return _respond(UNAUTHORIZED if key is None else await handler(request, key))

            return await answer_with_faults(sim.faults, request.method, request.url.path, answer)

        return serve

    async def post_score(request: Request, key: SimKey) -> SimResponse:
        raw = await request.body()
        try:
            body: object = json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # not JSON, or nested beyond reading
            return SimResponse(400, {"error": "invalid JSON", "message": "send a JSON object"})
        return sim.post_score(key, body)

    async def get_score(request: Request, key: SimKey) -> SimResponse:
        return sim.get_score(key, request.path_params["domain"])

    async def history(request: Request, key: SimKey) -> SimResponse:
        return sim.history(key, request.path_params["domain"], request.query_params)

    async def cohort(request: Request, key: SimKey) -> SimResponse:
        return sim.cohort(key, request.path_params["domain"])

    async def confidence(request: Request, key: SimKey) -> SimResponse:
        return sim.confidence(key, request.path_params["domain"])

    async def distribution(request: Request, key: SimKey) -> SimResponse:
        return sim.distribution(key)

    async def movers(request: Request, key: SimKey) -> SimResponse:
        return sim.movers(key, request.query_params.get("window"))

    async def signals(request: Request, key: SimKey) -> SimResponse:
        return sim.signals(key)

    async def usage(request: Request, key: SimKey) -> SimResponse:
        return sim.usage(key)

    async def get_job(request: Request, key: SimKey) -> SimResponse:
        return sim.get_job(key, request.path_params["job_id"])

    routes = [
        Route("/v1/score", endpoint("POST /v1/score", post_score), methods=["POST"]),
        Route(
            "/v1/score/{domain}/history",
            endpoint("GET /v1/score/history", history),
            methods=["GET"],
        ),
        # ``:path``: the spec's DomainPath says the server strips a scheme or ``www.``,
        # so ``/v1/score/https://stripe.com`` is stripe.com's score.
        Route("/v1/score/{domain:path}", endpoint("GET /v1/score", get_score), methods=["GET"]),
        Route("/v1/company/{domain}/cohort", endpoint("GET /v1/cohort", cohort), methods=["GET"]),
        Route(
            "/v1/company/{domain}/confidence",
            endpoint("GET /v1/confidence", confidence),
            methods=["GET"],
        ),
        Route("/v1/distribution", endpoint("GET /v1/distribution", distribution), methods=["GET"]),
        Route("/v1/movers", endpoint("GET /v1/movers", movers), methods=["GET"]),
        Route("/v1/signals", endpoint("GET /v1/signals", signals), methods=["GET"]),
        Route("/v1/usage", endpoint("GET /v1/usage", usage), methods=["GET"]),
        Route("/v1/jobs/{job_id}", endpoint("GET /v1/jobs", get_job), methods=["GET"]),
    ]

    async def counters(request: Request) -> Response:
        """What would have been billed and served (the simulator's own, no key)."""
        c = sim.counters
        return JSONResponse(
            {
                "cold_runs_billed": c.total_cold_runs,
                "cold_runs_billed_by_domain": dict(c.cold_runs_billed),
                "polls_served": c.polls_served,
                "cached_served": c.cached_served,
                "requests": dict(c.requests),
                "rejected_429": dict(c.rejected_429),
            }
        )

    routes.append(Route(COUNTERS_PATH, counters, methods=["GET"]))

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "not found"}, status_code=404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        headers = getattr(exc, "headers", None)  # Starlette's names the methods: Allow
        return JSONResponse({"error": "method not allowed"}, status_code=405, headers=headers)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})


class _HasApp(Protocol):
    def create_app(self) -> Any: ...


def asgi_transport(sim: _HasApp) -> httpx.ASGITransport:
    """An httpx transport that sends requests straight into ``sim``, any of the
    simulators (no sockets)."""
    return httpx.ASGITransport(app=sim.create_app())
