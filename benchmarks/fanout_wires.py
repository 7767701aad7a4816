"""A fan-out of 1,000 cold domains over real HTTP, once per wire: polls per cold job,
detection delay and CPU, for kepler_async's default (httpx) wire and the aiohttp wire.

Each wire gets a fresh Kepler simulator (same seed, so the same durations and outcomes
per domain) served by uvicorn in a process of its own on 127.0.0.1, and runs
``score_many`` over the domains in another fresh process with the default poll policy
scaled to the simulator's speed. Detection delay is measured per job from the moment
the simulator's run finished to the moment ``score_many`` yielded its outcome, in
simulated seconds (both processes read the same monotonic clock). A wire that cannot
keep up with its own policy polls less often than the policy asks and detects later.

    python benchmarks/fanout_wires.py [--jobs 1000] [--time-scale 0.2] [--json PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_seconds, in_child, machine, mean, percentile, save, table
from polling_efficiency import SEED, _domains

WIRES = {"kepler_async, httpx wire": "httpx", "kepler_async, aiohttp wire": "aiohttp"}


def serve_simulator(conn: Any, scale: float) -> None:
    """The simulator behind uvicorn; on request, when each job's run finished."""
    from kepler_async.testing import KeplerSimulator, serve

    sim = KeplerSimulator(seed=SEED, time_scale=scale, per_key_cold_per_hour=None)
    with serve(sim.create_app()) as url:
        conn.send(url)
        conn.recv()  # the batch is over
        finished = {job.domain: sim._t0 + job.finishes * scale for job in sim.jobs.values()}
        conn.send(
            {
                "finished": finished,
                "polls": sim.counters.polls_served,
                "cold_runs": sim.counters.total_cold_runs,
            }
        )


def fan_out(url: str, backend: str, n: int, scale: float) -> dict[str, Any]:
    """``score_many`` over ``n`` cold domains; when each outcome came, CPU and wall."""
    import asyncio

    from kepler_async import KEPLER_POLICY, AsyncKepler
    from kepler_async.testing import LIVE_KEY

    async def main() -> dict[str, Any]:
        done_at: dict[str, float] = {}
        async with AsyncKepler(
            LIVE_KEY,
            base_url=url,
            allow_plain_http=True,
            http_backend=backend,  # type: ignore[arg-type]
            poll_policy=KEPLER_POLICY.scaled(scale),
        ) as kepler:
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            async for outcome in kepler.score_many(_domains(n)):
                done_at[outcome.domain or ""] = time.monotonic()
            return {
                "done_at": done_at,
                "cpu_s": cpu_seconds() - cpu0,
                "wall_s": time.monotonic() - wall0,
                "wire": kepler.http_backend,
            }

    return asyncio.run(main())


def run_wire(name: str, backend: str, n: int, scale: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_simulator, args=(child, scale), daemon=True)
    server.start()
    try:
        url = parent.recv()
        client = in_child(fan_out, url, backend, n, scale)
        parent.send("report")
        sim = parent.recv()
    finally:
        server.join(10)
        if server.is_alive():
            server.kill()
    delays = [
        (client["done_at"][domain] - finished) / scale
        for domain, finished in sim["finished"].items()
        if domain in client["done_at"]
    ]
    return {
        "competitor": name,
        "wire": client["wire"],
        "jobs": n,
        "cold_runs": sim["cold_runs"],
        "polls_per_cold_job": sim["polls"] / max(1, sim["cold_runs"]),
        "mean_delay_s": mean(delays),
        "p95_delay_s": percentile(delays, 95),
        "cpu_s": client["cpu_s"],
        "wall_s": client["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--time-scale", type=float, default=0.2)
    parser.add_argument("--json", help="where to write the JSON (default benchmarks/results/)")
    args = parser.parse_args()
    results = [
        run_wire(name, backend, args.jobs, args.time_scale) for name, backend in WIRES.items()
    ]
    print(
        table(
            f"fanout_wires: score_many over {args.jobs} cold domains of 25-90 s at time scale "
            f"{args.time_scale}, over HTTP to uvicorn on 127.0.0.1 ({machine()})",
            ["competitor", "polls/cold job", "mean delay s", "p95 delay s", "CPU s", "wall s"],
            [
                [
                    r["competitor"],
                    r["polls_per_cold_job"],
                    r["mean_delay_s"],
                    r["p95_delay_s"],
                    r["cpu_s"],
                    r["wall_s"],
                ]
                for r in results
            ],
        )
    )
    path = save("fanout_wires", {"args": vars(args), "results": results}, args.json)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
