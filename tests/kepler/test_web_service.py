"""The web-service way of holding the client, over real HTTP: one client in the app's
lifespan, and a shutdown that does not wait for every pending cold job (README, "In a
web service"). Real time, a few seconds."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
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
from tests.postgres_server import PostgresServer

# Over real sockets: once per HTTP wire (httpx, aiohttp).
pytestmark = pytest.mark.usefixtures("each_wire")


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
from kepler_async import AsyncKepler, PollPolicy, PostgresJobStore, SQLiteJobStore
from kepler_async._kepler._dialect import KEPLER_POLICY


@contextlib.asynccontextmanager
async def lifespan(app):
    where = os.environ["JOURNAL"]
    if where.startswith("postgresql://"):
        journal = PostgresJobStore(where, prefix=os.environ["PREFIX"])
    else:
        journal = SQLiteJobStore(where)
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


def _start_uvicorn(
    app_dir: Path, env: dict[str, str], workers: int, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn serving ``service:app`` from ``app_dir``; its stderr goes to ``log``.

    A file, not a pipe nobody reads while the test runs: a few tracebacks fill a pipe,
    and every worker then blocks in its next log write, event loop and all (which once
    looked like a stall of the client under test)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "service:app", "--workers", str(workers)),
                *("--port", str(port), "--app-dir", str(app_dir), "--log-level", "warning"),
            ],
            env=env,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # until it answers
        try:
            httpx.get(f"{base}/nowhere", timeout=1)
            return server, base
        except httpx.TransportError:
            assert server.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.2)


#: The load: 400 concurrent requests over 50 domains, spread over the servers; prints
#: [status, body] per request. Its own process, as a service's callers are: in the test's
#: process, httpx's scan of a 400-connection pool held the GIL the simulator's thread
#: needs, and delayed the API's answers by up to 0.4 s, past the sped-up deadlines.
LOAD = """
import json, sys
import anyio, httpx


async def main(count, prefix, bases):
    limits = httpx.Limits(max_connections=400)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        replies = []

        async def ask(n):
            base = bases[n % len(bases)]
            try:
                reply = await http.get(f"{base}/companies/{prefix}-{n % 50:02d}.com")
                replies.append([reply.status_code, reply.text])
            except httpx.HTTPError as error:  # shown by the assertion, with the logs
                replies.append([599, type(error).__name__])

        async with anyio.create_task_group() as tg:
            for n in range(count):
                tg.start_soon(ask, n)
    return replies


