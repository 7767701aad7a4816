"""What spend control saves: the journal's score cache under a web-service workload, and
a batch under ``--max-cold``.

1. A web service: 4 ``uvicorn`` workers of a Starlette app that awaits
   ``kepler.score(domain)``, all on one SQLite journal, in front of a Kepler simulator
   behind real HTTP on 127.0.0.1 (time scale 0.01: a cold run takes 0.25-0.9 s; a
   Growth key, whose API serves scores up to 6 simulated hours old, its monthly
   allowance raised so that the workload fits). 10,000 requests
   over 1,000 domains in a Zipf-like mix (the n-th most popular asked ~1/n as often),
   50 at a time; once without a journal (every request asks the API) and once with
   the journal and ``cache_max_age`` set to the plan's freshness window (6 h).
   Reported: metered cached calls and billed runs the simulator counted, request
   latency p50 and p99.
2. A batch: ``kepler-async score`` over 1,000 new domains with ``--max-cold 50``:
   billed runs, wall time.

    python benchmarks/spend.py [--requests 10000] [--domains 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, percentile, save, table

GROWTH = "ki_live_growth-plan-benchmark-key"
SCALE = 0.01

APP = """
import contextlib, os
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from kepler_async import KEPLER_POLICY, AsyncKepler, SQLiteJobStore


@contextlib.asynccontextmanager
async def lifespan(app):
    age = os.environ.get("CACHE_MAX_AGE")
    journal = SQLiteJobStore(os.environ["JOURNAL"]) if age else None
    async with AsyncKepler(
        base_url=os.environ["SIM_URL"], allow_plain_http=True, journal=journal,
        cache_max_age=float(age) if age else None,
        poll_policy=KEPLER_POLICY.scaled(float(os.environ["SCALE"])),
    ) as kepler:
        app.state.kepler = kepler
        yield


async def company(request):
    score = await request.app.state.kepler.score(request.path_params["domain"])
    return JSONResponse({"domain": score.domain})


app = Starlette(routes=[Route("/companies/{domain}", company)], lifespan=lifespan)
"""

LOAD = """
import asyncio, json, sys, time
import httpx

async def main(base, domains):
    limits = httpx.Limits(max_connections=50)
    latencies, statuses = [], {}
    sem = asyncio.Semaphore(50)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        async def ask(domain):
            async with sem:
                start = time.perf_counter()
                try:
                    status = (await http.get(f"{base}/companies/{domain}")).status_code
                except httpx.HTTPError:
                    status = 599
                latencies.append(time.perf_counter() - start)
                statuses[status] = statuses.get(status, 0) + 1
        started = time.perf_counter()
        await asyncio.gather(*(ask(d) for d in domains))
        wall = time.perf_counter() - started
    print(json.dumps({"latencies": latencies, "statuses": statuses, "wall": wall}))

