"""The connection pool of the engine's own httpx clients (``wires/_pool.py``).

httpcore's pool handed one idle connection to every request that arrived before the
first of them started on it; all but one then lost the race and went round the pool
again (1.8 times per poll at 10 in flight), and each pass checked every idle socket.
These tests hold the pool to one request per connection, one socket check per
request, and httpcore's own rules: the connection limit, waiting for a connection,
a closed connection never reused, a cancelled wait that leaves the pool usable. A raw
server of our own answers on 127.0.0.1, on asyncio and on trio.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import httpcore
import httpx
import pytest
from httpcore._async.http11 import AsyncHTTP11Connection

from kepler_async._engine.wires._httpx import new_httpx_client
from kepler_async._engine.wires._pool import PromisingPool
from tests.backends import run_on_asyncio_and_trio
from tests.raw_http import Exchange, Server


@pytest.fixture
def races(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts lost races for a connection and socket checks, as httpcore makes them."""
    seen: Counter[str] = Counter()
    start = AsyncHTTP11Connection.handle_async_request
    check = AsyncHTTP11Connection.has_expired

    async def counted_start(self: Any, request: httpcore.Request) -> Any:
        try:
            return await start(self, request)
        except httpcore.ConnectionNotAvailable:
            seen["lost race"] += 1
            raise

    def counted_check(self: Any) -> bool:
        seen["socket check"] += 1
        return check(self)

    monkeypatch.setattr(AsyncHTTP11Connection, "handle_async_request", counted_start)
    monkeypatch.setattr(AsyncHTTP11Connection, "has_expired", counted_check)
    return seen


def our_client(max_connections: int) -> httpx.AsyncClient:
    return new_httpx_client(transport=None, timeout=10, max_connections=max_connections)


async def answer_ok(x: Exchange) -> bool:
    await anyio.lowlevel.checkpoint()
    return await x.json(200, {"ok": True})


async def test_each_idle_connection_goes_to_one_request(races: Counter[str]) -> None:
    server = Server(answer_ok)
    async with server.running() as url, our_client(10) as client:
        assert type(client._transport._pool) is PromisingPool  # type: ignore[attr-defined]

        async def loop() -> None:
            for _ in range(30):
                response = await client.get(f"{url}/job")
                assert response.status_code == 200

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(loop)
    assert races["lost race"] == 0
    # httpcore's pool: 24-34 checks a request at 10 in flight; ours checks the one
    # connection it is about to hand out.
    assert races["socket check"] <= 300 + 10
    assert len({id(x.stream) for x in server.requests}) <= 10


async def test_the_connection_limit_holds_and_waiting_requests_get_one() -> None:
    open_now = peak = 0
    release = anyio.Event()

    async def held(x: Exchange) -> bool:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await release.wait()
        open_now -= 1
        return await x.json(200, {"ok": True})

    server = Server(held)
    async with server.running() as url, our_client(3) as client:
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await client.get(f"{url}/job")).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
            await anyio.wait_all_tasks_blocked()
            assert peak == 3
            release.set()
    assert statuses == [200] * 10
    assert peak == 3
    assert len({id(x.stream) for x in server.requests}) == 3


async def test_a_connection_the_server_closed_is_not_used_again() -> None:
    async def answer_then_close(x: Exchange) -> bool:
        await x.json(200, {"ok": True})
        return False  # closes the socket without saying so in the headers

    server = Server(answer_then_close)
    async with server.running() as url, our_client(4) as client:
        for _ in range(5):
            response = await client.get(f"{url}/job")
            assert response.status_code == 200
            await anyio.sleep(0.01)  # the close reaches the client's socket
    assert len(server.requests) == 5
    assert len({id(x.stream) for x in server.requests}) == 5


async def test_a_cancelled_wait_for_a_connection_leaves_the_pool_usable() -> None:
    release = anyio.Event()

    async def first_held(x: Exchange) -> bool:
        if len(server.requests) == 1:
            await release.wait()
        return await x.json(200, {"ok": True})

    server = Server(first_held)
    async with server.running() as url, our_client(1) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get, f"{url}/held")
            await anyio.wait_all_tasks_blocked()
            with anyio.move_on_after(0.05):
                await client.get(f"{url}/waits-then-gives-up")
            release.set()
        response = await client.get(f"{url}/after")
    assert response.status_code == 200
    assert [x.target for x in server.requests] == ["/held", "/after"]


async def test_a_transport_of_the_callers_is_left_as_it_is() -> None:
    transport = httpx.AsyncHTTPTransport()
    async with new_httpx_client(transport=transport, timeout=10, max_connections=5):
        assert type(transport._pool) is httpcore.AsyncConnectionPool


run_on_asyncio_and_trio(globals(), virtual_time=False)
