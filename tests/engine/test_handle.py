"""``JobHandle``: reading, waiting, callbacks, cancelling, equality and reprs.
asyncio and trio, on fake time, through the fake API (no vendor)."""

from __future__ import annotations

import anyio
import pytest

import kepler_async as ka
from tests.backends import run_on_asyncio_and_trio
from tests.fake_api import FakeServer, fake_client


async def test_result_nowait_never_waits_and_never_returns_none() -> None:
    async with fake_client(FakeServer()) as client:
        handle = await client.submit_job(5, duration=10)
        with pytest.raises(ka.JobNotDone) as info:
            handle.result_nowait()
        assert info.value.job_id == handle.job_id
        assert isinstance(info.value, RuntimeError)
        await handle
        assert handle.result_nowait() == 5
        failing = await client.submit_job(6, status="failed")
        with pytest.raises(ka.JobFailed):
            await failing
        with pytest.raises(ka.JobFailed):
            failing.result_nowait()
        assert isinstance(failing.exception(), ka.JobFailed)


async def test_handles_on_one_job_are_equal_and_hash_alike() -> None:
    async with fake_client(FakeServer()) as client:
        one = await client.submit_job(1, deadline=30)
        two = await client.submit_job(1, deadline=90)  # joins the same job
        other = await client.submit_job(2)
        assert one == two
        assert hash(one) == hash(two)
        assert one != other
        assert len({one, two, other}) == 2
        assert (await one, await two) == (1, 1)


async def test_a_done_callback_runs_once_even_when_added_late() -> None:
    calls: list[str] = []
    async with fake_client(FakeServer()) as client:
        handle = await client.submit_job(1)
        handle.add_done_callback(lambda h: calls.append(f"early {h.status}"))
        await handle
        handle.add_done_callback(lambda h: calls.append(f"late {h.status}"))
    assert calls == ["early done", "late done"]


async def test_cancel_stops_local_polling_for_every_handle() -> None:
    server = FakeServer()
    async with fake_client(server) as client:
        one = await client.submit_job(1, duration=100)
        two = await client.submit_job(1, duration=100)
        assert one.cancel() is True
        assert one.cancel() is False
        for handle in (one, two):
            with pytest.raises(ka.PollingCancelled):
                await handle
        assert one.status == "cancelled"
        polls = server.polls
        await anyio.sleep(50)
        assert server.polls == polls
        assert client.statistics().jobs_pending == 0


async def test_result_with_a_timeout_stops_only_that_wait() -> None:
    async with fake_client(FakeServer()) as client:
        handle = await client.submit_job(3, duration=20)
        with pytest.raises(TimeoutError):
            await handle.result(timeout=5)
        assert not handle.done()
        assert await handle.result(timeout=60) == 3


async def test_reprs_show_state_and_never_the_key() -> None:
    async with fake_client(FakeServer()) as client:
        handle = await client.submit_job(3, duration=20)
        assert repr(handle).startswith(f"<JobHandle {handle.job_id} value 3 pending, 0 polls")
        assert "fake-key" not in repr(client)
        assert "1 jobs pending" in repr(client)
        await handle
        assert repr(handle) == f"<JobHandle {handle.job_id} value 3 done>"
        assert "1 done" in repr(client.engine)


run_on_asyncio_and_trio(globals(), virtual_time=True)