print(json.dumps(anyio.run(main, int(sys.argv[1]), sys.argv[2], sys.argv[3:])))
"""


def _ask_all(
    bases: list[str], script: Path, *, count: int = 400, prefix: str = "web"
) -> list[tuple[int, str]]:
    """Run ``LOAD`` against ``bases`` (``count`` requests over 50 domains named
    ``{prefix}-NN.com``); (status, body) per request."""
    script.write_text(LOAD)
    done = subprocess.run(
        [sys.executable, str(script), str(count), prefix, *bases],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [(status, body) for status, body in json.loads(done.stdout)]


@pytest.mark.parametrize(
    ("store", "servers", "workers"),
    [
        pytest.param("sqlite", 1, 4, id="one-machine-4-workers-sqlite"),
        pytest.param("postgres", 2, 2, id="two-servers-postgres"),
    ],
)
def test_workers_sharing_a_journal_bill_each_domain_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    store: str,
    servers: int,
    workers: int,
) -> None:
    """The usual deployments: `uvicorn --workers 4` on one machine with one journal
    file, and two separate servers sharing one PostgreSQL store. One client per worker
    process. 400 concurrent requests over 50 domains: 50 cold runs billed, every
    request answered with its score."""
    scale = 0.01
    sim = KeplerSimulator(seed=6, time_scale=scale, failure_mix={}, per_key_cold_per_hour=None)
    (tmp_path / "service.py").write_text(APP)
    journal = str(tmp_path / "run.db")
    if store == "postgres":
        journal = request.getfixturevalue("postgres_dsn")
    with serve(create_app(sim)) as sim_url:
        env = {
            **os.environ,
            "KEPLER_API_KEY": LIVE_KEY,
            "SIM_URL": sim_url,
            "JOURNAL": journal,
            "PREFIX": f"w{uuid.uuid4().hex[:10]}_",
            "SCALE": str(scale),
        }
        logs = [tmp_path / f"uvicorn-{n}.log" for n in range(servers)]
        started = [_start_uvicorn(tmp_path, env, workers, log) for log in logs]
        try:
            replies = _ask_all([base for _, base in started], tmp_path / "load.py")
        finally:
            for server, _ in started:
                server.terminate()
                server.wait(timeout=30)
    errors = [log.read_text()[-3000:] for log in logs]
    assert [status for status, _ in replies] == [200] * 400, errors
    pids = {json.loads(body)["pid"] for _, body in replies}
    assert len(pids) > 1  # served by several processes
    assert sim.counters.total_cold_runs == 50
    assert set(sim.counters.cold_runs_billed.values()) == {1}


def test_four_workers_answer_again_after_the_database_restarts(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """`uvicorn --workers 4` on one PostgreSQL journal; the server crashes for 2 s.
    During the outage requests fail (500 here: the app does not catch
    ``JournalUnavailable``); afterwards every worker answers 200 again, with no
    restart of anything but the database, and no domain is billed twice."""
    scale = 0.01
    sim = KeplerSimulator(seed=8, time_scale=scale, failure_mix={}, per_key_cold_per_hour=None)
    (tmp_path / "service.py").write_text(APP)
    script = tmp_path / "load.py"
    with serve(create_app(sim)) as sim_url:
        env = {
            **os.environ,
            "KEPLER_API_KEY": LIVE_KEY,
            "SIM_URL": sim_url,
            "JOURNAL": postgres.dsn,
            "PREFIX": f"r{uuid.uuid4().hex[:10]}_",
            "SCALE": str(scale),
        }
        log = tmp_path / "uvicorn.log"
        server, base = _start_uvicorn(tmp_path, env, 4, log)
        try:
            before = _ask_all([base], script, count=200, prefix="before")
            postgres.stop("immediate")
            try:
                during = _ask_all([base], script, count=40, prefix="during")
            finally:
                postgres.start()
            back = time.monotonic()
            recovered = None
            while recovered is None and time.monotonic() - back < 30:
                reply = httpx.get(f"{base}/companies/probe.com", timeout=30)
                if reply.status_code == 200:
                    recovered = time.monotonic() - back
                else:
                    time.sleep(0.1)
            after = _ask_all([base], script, count=400, prefix="after")
            assert server.poll() is None  # uvicorn and its workers never went down
        finally:
            server.terminate()
            server.wait(timeout=30)
    errors = log.read_text()[-3000:]
    assert [status for status, _ in before] == [200] * 200, errors
    assert all(status in (200, 500) for status, _ in during), during
    assert recovered is not None, errors
    assert [status for status, _ in after] == [200] * 400, errors
    assert len({json.loads(body)["pid"] for _, body in after}) == 4  # every worker
    assert max(sim.counters.cold_runs_billed.values()) == 1
    print(f"\nfirst 200 after the database came back: {recovered:.2f}s")


README = Path(__file__).parents[2] / "README.md"

#: 300 concurrent requests for distinct cold domains; prints [status, body] per request.
WAITERS = """
import json, sys
import anyio, httpx


async def main(base, count):
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        replies = []

        async def ask(n):
            try:
                reply = await http.get(f"{base}/companies/shutdown-{n:03d}.com")
                replies.append([reply.status_code, reply.text])
            except httpx.HTTPError as error:
                replies.append([599, type(error).__name__])

        async with anyio.create_task_group() as tg:
            for n in range(count):
                tg.start_soon(ask, n)
    return replies


