"""The engine through its protocol, with a fake API (no vendor): lifecycle, isolation,
structured concurrency. asyncio and trio, on fake time."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import anyio
import anyio.to_thread
import pytest

import kepler_async as ka
from kepler_async import JobEngine
from tests.backends import only_on, run_on_asyncio_and_trio
from tests.fake_api import FakeServer, fake_client

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]


async def test_a_fake_api_runs_on_the_engine_alone() -> None:
    server = FakeServer()
    async with fake_client(server) as client:
        handles = [await client.submit_job(n, duration=3 + n) for n in range(5)]
        assert [await handle for handle in handles] == list(range(5))
        stats = client.statistics()
    assert (stats.jobs_started, stats.jobs_succeeded, stats.jobs_pending) == (5, 5, 0)
    assert server.posts == 5


# --- errors leave `async with` as themselves --------------------------------------------


async def test_the_bodys_own_error_leaves_a_client_as_itself() -> None:
    server = FakeServer()
    with pytest.raises(ValueError, match="mine"):  # noqa: PT012 (the exit is the test)
        async with fake_client(server) as client:
            await client.submit_job(1)
            raise ValueError("mine")


async def test_a_library_error_leaves_a_client_as_itself() -> None:
    server = FakeServer()
    with pytest.raises(ka.JobFailed):
        async with fake_client(server) as client:
            await (await client.submit_job(1, status="failed"))


async def test_errors_leave_a_job_engine_as_themselves() -> None:
    server = FakeServer()
    with pytest.raises(ka.DeadlineExceeded):
        async with JobEngine() as engine, fake_client(server, engine=engine) as client:
            await (await client.submit_job(1, duration=100, deadline=2))
    with pytest.raises(KeyError):
        async with JobEngine():
            raise KeyError("x")


async def test_a_cancelled_body_is_not_wrapped() -> None:
    server = FakeServer()
    with anyio.move_on_after(3) as scope:
        async with fake_client(server) as client:
            await (await client.submit_job(1, duration=100))
    assert scope.cancelled_caught


# --- structured concurrency -------------------------------------------------------------


async def test_a_job_engine_works_in_the_main_task_and_in_task_group_children() -> None:
    server = FakeServer()

    async def use(results: list[int], n: int) -> None:
        async with JobEngine(max_in_flight=2) as engine:
            async with fake_client(server, engine=engine) as client:
                results.append(await (await client.submit_job(n)))
            # the engine goes on after a client on it closed
            async with fake_client(server, engine=engine) as again:
                results.append(await (await again.submit_job(n + 100)))

    results: list[int] = []
    await use(results, 1)  # the main task
    async with anyio.create_task_group() as tg:  # two children, side by side
        tg.start_soon(use, results, 2)
        tg.start_soon(use, results, 3)
    assert sorted(results) == [1, 2, 3, 101, 102, 103]


async def test_engines_and_clients_nest_in_any_order() -> None:
    server = FakeServer()
    async with fake_client(server) as own:  # a client with its own engine...
        async with JobEngine() as shared:  # ...around a shared engine...
            async with fake_client(server, engine=shared) as guest:
                first = await guest.submit_job(1)
                second = await own.submit_job(2)
                assert (await first, await second) == (1, 2)
            assert guest.closed
            assert not own.closed
        assert await (await own.submit_job(3)) == 3


async def test_a_client_on_a_shared_engine_closes_its_own_jobs_only() -> None:
    server = FakeServer()
    async with JobEngine() as engine:
        one = fake_client(server, engine=engine)
        two = fake_client(server, engine=engine)
        left = await one.submit_job(1, duration=50)
        kept = await two.submit_job(2, duration=10)
        await one.aclose()
        with pytest.raises(ka.ClientClosed) as info:
            await left
        assert info.value.job_id == left.job_id
        assert await kept == 2
        assert engine.statistics().jobs_succeeded == 1
        await two.aclose()


# --- isolation: one job's trouble is that job's -----------------------------------------


async def test_a_state_the_engine_does_not_know_fails_that_job_only() -> None:
    server = FakeServer()
    async with fake_client(server) as client:
        odd = await client.submit_job(1, status="weird")
        fine = await client.submit_job(2, duration=8)
        with pytest.raises(ka.ProtocolError, match="does not know"):
            await odd
        assert await fine == 2


async def test_a_dialect_that_trips_on_the_bytes_fails_that_job_only() -> None:
    server = FakeServer()
    async with fake_client(server) as client:
        boom = await client.submit_job(1, status="boom")
        fine = await client.submit_job(2, duration=8)
        with pytest.raises(ka.ProtocolError) as info:
            await boom
        assert isinstance(info.value.__cause__, RecursionError)
        assert await fine == 2


async def test_a_raising_done_callback_is_logged_and_the_rest_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FakeServer()
    seen: list[int] = []

    def bad(handle: ka.JobHandle[int]) -> None:
        raise RuntimeError("user code")

    async with fake_client(server) as client:
        first = await client.submit_job(1)
        first.add_done_callback(bad)
        first.add_done_callback(lambda handle: seen.append(handle.result_nowait()))
        other = await client.submit_job(2, duration=9)
        with caplog.at_level(logging.ERROR, logger="kepler_async"):
            assert await first == 1
        assert await other == 2
    assert seen == [1]
    assert f"a done-callback of job {first.job_id} raised" in caplog.text


# --- one event loop per client ------------------------------------------------------------


def test_a_second_event_loop_gets_a_clear_error_not_a_hang() -> None:
    server = FakeServer()
    client = fake_client(server, poll_policy=ka.PollPolicy(first_delay=0.01, interval=0.01))

    async def use() -> int:
        return await (await client.submit_job(7, duration=0))

    assert asyncio.run(use()) == 7
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(use())


@only_on("trio")
async def test_on_trio_a_client_without_async_with_says_what_to_do() -> None:
    """(asyncio hosts the engine in a task of its own: tests/engine/test_scheduler.py)"""
    client = fake_client(FakeServer())
    with pytest.raises(ka.KeplerError, match="async with"):
        await client.submit_job(1)
    await client.aclose()


async def test_several_errors_do_come_out_as_a_group() -> None:
    """Only independent errors from several tasks make a group (not ours to flatten)."""

    async def fail(error: Exception) -> None:
        raise error

    with pytest.raises(BaseExceptionGroup):  # noqa: PT012 (the exit is the test)
        async with fake_client(FakeServer()), anyio.create_task_group() as tg:
            tg.start_soon(fail, ValueError("a"))
            tg.start_soon(fail, KeyError("b"))


async def test_aclose_is_bounded_even_if_the_journal_hangs(tmp_path: object) -> None:
    """A journal write stuck on a hung disk does not hold aclose() past its bound."""
    import threading
    from pathlib import Path

    from kepler_async._engine._backlog import WRITE_BOUND as JOURNAL_WRITE_BOUND

    release = threading.Event()

    class HungDisk(ka.SQLiteJobStore):
        """Statements run on the loop's thread (virtual time jumps while a thread
        works), but the outcome's write, in a thread, never comes back."""

        async def _call(
            self, sql: str, params: tuple[object, ...] = ()
        ) -> list[tuple[object, ...]]:
            if sql.startswith("INSERT INTO jobs") and "'done'" in sql:
                return await anyio.to_thread.run_sync(
                    self._hang, sql, params, abandon_on_cancel=True
                )
            return await super()._call(sql, params)

        def _hang(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
            release.wait(30)  # the disk never answers (until the test ends)
            return self._run(sql, params)

    server = FakeServer()
    store = HungDisk(Path(str(tmp_path)) / "j.db", threaded=False)
    client = fake_client(server, journal=store)
    try:
        async with client:
            handle = await client.submit_job(1, journal_key="k1")
            assert await handle == 1  # its outcome's journal write now hangs
            start = anyio.current_time()
            wall = time.monotonic()
        assert anyio.current_time() - start <= JOURNAL_WRITE_BOUND + 1
        assert time.monotonic() - wall < 10  # not held by the disk's 30 s
    finally:
        release.set()


async def test_statistics_never_walk_the_pending_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``statistics()`` reads counts: with 2,000 jobs pending it looks at no more of
    them than the few a heap's top holds (it walked every one, 3.5 ms a call at
    10,000 pending; benchmarks/stats_cost.py)."""
    from kepler_async._engine._record import JobRecord

    server = FakeServer()
    policy = ka.PollPolicy(first_delay=3600, interval=3600, cap=3600, deadline=None)
    async with fake_client(server, poll_policy=policy) as client:
        handles = [await client.submit_job(n, duration=10_000) for n in range(2000)]
        looked = 0
        done = JobRecord.done

        def counting(record: JobRecord[object]) -> bool:
            nonlocal looked
            looked += 1
            return done(record)

        monkeypatch.setattr(JobRecord, "done", counting)
        client_stats = client.statistics()
        engine_stats = client.engine.statistics()
        monkeypatch.setattr(JobRecord, "done", done)
        assert client_stats.jobs_pending == engine_stats.jobs_pending == 2000
        assert client_stats.next_poll_in is not None
        assert looked <= 4
        for handle in handles:
            handle.cancel()


run_on_asyncio_and_trio(globals(), virtual_time=True)
