"""What ``statistics()`` costs with many jobs pending, beside walking the heap.

``statistics()`` is what a metrics exporter, a health endpoint or a progress line
samples; it runs on the event loop, so whatever it costs every poll waits that long.
For 1,000, 10,000 and 100,000 pending jobs watched by one client (their first poll an
hour away, so nothing is sent), this times one call of the client's and of the
engine's ``statistics()`` (median and max of 1,000 calls), beside one walk of the
scheduler's heap for its earliest live due time, which is what ``statistics()`` did
before it kept its figures as counts.

    python benchmarks/stats_cost.py [--jobs 1000,10000,100000] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics as stats
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, save, table

CALLS = 1000


def timed(call: Any, calls: int = CALLS) -> tuple[float, float]:
    """Median and max microseconds of one ``call()``."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    return stats.median(samples), max(samples)


async def measure(n: int) -> dict[str, Any]:
    from kepler_async import AsyncKepler, PollPolicy
    from kepler_async._engine._record import JobRecord
    from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport

    policy = PollPolicy(first_delay=3600, interval=3600, cap=3600, deadline=None)
    sim = KeplerSimulator()
    async with AsyncKepler(
        LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim), poll_policy=policy
    ) as kepler:
        binding = kepler._binding
        for _ in range(n):
            record: JobRecord[Any] = JobRecord(str(uuid.uuid4()), "x.com", binding)
            binding._watch(record, None, first_poll_now=False)
        assert kepler.statistics().jobs_pending == n
        heap = kepler.engine.scheduler._heap

        def walk() -> float | None:
            return min((job.due for _, job in heap if not job.done()), default=None)

        client = timed(kepler.statistics)
        engine = timed(kepler.engine.statistics)
        walked = timed(walk, calls=max(10, CALLS * 1000 // max(n, 1000) // 10))
    return {"jobs": n, "client": client, "engine": engine, "heap_walk": walked}


def main() -> None:
    import anyio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1000,10000,100000")
    parser.add_argument("--json")
    args = parser.parse_args()
    results = [anyio.run(measure, int(n)) for n in args.jobs.split(",")]
    rows = [
        [
            r["jobs"],
            r["client"][0],
            r["client"][1],
            r["engine"][0],
            r["engine"][1],
            r["heap_walk"][0],
        ]
        for r in results
    ]
    print(
        table(
            f"statistics() per call, microseconds ({machine()})",
            [
                "pending jobs",
                "client p50",
                "client max",
                "engine p50",
                "engine max",
                "one heap walk p50",
            ],
            rows,
        )
    )
    save("stats_cost", {"machine": machine(), "results": results}, args.json)


if __name__ == "__main__":
    main()
