"""Polls per second and client CPU per poll, for kepler_async on each HTTP transport and
for the HTTP clients it could be built on.

One Kepler simulator runs behind uvicorn (httptools, uvloop where installed) in a
process of its own on 127.0.0.1 and holds one cold job that never finishes within the
run. Each competitor, in a fresh child process, keeps N requests in flight polling
``GET /v1/jobs/{id}`` for ``--seconds``: N loops that each send a poll, read the whole
answer, and send the next. We count polls per second of wall time and client CPU per
poll (user + system of the client process), and report the median of ``--repeats``
runs. Competitors:

- kepler_async, default transport (httpx's own): ``await kepler.get_job(job_id)``
- kepler_async, ``http_backend="aiohttp"`` (extra ``aiohttp``): the same calls
- raw httpx: ``await client.get(url)`` and ``response.json()``
- httpx over aiohttp: the same, with ``httpx_aiohttp.AiohttpTransport``
- raw aiohttp: ``async with session.get(url) as r: await r.json()``

    python benchmarks/throughput.py [--in-flight 1,10,100] [--seconds 3] [--repeats 3]
                                    [--only NAME[,NAME]] [--latency-ms 0]
                                    [--in-process] [--json PATH]

Profiles (benchmarks/README.md): run one competitor in this process under py-spy,
then list the functions with the most samples of their own:

    py-spy record -r 250 -f raw -o prof.txt -- python benchmarks/throughput.py \
        --only "kepler_async (aiohttp transport)" --in-flight 10 --repeats 1 --in-process
    python benchmarks/pyspy_top.py prof.txt
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import cpu_seconds, in_child, machine, save, table

COMPETITORS = [
    "kepler_async (httpx transport)",
    "kepler_async (aiohttp transport)",
    "raw httpx",
    "httpx over aiohttp",
    "raw aiohttp",
]


def serve_forever(conn: Any, latency_ms: float = 0.0) -> None:
    from kepler_async.testing import LIVE_KEY, KeplerSimulator, serve

    sim = KeplerSimulator(seed=1, per_key_cold_per_hour=None, cold_duration=(10**6, 10**6 + 1))
    if latency_ms:  # every answer waits, as over a network to a remote API
        sim.add_fault("delay", delay=latency_ms / 1000, times=10**9, after_processing=True)
    answer = sim.post_score(sim.keys[LIVE_KEY], {"domain": "throughput.example"})
    with serve(sim.create_app()) as url:
        conn.send((url, answer.body["job_id"]))
        conn.recv()  # until told to stop


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(name: str, url: str, job_id: str, in_flight: int, seconds: float) -> dict[str, Any]:
    """One competitor, in a child process: polls sent, wall seconds, CPU seconds."""
    import asyncio

    from kepler_async.testing import LIVE_KEY

    headers = {"X-API-Key": LIVE_KEY, "Accept": "application/json"}
    poll_url = f"{url}/v1/jobs/{job_id}"

    async def hammer(send: Any) -> dict[str, Any]:
        for _ in range(20):  # warm up: connections open, code paths hot
            await send()
        count = 0
        stop = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < stop:
                await send()
                count += 1

        cpu0, wall0 = cpu_seconds(), time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0
        return {"polls": count, "wall_s": wall, "cpu_s": cpu}

    async def main() -> dict[str, Any]:
        if name.startswith("kepler_async"):
            from kepler_async import AsyncKepler

            backend = {"http_backend": "aiohttp"} if "aiohttp" in name else {}
            async with AsyncKepler(
                LIVE_KEY, base_url=url, allow_plain_http=True, max_in_flight=in_flight, **backend
            ) as kepler:

                async def send() -> None:
                    await kepler.get_job(job_id)

                return await hammer(send)
        if name == "raw aiohttp":
            import aiohttp

            connector = aiohttp.TCPConnector(limit=in_flight)
            async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

                async def send() -> None:
                    async with session.get(poll_url) as response:
                        await response.json()

                return await hammer(send)
        import httpx

        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        transport: Any = None
        if name == "httpx over aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits)
        async with httpx.AsyncClient(transport=transport, limits=limits, headers=headers) as client:

            async def send() -> None:
                response = await client.get(poll_url)
                response.json()

            return await hammer(send)

    runner = asyncio.Runner(loop_factory=_loop_factory())
    with runner:
        return runner.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", default="1,10,100")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated competitor names")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run competitors in this process (to profile it, e.g. with py-spy)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every answer, like a WAN RTT"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    names = [n for n in COMPETITORS if not args.only or n in args.only.split(",")]
    levels = [int(n) for n in args.in_flight.split(",")]
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_forever, args=(child, args.latency_ms), daemon=True)
    server.start()
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in names}
    try:
        url, job_id = parent.recv()
        for level in levels:
            for name in names:
                runs = []
                for _ in range(args.repeats):
                    call = (name, url, job_id, level, args.seconds)
                    r = run(*call) if args.in_process else in_child(run, *call)
                    runs.append((r["polls"] / r["wall_s"], r["cpu_s"] / r["polls"] * 1e6))
                results[name][level] = {
                    "polls_per_s": statistics.median(p for p, _ in runs),
                    "cpu_us_per_poll": statistics.median(c for _, c in runs),
                }
                print(f"  {name} @ {level}: {results[name][level]}", file=sys.stderr)
    finally:
        parent.send("stop")
        server.join(10)

    columns = ["client"]
    for level in levels:
        columns += [f"polls/s @{level}", f"CPU us/poll @{level}"]
    rows = []
    for name in names:
        row: list[Any] = [name]
        for level in levels:
            row += [results[name][level]["polls_per_s"], results[name][level]["cpu_us_per_poll"]]
        rows.append(row)
    print(
        table(
            f"throughput: polls of one pending job over HTTP to uvicorn on 127.0.0.1"
            f"{f', {args.latency_ms:g} ms added to each answer' if args.latency_ms else ''}, "
            f"median of {args.repeats} runs of {args.seconds:g} s ({machine()})",
            columns,
            rows,
        )
    )
    # The targets: each wire beside the client it is built on.
    pairs = [
        ("kepler_async (httpx transport)", "raw httpx"),
        ("kepler_async (aiohttp transport)", "raw aiohttp"),
    ]
    ratios = []
    for ours, theirs in pairs:
        if ours not in results or theirs not in results:
            continue
        for level in levels:
            mine, raw_ = results[ours][level], results[theirs][level]
            ratios.append(
                [
                    f"{ours} / {theirs}",
                    level,
                    mine["polls_per_s"] / raw_["polls_per_s"],
                    mine["cpu_us_per_poll"] / raw_["cpu_us_per_poll"],
                ]
            )
    if ratios:
        print()
        print(
            table(
                "ratios (target: polls/s >= 1.0)",
                ["pair", "in flight", "polls/s ratio", "CPU per poll ratio"],
                ratios,
            )
        )
    name = "throughput" + (f"_latency_{args.latency_ms:g}ms" if args.latency_ms else "")
    save(name, {"machine": machine(), "args": vars(args), "results": results}, args.json)


if __name__ == "__main__":
    main()
