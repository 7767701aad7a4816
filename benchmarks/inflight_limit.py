"""Choosing ``max_in_flight``: request throughput over real HTTP for several limits.

The Kepler simulator runs in its own process behind uvicorn on 127.0.0.1 (so server
and client do not share a GIL), with cold runs 1,000x shorter than documented. For
each limit, a fresh client scores ``--jobs`` new domains with ``score_many`` and the
poll policy scaled to match, and we count the requests it sent per second of wall time
and per CPU second of the client process.

With ``--latency-ms`` every answer is held back that long, as a remote API's round trip
would be; then throughput needs requests in flight (about rate x round trip).

    python benchmarks/inflight_limit.py [--jobs 500] [--limits 1,5,10,20,50,100]
                                        [--latency-ms 0] [--http-backend httpx|aiohttp]
                                        [--json PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_seconds, machine, save, table

SCALE = 0.001


def serve_forever(conn: Any, latency_ms: float) -> None:
    from kepler_async.testing import KeplerSimulator, create_app, serve

    sim = KeplerSimulator(seed=3, time_scale=SCALE, per_key_cold_per_hour=None)
    if latency_ms:  # every answer waits, as over a network to a remote API
        sim.add_fault("delay", delay=latency_ms / 1000, times=10**9, after_processing=True)
    with serve(create_app(sim)) as url:
        conn.send(url)
        conn.recv()  # until told to stop


def run_limit(url: str, limit: int, jobs: int, prefix: str, backend: str) -> dict[str, Any]:
    import anyio

    from kepler_async import AsyncKepler
    from kepler_async._kepler._dialect import KEPLER_POLICY
    from kepler_async.testing import LIVE_KEY

    async def main() -> dict[str, Any]:
        async with AsyncKepler(
            LIVE_KEY,
            base_url=url,
            poll_policy=KEPLER_POLICY.scaled(SCALE),
            max_in_flight=limit,
            http_backend=backend,
        ) as kepler:
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            async for _ in kepler.score_many([f"{prefix}-{i}.com" for i in range(jobs)]):
                pass
            wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0
            stats = kepler.statistics()
        sent = stats.jobs_started + stats.submits_inline + stats.polls_sent + stats.results_fetched
        return {
            "limit": limit,
            "requests": sent,
            "wall_s": wall,
            "cpu_s": cpu,
            "requests_per_s": sent / wall,
            "requests_per_cpu_s": sent / cpu,
        }

    return anyio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--limits", default="1,5,10,20,50,100")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every answer, like a WAN RTT"
    )
    parser.add_argument("--http-backend", choices=["httpx", "aiohttp"], default="httpx")
    parser.add_argument("--json")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_forever, args=(child, args.latency_ms), daemon=True)
    server.start()
    try:
        url = parent.recv()
        results = [
            run_limit(url, int(limit), args.jobs, f"l{limit}", args.http_backend)
            for limit in args.limits.split(",")
        ]
    finally:
        parent.send("stop")
        server.join(10)
    rows = [
        [r["limit"], r["requests"], r["wall_s"], r["requests_per_s"], r["requests_per_cpu_s"]]
        for r in results
    ]
    print(
        table(
            f"inflight_limit: {args.jobs} jobs per limit over HTTP to uvicorn on 127.0.0.1, "
            f"{args.latency_ms:g} ms added to each answer, {args.http_backend} ({machine()})",
            ["max_in_flight", "requests", "wall s", "requests/s", "requests/CPU s"],
            rows,
        )
    )
    name = f"inflight_limit_{args.http_backend}" + (
        f"_latency_{args.latency_ms:g}ms" if args.latency_ms else ""
    )
    print(f"JSON: {save(name, {'args': vars(args), 'results': results}, args.json)}")


if __name__ == "__main__":
    main()