print(json.dumps(anyio.run(main, sys.argv[1], int(sys.argv[2]))))
"""


def _recipe_app(wait: float, scale: float = 1.0) -> str:
    """The README's web-service example as a module uvicorn can serve: its handler and
    lifespan as written, the client pointed at the simulator of ``SIM_URL`` with the
    default poll policy scaled by ``scale``."""
    readme = README.read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "WAIT = " in b]
    assert len(blocks) == 1, "the README's web-service recipe is gone"
    source: str = blocks[0].split("\nwith serve(app")[0]
    edits: list[tuple[re.Pattern[str], str]] = [
        (re.compile(r"^WAIT = [0-9.]+", re.M), f"WAIT = {wait}"),
        (re.compile(r"^sim = KeplerSimulator\(.*\)\n", re.M), ""),
        (
            re.compile(r"simulated_client\(sim\)"),
            'AsyncKepler(base_url=os.environ["SIM_URL"], allow_plain_http=True, '
            f"poll_policy=KEPLER_POLICY.scaled({scale}))",
        ),
    ]
    for pattern, replacement in edits:
        source, count = pattern.subn(replacement, source)
        assert count == 1, f"the README's recipe no longer has {pattern.pattern!r}"
    return "import os\nfrom kepler_async import KEPLER_POLICY, AsyncKepler\n" + source


def test_the_shutdown_recipe_answers_every_waiting_request_on_purpose(tmp_path: Path) -> None:
    """The README's web-service recipe under a real ``uvicorn --workers 2``, SIGTERM
    while 300 requests wait for cold jobs (25-90 s, real time): every request is
    answered 202 with its job id, uvicorn exits soon after the requests' bounded wait,
    and its log holds no traceback. (The README's earlier advice, a graceful timeout
    alone, answered 300 requests with 500 and 13,252 lines of tracebacks.)"""
    wait, count = 3.0, 300
    sim = KeplerSimulator(seed=9, failure_mix={}, per_key_cold_per_hour=None)
    (tmp_path / "service.py").write_text(_recipe_app(wait))
    (tmp_path / "waiters.py").write_text(WAITERS)
    log = tmp_path / "uvicorn.log"
    with serve(create_app(sim)) as sim_url:
        env = {**os.environ, "KEPLER_API_KEY": LIVE_KEY, "SIM_URL": sim_url}
        server, base = _start_uvicorn(tmp_path, env, 2, log)
        try:
            waiters = subprocess.Popen(
                [sys.executable, str(tmp_path / "waiters.py"), base, str(count)],
                stdout=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 60
            while sim.counters.requests["POST /v1/score"] < count:  # every request waits
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            took = time.monotonic() - signalled
            out, _ = waiters.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
    text = log.read_text()
    replies = json.loads(out)
    statuses = Counter(status for status, _ in replies)
    lines = len(text.splitlines())
    print(f"\nSIGTERM to exit: {took:.1f}s; answers {dict(statuses)}; log lines {lines}")
    assert statuses == {202: count}, text[-3000:]
    assert all(json.loads(body)["job_id"] for _, body in replies)
    assert "Traceback" not in text, text[-3000:]
    assert "ERROR" not in text, text[-3000:]
    # Not a performance figure: it tells the bounded wait (3 s) plus closing apart from
    # waiting out the cold jobs (25-90 s).
    assert took < 20.0
    assert sim.counters.total_cold_runs == count


def test_the_recipes_202_leads_the_caller_back_to_its_score(tmp_path: Path) -> None:
    """A caller of the README's recipe follows its ``202``'s ``Location`` (the job id,
    resumed) until the score comes: one cold run in all."""
    sim = KeplerSimulator(seed=10, time_scale=0.01, failure_mix={}, per_key_cold_per_hour=None)
    sim.script("comeback.com", duration=150)  # 1.5 s of real time
    (tmp_path / "service.py").write_text(_recipe_app(0.5, scale=0.01))
    log = tmp_path / "uvicorn.log"
    with serve(create_app(sim)) as sim_url:
        env = {**os.environ, "KEPLER_API_KEY": LIVE_KEY, "SIM_URL": sim_url}
        server, base = _start_uvicorn(tmp_path, env, 1, log)
        try:
            answers = [httpx.get(f"{base}/companies/comeback.com", timeout=30)]
            while answers[-1].status_code == 202 and len(answers) < 20:
                answers.append(httpx.get(base + answers[-1].headers["location"], timeout=30))
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert answers[0].status_code == 202, log.read_text()[-3000:]
    job_id = answers[0].json()["job_id"]
    assert answers[0].headers["location"] == f"/companies/comeback.com?job={job_id}"
    assert answers[-1].status_code == 200
    assert answers[-1].json()["domain"] == "comeback.com"
    assert sim.counters.total_cold_runs == 1
