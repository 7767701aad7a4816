"""How late ``DeadlineExceeded`` comes: a deadline must be a hard stop.

A fake Kepler API runs behind uvicorn in another process on 127.0.0.1; its jobs never
finish. Three scenarios, each through ``AsyncKepler`` with its default policy (so each
job's one poll falls due at its deadline, all at about the same time):

- ``never-ending``: 2,000 jobs, deadline 2 s; polls are answered at once.
- ``slow polls``: 50 jobs, deadline 1 s; every poll is answered after 3 s.
- ``faulty server``: 1,000 jobs, deadline 2 s; polls meet 5xx (10 %), answers that
  are not JSON (5 %), a proxy's HTML error page (5 %) and answers 0.5-3 s late (10 %).

Lateness is the time from a job's deadline (its acceptance plus the deadline) to the
moment its handle failed with ``DeadlineExceeded``, on the event loop's clock.

    python benchmarks/deadlines.py [--json PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import in_child, machine, percentile, save, table

SCENARIOS = {
    "never-ending": {"jobs": 2000, "deadline": 2.0},
    "slow polls": {"jobs": 50, "deadline": 1.0},
    "faulty server": {"jobs": 1000, "deadline": 2.0},
}
TARGET = 0.25


def fake_app(mode: str) -> Any:
    import json
    import random
    import uuid

    import anyio

    rng = random.Random(7)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        async def answer(status: int, body: bytes) -> None:
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        if scope["method"] == "POST":
            request = b""
            while True:
                message = await receive()
                request += message.get("body", b"")
                if not message.get("more_body"):
                    break
            domain = json.loads(request)["domain"]
            job_id = str(uuid.uuid4())
            body = {"job_id": job_id, "status": "pending", "domain": domain}
            body["poll_url"] = f"/v1/jobs/{job_id}"
            await answer(202, json.dumps(body).encode())
            return
        if mode == "slow polls":
            await anyio.sleep(3.0)
        elif mode == "faulty server":
            draw = rng.random()
            if draw < 0.10:
                await answer(503, b'{"error": "unavailable"}')
                return
            if draw < 0.15:
                await answer(200, b"<html>not json</html>")
                return
            if draw < 0.20:
                await answer(502, b"<html>Bad Gateway</html>")
                return
            if draw < 0.30:
                await anyio.sleep(rng.uniform(0.5, 3.0))
        await answer(200, b'{"status": "pending", "domain": "x.com"}')

    return app


def serve_forever(conn: Any, mode: str) -> None:
    from kepler_async.testing import serve

    with serve(fake_app(mode)) as url:
        conn.send(url)
        conn.recv()


def run(url: str, jobs: int, deadline: float) -> dict[str, Any]:
    import anyio

    from kepler_async import AsyncKepler, DeadlineExceeded

    async def main() -> dict[str, Any]:
        lateness: list[float] = []
        other: list[str] = []
        async with AsyncKepler("ki_live_benchmark", base_url=url) as kepler:

            async def one(n: int) -> None:
                handle = await kepler.submit(f"d{n}.com", deadline=deadline)
                due = handle._record.submitted_at + deadline
                try:
                    await handle
                except DeadlineExceeded:
                    lateness.append(anyio.current_time() - due)
                except Exception as error:  # counted by class, beside the table
                    other.append(type(error).__name__)

            async with anyio.create_task_group() as tg:
                for n in range(jobs):
                    tg.start_soon(one, n)
        return {"lateness": lateness, "other": other}

    return anyio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {}
    for mode, spec in SCENARIOS.items():
        parent, child = ctx.Pipe()
        server = ctx.Process(target=serve_forever, args=(child, mode), daemon=True)
        server.start()
        try:
            url = parent.recv()
            results[mode] = in_child(run, url, spec["jobs"], spec["deadline"])
        finally:
            parent.send("stop")
            server.join(10)
    rows = []
    worst = 0.0
    for mode, result in results.items():
        late = result["lateness"]
        worst = max(worst, max(late, default=0.0))
        rows.append(
            [
                mode,
                SCENARIOS[mode]["jobs"],
                len(late),
                len(result["other"]),
                percentile(late, 50),
                percentile(late, 99),
                max(late, default=0.0),
            ]
        )
    print(
        table(
            f"deadlines: lateness of DeadlineExceeded in seconds, over HTTP to uvicorn on "
            f"127.0.0.1 ({machine()})",
            ["scenario", "jobs", "DeadlineExceeded", "other outcomes", "p50", "p99", "max"],
            rows,
        )
    )
    for mode, result in results.items():
        if result["other"]:
            counts = {name: result["other"].count(name) for name in set(result["other"])}
            print(f"{mode}: other outcomes {counts}")
    verdict = "met" if worst <= TARGET else "NOT met"
    print(f"\ntarget (max lateness <= {TARGET} s): {worst:.3f} s -> {verdict}")
    print(f"JSON: {save('deadlines', {'results': results}, args.json)}")


if __name__ == "__main__":
    main()
