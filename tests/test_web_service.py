"""The web-service way of holding the client, over real HTTP: one client in the app's
lifespan, and a shutdown that does not wait for every pending cold job (README, "In a
web service"). Real time, a few seconds."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kepler_async import AsyncKepler
from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport


def test_uvicorns_graceful_timeout_bounds_shutdown_while_cold_jobs_wait() -> None:
    sim = KeplerSimulator(seed=1, failure_mix={})  # real time: cold runs of 25-90 s
    clients: list[AsyncKepler] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncKepler(
            LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim)
        ) as kepler:
            clients.append(kepler)
            app.state.kepler = kepler
            yield

    async def company(request: Request) -> JSONResponse:
        score = await request.app.state.kepler.score(request.path_params["domain"])
        return JSONResponse({"domain": score.domain})

    app = Starlette(routes=[Route("/companies/{domain}", company)], lifespan=lifespan)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]

    answers: list[int | str] = []

    def ask() -> None:
        try:
            reply = httpx.get(f"http://127.0.0.1:{port}/companies/stripe.com", timeout=30)
            answers.append(reply.status_code)
        except httpx.HTTPError as error:
            answers.append(type(error).__name__)

    asking = threading.Thread(target=ask)
    asking.start()
    while sim.counters.requests["POST /v1/score"] < 1:  # the cold job was submitted
        assert time.monotonic() < deadline, "the request never reached the client"
        time.sleep(0.01)
    stopping = time.monotonic()
    server.should_exit = True  # what SIGTERM does
    serving.join(15)
    took = time.monotonic() - stopping
    asking.join(15)
    assert not serving.is_alive()
    # Not a performance figure: the bound tells 1 s of grace plus aclose() apart from
    # waiting out the cold job (25-90 s).
    assert took < 10.0
    assert clients[0].closed
    assert len(answers) == 1
    assert answers[0] != 200  # the waiting request was cut off
    assert sim.counters.total_cold_runs == 1
