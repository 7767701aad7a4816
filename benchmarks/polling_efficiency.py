"""How many polls, and how late: 1,000 cold jobs of 25-90 s (time-scaled).

Competitors, each on a fresh simulator with the same seed (so the same durations and
outcomes per domain), each in its own child process (so CPU and peak RSS are its own):

- ``5s loop``: the documented loop, one task per job: sleep 5 s, poll, repeat; on
  ``complete`` GET ``score_url``.
- ``SDK strategy``: the official SDK's ``Job.wait``: poll at once, then every 5 s; on
  ``complete`` GET ``/v1/score/{result_ref.domain}``. (The SDK is synchronous, one
  thread per waiting job; it runs here as asyncio tasks, which flatters it.)
- ``kepler_async``: ``score_many`` with the default Kepler poll policy.
- ``kepler_async adaptive``: the same with ``adaptive=True``, after a warm-up batch of
  100 other jobs on the same client (not counted) from which it learns durations.

Detection delay is measured per job from the moment the simulator's run finished to the
moment the competitor held the result (or the failure), in simulated seconds.

    python benchmarks/polling_efficiency.py [--jobs 1000] [--time-scale 0.2] [--json PATH]
                                            [--only COMPETITOR ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_seconds, in_child, machine, mean, peak_rss_mib, percentile, save, table

SEED = 2026


def _domains(n: int, prefix: str = "company") -> list[str]:
    return [f"{prefix}-{i:05d}.com" for i in range(n)]


def _delays(sim: Any, done_at: dict[str, float], scale: float) -> list[float]:
    """Per job: (result in hand - run finished), in simulated seconds."""
    out = []
    for job in sim.jobs.values():
        if job.domain in done_at:
            finished_real = sim._t0 + job.finishes * scale
            out.append((done_at[job.domain] - finished_real) / scale)
    return out


def _summary(
    name: str,
    sim: Any,
    done_at: dict[str, float],
    scale: float,
    n: int,
    cpu0: float,
    wall0: float,
    counted_polls: int,
) -> dict[str, Any]:
    delays = _delays(sim, done_at, scale)
    return {
        "competitor": name,
        "jobs": n,
        "finished": len(done_at),
        "polls": counted_polls,
        "polls_per_job": counted_polls / n,
        "mean_delay_s": mean(delays),
        "p95_delay_s": percentile(delays, 95),
        "cpu_s": cpu_seconds() - cpu0,
        "wall_s": time.monotonic() - wall0,
        "peak_rss_mib": peak_rss_mib(),
        "cold_runs": sim.counters.total_cold_runs,
    }


def run_loop(name: str, n: int, scale: float) -> dict[str, Any]:
    """The documented loop or the SDK's strategy: one task per job, fixed 5 s."""
    import httpx

    from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport

    sdk = name == "SDK strategy"

    async def main() -> dict[str, Any]:
        sim = KeplerSimulator(seed=SEED, time_scale=scale, per_key_cold_per_hour=None)
        done_at: dict[str, float] = {}
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        async with httpx.AsyncClient(
            transport=asgi_transport(sim),
            base_url=SIM_BASE_URL,
            headers={"X-API-Key": LIVE_KEY},
            timeout=60,
        ) as http:

            async def one(domain: str) -> None:
                answer = await http.post("/v1/score", json={"domain": domain})
                if answer.status_code == 200:
                    done_at[domain] = time.monotonic()
                    return
                job_id = answer.json()["job_id"]
                first = True
                while True:
                    if not (sdk and first):
                        await asyncio.sleep(5 * scale)
                    first = False
                    job = (await http.get(f"/v1/jobs/{job_id}")).json()
                    if job["status"] == "complete":
                        path = (
                            f"/v1/score/{job['result_ref']['domain']}" if sdk else job["score_url"]
                        )
                        (await http.get(path)).raise_for_status()
                        done_at[domain] = time.monotonic()
                        return
                    if job["status"] == "failed":
                        done_at[domain] = time.monotonic()
                        return

            await asyncio.gather(*(one(d) for d in _domains(n)))
        return _summary(name, sim, done_at, scale, n, cpu0, wall0, sim.counters.polls_served)

    return asyncio.run(main())


def run_kepler_async(name: str, n: int, scale: float) -> dict[str, Any]:
    from kepler_async import AsyncKepler
    from kepler_async._kepler._dialect import KEPLER_POLICY
    from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport

    adaptive = name.endswith("adaptive")

    async def main() -> dict[str, Any]:
        sim = KeplerSimulator(seed=SEED, time_scale=scale, per_key_cold_per_hour=None)
        policy = KEPLER_POLICY.scaled(scale)
        if adaptive:
            import attrs

            policy = attrs.evolve(policy, adaptive=True)
        done_at: dict[str, float] = {}
        async with AsyncKepler(
            LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim), poll_policy=policy
        ) as kepler:
            if adaptive:  # learn from 100 other jobs first; they are not counted
                async for _ in kepler.score_many(_domains(100, prefix="warmup")):
                    pass
            polls0 = sim.counters.polls_served
            for domain in _domains(100, prefix="warmup"):
                sim.counters.cold_runs_billed.pop(domain, None)
                for job_id in [j.job_id for j in sim.jobs.values() if j.domain == domain]:
                    del sim.jobs[job_id]
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            async for outcome in kepler.score_many(_domains(n)):
                done_at[outcome.domain or ""] = time.monotonic()
        return _summary(
            name, sim, done_at, scale, n, cpu0, wall0, sim.counters.polls_served - polls0
        )

    return asyncio.run(main())


COMPETITORS = {
    "5s loop": run_loop,
    "SDK strategy": run_loop,
    "kepler_async": run_kepler_async,
    "kepler_async adaptive": run_kepler_async,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--time-scale", type=float, default=0.2)
    parser.add_argument("--json", help="where to write the JSON (default benchmarks/results/)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(COMPETITORS),
        help="run only these competitors (the 5 s loop always runs)",
    )
    args = parser.parse_args()
    chosen = {"5s loop", *(args.only or COMPETITORS)}
    results = [
        in_child(func, name, args.jobs, args.time_scale)
        for name, func in COMPETITORS.items()
        if name in chosen
    ]
    base = next(r for r in results if r["competitor"] == "5s loop")
    rows = [
        [
            r["competitor"],
            r["polls_per_job"],
            r["polls_per_job"] / base["polls_per_job"],
            r["mean_delay_s"],
            r["p95_delay_s"],
            r["cpu_s"],
            r["peak_rss_mib"],
            r["cold_runs"],
        ]
        for r in results
    ]
    print(
        table(
            f"polling_efficiency: {args.jobs} cold jobs of 25-90 s at time scale {args.time_scale} "
            f"({machine()})",
            [
                "competitor",
                "polls/job",
                "x 5s loop",
                "mean delay s",
                "p95 delay s",
                "CPU s",
                "peak RSS MiB",
                "cold runs",
            ],
            rows,
        )
    )
    ours = next((r for r in results if r["competitor"] == "kepler_async"), None)
    if ours is None:
        return
    ratio = ours["polls_per_job"] / base["polls_per_job"]
    verdict = ratio <= 0.65 and ours["mean_delay_s"] <= base["mean_delay_s"]
    print(
        f"\ntarget (kepler_async polls/job <= 0.65x the 5 s loop's at a mean delay no worse): "
        f"{ratio:.3f}x, {ours['mean_delay_s']:.2f}s vs {base['mean_delay_s']:.2f}s -> "
        f"{'met' if verdict else 'NOT met'}"
    )
    path = save("polling_efficiency", {"args": vars(args), "results": results}, args.json)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
