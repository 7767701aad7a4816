"""Deadlines are a hard stop: a slow answer, an endless body, a crowd of jobs at their
deadline or a throttle never make ``DeadlineExceeded`` more than the grace late.
asyncio and trio, on fake time, through the fake API (no vendor)."""

from __future__ import annotations

import anyio
import httpx
import pytest

import kepler_async as ka
from kepler_async._engine._poll import DEADLINE_GRACE
from tests.apis import Wire
from tests.backends import run_on_asyncio_and_trio
from tests.fake_api import FakeServer, fake_client


async def late_by(client: ka.JobHandle[int], deadline: float, start: float) -> float:
    with pytest.raises(ka.DeadlineExceeded):
        await client
    return anyio.current_time() - (start + deadline)


async def test_a_poll_answered_after_the_deadline_is_abandoned_at_it() -> None:
    server = FakeServer()
    slow = Wire(server.transport())
    slow.hold_gets = 3.0
    async with ka.JobEngine() as engine:
        client = fake_client(server, slow, engine=engine)
        start = anyio.current_time()
        handle = await client.submit_job(1, duration=100, deadline=1.0)
        late = await late_by(handle, 1.0, start)
        assert 0 <= late <= DEADLINE_GRACE + 0.01
        assert "no answer yet" in str(handle.exception())
        await client.aclose()


async def test_an_endless_body_does_not_hold_the_deadline() -> None:
    server = FakeServer()
    async with ka.JobEngine() as engine:
        endless = Wire(server.transport())
        endless.endless_gets = True
        client = fake_client(server, endless, engine=engine)
        start = anyio.current_time()
        handle = await client.submit_job(1, duration=100, deadline=2.0)
        assert await late_by(handle, 2.0, start) <= DEADLINE_GRACE + 0.01
        await client.aclose()


async def test_two_thousand_jobs_at_their_deadline_end_within_the_grace() -> None:
    server = FakeServer()
    slow = Wire(server.transport())
    slow.hold_gets = 0.005  # 4 slots: 800 polls a second at most
    lateness: list[float] = []
    async with ka.JobEngine(max_in_flight=4) as engine:
        client = fake_client(server, slow, engine=engine)
        handles = []
        for n in range(2000):
            handle = await client.submit_job(n, duration=1000, deadline=2.0)
            accepted = anyio.current_time()

            def note(h: ka.JobHandle[int], accepted: float = accepted) -> None:
                lateness.append(anyio.current_time() - (accepted + 2.0))

            handle.add_done_callback(note)
            handles.append(handle)
        for handle in handles:
            with pytest.raises(ka.DeadlineExceeded):
                await handle
        await client.aclose()
    assert len(lateness) == 2000
    assert max(lateness) <= DEADLINE_GRACE + 0.01
    assert min(lateness) >= -0.001  # never before the deadline


async def test_a_throttle_at_the_deadline_is_named_in_the_error() -> None:
    server = FakeServer()
    throttled = Wire(server.transport())
    async with ka.JobEngine() as engine:
        client = fake_client(server, throttled, engine=engine)
        handle = await client.submit_job(1, duration=100, deadline=10.0)
        throttled.rewrite = lambda request: (
            httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "60"})
            if request.method == "GET"
            else None
        )
        with pytest.raises(ka.DeadlineExceeded, match="429"):
            await handle
        await client.aclose()


run_on_asyncio_and_trio(globals(), virtual_time=True)