asyncio.run(main(sys.argv[1], json.load(open(sys.argv[2]))))
"""


def zipf_mix(domains: int, requests: int, seed: int = 1) -> list[str]:
    names = [f"popular-{n:04d}.com" for n in range(domains)]
    weights = [1 / (n + 1) for n in range(domains)]
    return random.Random(seed).choices(names, weights=weights, k=requests)


def start_workers(app_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "service:app", "--workers", "4"),
            *("--port", str(port), "--app-dir", str(app_dir), "--log-level", "warning"),
        ],
        env=env,
    )
    import httpx

    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{base}/nowhere", timeout=1)
            return server, base
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("uvicorn did not start")


def web_service(cache_max_age: float | None, mix: list[str], work: Path) -> dict[str, Any]:
    from kepler_async.testing import KeplerSimulator, create_app, serve

    sim = KeplerSimulator(
        seed=21,
        time_scale=SCALE,
        failure_mix={},
        per_key_cold_per_hour=None,
        monthly_cold_budget=100_000,  # a month's Growth allowance would end it early
    )
    sim.add_key(GROWTH, plan="growth")
    (work / "service.py").write_text(APP)
    (work / "load.py").write_text(LOAD)
    (work / "mix.json").write_text(json.dumps(mix))
    journal = work / f"journal-{cache_max_age}.db"
    with serve(create_app(sim)) as url:
        env = {
            **os.environ,
            "KEPLER_API_KEY": GROWTH,
            "SIM_URL": url,
            "JOURNAL": str(journal),
            "SCALE": str(SCALE),
            "CACHE_MAX_AGE": "" if cache_max_age is None else str(cache_max_age),
        }
        server, base = start_workers(work, env)
        try:
            done = subprocess.run(
                [sys.executable, str(work / "load.py"), base, str(work / "mix.json")],
                capture_output=True,
                text=True,
                timeout=1800,
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    counts = sim.counters.requests
    cached_calls = counts["POST /v1/score"] - sim.counters.total_cold_runs + counts["GET /v1/score"]
    return {
        "cache_max_age": cache_max_age,
        "requests": len(mix),
        "statuses": result["statuses"],
        "billed_runs": sim.counters.total_cold_runs,
        "metered_cached_calls": cached_calls,
        "p50_ms": percentile(result["latencies"], 50) * 1000,
        "p99_ms": percentile(result["latencies"], 99) * 1000,
        "wall_s": result["wall"],
    }


def capped_batch(count: int, cap: int, work: Path) -> dict[str, Any]:
    from kepler_async.testing import KeplerSimulator, create_app, serve

    sim = KeplerSimulator(
        seed=22,
        time_scale=SCALE,
        failure_mix={},
        per_key_cold_per_hour=None,
        monthly_cold_budget=100_000,
    )
    sim.add_key(GROWTH, plan="growth")
    domains = work / "new.txt"
    domains.write_text("".join(f"new-{n:04d}.com\n" for n in range(count)))
    with serve(create_app(sim)) as url:
        started = time.perf_counter()
        done = subprocess.run(
            [
                *("kepler-async", "score", "-f", str(domains), "--base-url", url),
                *("--poll-scale", str(SCALE), "--max-cold", str(cap), "-q"),
                *("-o", str(work / "rows.jsonl")),
            ],
            env={**os.environ, "KEPLER_API_KEY": GROWTH},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (work / "rows.jsonl").read_text().splitlines()]
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return {
        "inputs": count,
        "max_cold": cap,
        "billed_runs": sim.counters.total_cold_runs,
        "rows": statuses,
        "exit": done.returncode,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--max-cold", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()
    mix = zipf_mix(args.domains, args.requests)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        off = web_service(None, mix, work)
        on = web_service(6 * 3600.0, mix, work)  # the Growth plan's freshness window
        batch = capped_batch(args.batch, args.max_cold, work)
    print(
        table(
            f"spend: a web service, {args.requests:,} requests over {args.domains:,} domains "
            f"(Zipf-like), 4 uvicorn workers on one SQLite journal, simulator over HTTP at "
            f"time scale {SCALE} ({machine()})",
            ["setup", "billed runs", "metered cached calls", "p50 ms", "p99 ms", "wall s"],
            [
                [
                    "no journal"
                    if r["cache_max_age"] is None
                    else f"journal, cache_max_age={r['cache_max_age']:g}",
                    r["billed_runs"],
                    r["metered_cached_calls"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["wall_s"],
                ]
                for r in (off, on)
            ],
        )
    )
    print()
    print(
        table(
            f"spend: kepler-async score over {args.batch:,} new domains with --max-cold "
            f"{args.max_cold}",
            ["billed runs", "scored", "not attempted", "exit", "wall s"],
            [
                [
                    batch["billed_runs"],
                    batch["rows"].get("scored", 0),
                    batch["rows"].get("not_attempted", 0),
                    batch["exit"],
                    batch["wall_s"],
                ]
            ],
        )
    )
    save(
        "spend",
        {"machine": machine(), "args": vars(args), "web": [off, on], "batch": batch},
        args.json,
    )


if __name__ == "__main__":
    main()
