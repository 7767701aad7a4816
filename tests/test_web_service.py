"""The web-service way of holding the client, over real HTTP: one client in the app's
lifespan, and a shutdown that does not wait for every pending cold job (README, "In a
web service"). Real time, a few seconds."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kepler_async import AsyncKepler
from kepler_async.testing import (
    LIVE_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    asgi_transport,
    create_app,
    serve,
)


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


APP = """
import contextlib, os
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from kepler_async import AsyncKepler, PollPolicy, SQLiteJobStore
from kepler_async._kepler._dialect import KEPLER_POLICY


@contextlib.asynccontextmanager
async def lifespan(app):
    journal = SQLiteJobStore(os.environ["JOURNAL"])
    policy = KEPLER_POLICY.scaled(float(os.environ["SCALE"]))
    async with AsyncKepler(base_url=os.environ["SIM_URL"], poll_policy=policy,
                           journal=journal) as kepler:
        app.state.kepler = kepler
        yield


async def company(request):
    score = await request.app.state.kepler.score(request.path_params["domain"])
    return JSONResponse({"domain": score.domain, "pid": os.getpid()})


app = Starlette(routes=[Route("/companies/{domain}", company)], lifespan=lifespan)
"""


def test_four_uvicorn_workers_on_one_journal_bill_each_domain_once(tmp_path: Path) -> None:
    """The usual deployment: `uvicorn --workers 4`, one client per worker process, one
    journal file shared by them. 400 concurrent requests over 50 domains: 50 cold runs
    billed, every request answered with its score."""
    scale = 0.01
    sim = KeplerSimulator(seed=6, time_scale=scale, failure_mix={}, per_key_cold_per_hour=None)
    (tmp_path / "service.py").write_text(APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve(create_app(sim)) as sim_url:
        env = {
            **os.environ,
            "KEPLER_API_KEY": LIVE_KEY,
            "SIM_URL": sim_url,
            "JOURNAL": str(tmp_path / "run.db"),
            "SCALE": str(scale),
        }
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "service:app", "--workers", "4"),
                *("--port", str(port), "--app-dir", str(tmp_path), "--log-level", "warning"),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:  # until every worker has started
                try:
                    httpx.get(f"{base}/nowhere", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "uvicorn did not start"
                    time.sleep(0.2)

            async def ask_all() -> list[httpx.Response]:
                domains = [f"web-{i % 50:02d}.com" for i in range(400)]
                limits = httpx.Limits(max_connections=400)
                async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:
                    replies: list[httpx.Response] = []

                    async def ask(domain: str) -> None:
                        replies.append(await http.get(f"/companies/{domain}"))

                    async with anyio.create_task_group() as tg:
                        for domain in domains:
                            tg.start_soon(ask, domain)
                    return replies

            replies = anyio.run(ask_all)
        finally:
            server.terminate()
            _, err = server.communicate(timeout=30)
    assert [r.status_code for r in replies] == [200] * 400, err[-2000:]
    assert len({r.json()["pid"] for r in replies}) > 1  # served by several workers
    assert sim.counters.total_cold_runs == 50
    assert set(sim.counters.cold_runs_billed.values()) == {1}
