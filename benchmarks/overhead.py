"""CPU per completed cold job: kepler_async beside raw httpx sending the same requests.

Both talk to the same in-process fake API (an ``httpx.MockTransport``): each job is a
``POST /v1/score`` answered 202, ``--polls`` polls answered ``pending``, one answered
``complete``, then the score read at ``score_url``. Raw httpx runs each job as a plain
coroutine (10 at a time) and only parses JSON; kepler_async runs ``score_many`` with a
poll policy of zero delays, so both send the same requests as fast as they can. Each
competitor runs in its own child process; CPU is the process's user + system time.

Competitors alternate over ``--repeat`` runs and the median CPU of each is compared.

    python benchmarks/overhead.py [--jobs 2000] [--polls 8] [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_seconds, in_child, machine, save, table

SCORE = {
    "domain": "x.com",
    "scored_at": "2026-05-12T18:30:43Z",
    "ki_rating": "KI-1",
    "composite_score": 70.0,
    "scale_premium": 3.2,
    "buckets": {
        "team_structure": 70.1,
        "market_position": 71.2,
        "momentum_tailwinds": 68.0,
        "financial_health": 69.9,
    },
    "rank": {"percentile": 90, "cohort_size": 541},
    "x_kepler": {"tier": "growth", "cache_status": "cached", "freshness_window_hours": 6},
}


def fake_api(polls: int) -> Any:
    import uuid

    import httpx

    seen: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            job_id = str(uuid.uuid4())
            seen[job_id] = 0
            domain = request.content.decode().split('"')[3]
            return httpx.Response(
                202,
                json={
                    "job_id": job_id,
                    "status": "pending",
                    "domain": domain,
                    "poll_url": f"/v1/jobs/{job_id}",
                },
            )
        if path.startswith("/v1/jobs/"):
            job_id = path.rsplit("/", 1)[1]
            seen[job_id] += 1
            body = {
                "job_id": job_id,
                "status": "pending",
                "domain": "x.com",
                "created_at": "2026-05-12T18:30:00Z",
                "completed_at": None,
                "result_ref": None,
                "score_url": None,
                "failure_reason": None,
            }
            if seen[job_id] > polls:
                body.update(
                    status="complete",
                    completed_at="2026-05-12T18:30:43Z",
                    result_ref={"domain": "x.com", "scored_at": "2026-05-12T18:30:43Z"},
                    score_url="/v1/score/x.com",
                )
            return httpx.Response(200, json=body)
        return httpx.Response(200, json=SCORE)

    return httpx.MockTransport(handler)


def run_raw(jobs: int, polls: int) -> dict[str, Any]:
    import anyio
    import httpx

    async def main() -> int:
        sent = 0
        limit = anyio.Semaphore(10)
        async with httpx.AsyncClient(
            transport=fake_api(polls),
            base_url="https://api.example.test",
            headers={"X-API-Key": "ki_live_benchmark"},
        ) as http:

            async def one(i: int) -> None:
                nonlocal sent
                async with limit:
                    answer = await http.post("/v1/score", json={"domain": f"d{i}.com"})
                    answer.raise_for_status()
                    job_id = answer.json()["job_id"]
                    sent += 1
                    while True:
                        job = (await http.get(f"/v1/jobs/{job_id}")).json()
                        sent += 1
                        if job["status"] == "complete":
                            (await http.get(job["score_url"])).json()
                            sent += 1
                            return

            async with anyio.create_task_group() as tg:
                for i in range(jobs):
                    tg.start_soon(one, i)
        return sent

    cpu0, wall0 = cpu_seconds(), time.monotonic()
    sent = anyio.run(main)
    return {
        "competitor": "raw httpx",
        "requests": sent,
        "cpu_s": cpu_seconds() - cpu0,
        "wall_s": time.monotonic() - wall0,
    }


def run_kepler_async(jobs: int, polls: int) -> dict[str, Any]:
    import anyio

    from kepler_async import AsyncKepler, PollPolicy

    # The shortest intervals a policy takes (MIN_POLL_INTERVAL): polls as fast as allowed.
    policy = PollPolicy(
        first_delay=0, interval=0.001, multiplier=1, cap=0.001, jitter=0, deadline=None
    )

    async def main() -> int:
        async with AsyncKepler(
            "ki_live_benchmark",
            base_url="https://api.example.test",
            transport=fake_api(polls),
            poll_policy=policy,
        ) as kepler:
            scored = 0
            async for outcome in kepler.score_many([f"d{i}.com" for i in range(jobs)]):
                scored += outcome.ok
            stats = kepler.statistics()
            assert scored == jobs, scored
            return stats.jobs_started + stats.polls_sent + stats.results_fetched

    cpu0, wall0 = cpu_seconds(), time.monotonic()
    sent = anyio.run(main)
    return {
        "competitor": "kepler_async",
        "requests": sent,
        "cpu_s": cpu_seconds() - cpu0,
        "wall_s": time.monotonic() - wall0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--polls", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs; medians")
    parser.add_argument("--json")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"raw httpx": [], "kepler_async": []}
    for _ in range(args.repeat):  # alternate, so drift on the machine hits both alike
        runs["raw httpx"].append(in_child(run_raw, args.jobs, args.polls))
        runs["kepler_async"].append(in_child(run_kepler_async, args.jobs, args.polls))
    results = []
    for series in runs.values():
        median = sorted(series, key=lambda r: r["cpu_s"])[len(series) // 2]
        results.append({**median, "cpu_s_runs": [r["cpu_s"] for r in series]})
    raw = results[0]
    rows = [
        [
            r["competitor"],
            r["requests"],
            r["cpu_s"],
            r["cpu_s"] / args.jobs * 1e6,
            r["cpu_s"] / r["requests"] * 1e6,
            r["cpu_s"] / raw["cpu_s"],
        ]
        for r in results
    ]
    print(
        table(
            f"overhead: {args.jobs} cold jobs, {args.polls} pending polls each, in-process "
            f"fake API ({machine()})",
            ["competitor", "requests", "CPU s", "CPU us/job", "CPU us/request", "x raw httpx"],
            rows,
        )
    )
    ratio = results[1]["cpu_s"] / raw["cpu_s"]
    print(f"\ntarget (<= 1.25x raw httpx): {ratio:.2f}x -> {'met' if ratio <= 1.25 else 'NOT met'}")
    print(f"JSON: {save('overhead', {'args': vars(args), 'results': results}, args.json)}")


if __name__ == "__main__":
    main()
