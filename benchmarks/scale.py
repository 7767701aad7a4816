"""100,000 pending jobs in one process: memory per job and event-loop lag.

Every job is polled at the documented 5 s cadence against a fake API answering
``pending``, served by uvicorn in another process on 127.0.0.1 (real sockets, as users
run), so the process is asked for 20,000 polls a second, more than it can send.
Competitors, each in its own process, each with 10 requests in flight at most:

- ``kepler_async``: handles watched by one engine (heap + one scheduler task,
  ``max_in_flight`` workers), created with the engine's own ``watch``.
- ``asyncio task per job``: the documented loop, one ``asyncio`` task per job (a
  semaphore of 10 in front of httpx, as PERF-NOTES advises).
- ``anyio task per job``: the same as anyio task-group tasks.

Memory per pending job is the growth of resident memory (``/proc/self/statm``) from
before the jobs to after all are pending, divided by their number; it includes the job
id strings every competitor holds. Loop lag is how late a 10 ms probe sleep wakes,
sampled for ``--seconds`` while the jobs are pending.

    python benchmarks/scale.py [--jobs 100000] [--seconds 15] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import in_child, machine, mean, percentile, save, table

INTERVAL = 5.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


PENDING = b'{"status": "pending", "domain": "x.com"}'


async def pending_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The fake API: every request is answered ``pending``."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": PENDING})


def serve_forever(conn: Any) -> None:
    from kepler_async.testing import serve

    with serve(pending_app) as url:
        conn.send(url)
        conn.recv()  # until told to stop


async def probe_lag(seconds: float) -> list[float]:
    import anyio
    import anyio.lowlevel

    lags = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        await anyio.sleep(0.01)
        lags.append((time.monotonic() - start - 0.01) * 1000)
    return lags


def ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i, version=4)) for i in range(n)]


def run_kepler_async(url: str, n: int, seconds: float) -> dict[str, Any]:
    import anyio
    import anyio.lowlevel

    from kepler_async import AsyncKepler, PollPolicy
    from kepler_async._engine._record import JobRecord

    policy = PollPolicy(
        first_delay=INTERVAL,
        interval=INTERVAL,
        multiplier=1,
        cap=INTERVAL,
        jitter=1.0,
        deadline=None,
    )

    async def main() -> dict[str, Any]:
        job_ids = ids(n)
        async with AsyncKepler(
            "ki_live_benchmark",
            base_url=url,
            poll_policy=policy,
            max_in_flight=10,
        ) as kepler:
            # As submit() does after a 202, minus the POST: a job record on the engine
            # and the handle a caller holds.
            binding = kepler._binding
            gc.collect()
            before = rss_bytes()
            jobs = []
            for job_id in job_ids:
                record: JobRecord[Any] = JobRecord(job_id, "x.com", binding)
                binding._watch(record, None, first_poll_now=False)
                jobs.append(binding.handle(record, None))
            gc.collect()
            per_job = (rss_bytes() - before) / n
            lags = await probe_lag(seconds)
            stats = kepler.statistics()
            assert stats.jobs_pending == n
            return {"bytes_per_job": per_job, "lags_ms": lags, "polls": stats.polls_sent}

    return {"competitor": "kepler_async", **anyio.run(main)}


def run_asyncio_tasks(url: str, n: int, seconds: float) -> dict[str, Any]:
    import asyncio
    import random

    import httpx

    async def main() -> dict[str, Any]:
        job_ids = ids(n)
        polls = 0
        limit = asyncio.Semaphore(10)
        async with httpx.AsyncClient(
            base_url=url, headers={"X-API-Key": "ki_live_benchmark"}
        ) as http:

            async def watch(job_id: str) -> None:
                nonlocal polls
                await asyncio.sleep(random.random() * INTERVAL)
                while True:
                    async with limit:
                        (await http.get(f"/v1/jobs/{job_id}")).json()
                    polls += 1
                    await asyncio.sleep(INTERVAL)

            gc.collect()
            before = rss_bytes()
            tasks = [asyncio.create_task(watch(job_id)) for job_id in job_ids]
            gc.collect()
            per_job = (rss_bytes() - before) / n
            lags = await probe_lag(seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return {"bytes_per_job": per_job, "lags_ms": lags, "polls": polls}

    return {"competitor": "asyncio task per job", **asyncio.run(main())}


def run_anyio_tasks(url: str, n: int, seconds: float) -> dict[str, Any]:
    import random

    import anyio
    import anyio.lowlevel
    import httpx

    async def main() -> dict[str, Any]:
        job_ids = ids(n)
        polls = 0
        limit = anyio.Semaphore(10)
        async with httpx.AsyncClient(
            base_url=url, headers={"X-API-Key": "ki_live_benchmark"}
        ) as http:

            async def watch(job_id: str) -> None:
                nonlocal polls
                await anyio.sleep(random.random() * INTERVAL)
                while True:
                    async with limit:
                        (await http.get(f"/v1/jobs/{job_id}")).json()
                    polls += 1
                    await anyio.sleep(INTERVAL)

            result: dict[str, Any] = {}
            async with anyio.create_task_group() as tg:
                gc.collect()
                before = rss_bytes()
                for job_id in job_ids:
                    tg.start_soon(watch, job_id)
                await anyio.lowlevel.checkpoint()
                gc.collect()
                result["bytes_per_job"] = (rss_bytes() - before) / n
                result["lags_ms"] = await probe_lag(seconds)
                result["polls"] = polls
                tg.cancel_scope.cancel()
            return result

    return {"competitor": "anyio task per job", **anyio.run(main)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_forever, args=(child,), daemon=True)
    server.start()
    try:
        url = parent.recv()
        results = [
            in_child(func, url, args.jobs, args.seconds)
            for func in (run_kepler_async, run_asyncio_tasks, run_anyio_tasks)
        ]
    finally:
        parent.send("stop")
        server.join(10)
    rows = []
    for r in results:
        lags = r.pop("lags_ms")
        r.update(
            lag_p50_ms=percentile(lags, 50),
            lag_p99_ms=percentile(lags, 99),
            lag_mean_ms=mean(lags),
            lag_samples=len(lags),
        )
        rows.append(
            [
                r["competitor"],
                round(r["bytes_per_job"]),
                r["lag_p50_ms"],
                r["lag_p99_ms"],
                r["lag_samples"],
                r["polls"] / args.seconds,
            ]
        )
    print(
        table(
            f"scale: {args.jobs:,} pending jobs polled every {INTERVAL:g} s, fake API over HTTP "
            "on 127.0.0.1, "
            f"{args.seconds:g} s sampled ({machine()})",
            ["competitor", "bytes/job", "lag p50 ms", "lag p99 ms", "probe samples", "polls/s"],
            rows,
        )
    )
    ours = results[0]
    ok = ours["bytes_per_job"] <= 600 and ours["lag_p99_ms"] <= 5
    print(
        f"\ntargets (<= 600 bytes per pending job, loop lag p99 <= 5 ms): "
        f"{ours['bytes_per_job']:.0f} bytes, {ours['lag_p99_ms']:.1f} ms -> "
        f"{'met' if ok else 'NOT met'}"
    )
    print(f"JSON: {save('scale', {'args': vars(args), 'results': results}, args.json)}")


if __name__ == "__main__":
    main()
