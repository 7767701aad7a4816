"""httpcore pool passes, lost races and socket checks per poll, for kepler_async
(httpx wire) and raw httpx.

A pass runs for every request queued and again whenever a connection frees up or turns
out unavailable (a lost race: ``ConnectionNotAvailable``, the request goes round
again); httpcore's own pool checks every idle connection's socket on each pass (a
``poll()`` system call behind anyio attribute lookups). Same server and loop as
benchmarks/throughput.py.

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
    from httpcore._async.http11 import AsyncHTTP11Connection

    from kepler_async._engine.wires._pool import PromisingPool

    seen = {"passes": 0, "lost races": 0, "socket checks": 0}
    for pool in (httpcore.AsyncConnectionPool, PromisingPool):
        original = pool.__dict__["_assign_requests_to_connections"]

        def counting(self: Any, original: Any = original) -> Any:
            seen["passes"] += 1
            return original(self)

        pool._assign_requests_to_connections = counting  # type: ignore[method-assign]
    start, check = AsyncHTTP11Connection.handle_async_request, AsyncHTTP11Connection.has_expired

    async def counted_start(self: Any, request: Any) -> Any:
        try:
            return await start(self, request)
        except httpcore.ConnectionNotAvailable:
            seen["lost races"] += 1
            raise

    def counted_check(self: Any) -> bool:
        if self.is_idle():  # only an idle connection's socket is asked
            seen["socket checks"] += 1
        return check(self)

    AsyncHTTP11Connection.handle_async_request = counted_start  # type: ignore[method-assign]
    AsyncHTTP11Connection.has_expired = counted_check  # type: ignore[method-assign]
    result = run(name, url, job_id, in_flight, seconds)
    return {**result, **seen}


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
                # (the warm-up's 20 polls are counted here but not in polls)
                sent = r["polls"] + 20
                rows.append(
                    [name, level, r["polls"]]
                    + [r[k] / sent for k in ("passes", "lost races", "socket checks")]
                )
    finally:
        parent.send("stop")
        server.join(10)
    print(
        table(
            f"pool_passes: httpcore's pool work per poll ({machine()})",
            ["client", "in flight", "polls", "passes", "lost races", "socket checks"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
