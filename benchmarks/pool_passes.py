"""httpcore pool passes per poll: how often httpcore's pool assigns requests to
connections for each poll sent, for kepler_async (httpx wire) and raw httpx.

A pass runs for every request queued and again whenever a connection frees up or turns
out unavailable (``ConnectionNotAvailable`` retries); each pass checks every pooled
connection. Same server and loop as benchmarks/throughput.py.

    python benchmarks/pool_passes.py [--in-flight 10,100] [--seconds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import in_child, machine, table
from throughput import run, serve_forever

NAMES = ["kepler_async (httpx transport)", "raw httpx"]


def counted(name: str, url: str, job_id: str, in_flight: int, seconds: float) -> dict[str, Any]:
    import httpcore

    pool = httpcore.AsyncConnectionPool
    original = pool._assign_requests_to_connections
    passes = 0

    def counting(self: Any) -> Any:
        nonlocal passes
        passes += 1
        return original(self)

    pool._assign_requests_to_connections = counting  # type: ignore[method-assign]
    result = run(name, url, job_id, in_flight, seconds)
    return {**result, "passes": passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-flight", default="10,100")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=serve_forever, args=(child,), daemon=True)
    server.start()
    rows = []
    try:
        url, job_id = parent.recv()
        for level in (int(n) for n in args.in_flight.split(",")):
            for name in NAMES:
                r = in_child(counted, name, url, job_id, level, args.seconds)
                # (the warm-up's 20 polls are counted in passes but not in polls)
                rows.append([name, level, r["polls"], r["passes"] / (r["polls"] + 20)])
    finally:
        parent.send("stop")
        server.join(10)
    print(
        table(
            f"pool_passes: httpcore pool passes per poll ({machine()})",
            ["client", "in flight", "polls", "passes per poll"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
