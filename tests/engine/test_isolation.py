"""What a caller or a server does to one call or one job stays there (issue: nothing a
caller or a server does can break the engine). asyncio and trio, on fake time."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Iterator

import anyio
import httpx
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async.testing import (
    LIVE_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    asgi_transport,
    simulated_client,
)
from tests.apis import Wire
from tests.backends import run_on_asyncio_and_trio


def make_sim(**kwargs: object) -> KeplerSimulator:
    kwargs.setdefault("failure_mix", {})
    return KeplerSimulator(clock=anyio.current_time, **kwargs)  # type: ignore[arg-type]


def kepler_on(
    sim: KeplerSimulator, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncKepler:
    return AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=transport or asgi_transport(sim))


# --- score_many's input -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["stripe.com", b"stripe.com", None, 42], ids=repr)
async def test_score_many_refuses_what_is_not_an_iterable_of_domains(bad: object) -> None:
    sim = make_sim()
    async with kepler_on(sim) as kepler:
        with pytest.raises(TypeError, match="iterable of domains"):
            kepler.score_many(bad)  # type: ignore[arg-type]
        assert (await kepler.score("stripe.com")).domain == "stripe.com"  # still usable
    assert sim.counters.total_cold_runs <= 1


async def test_an_iterable_that_raises_passes_its_error_to_the_caller() -> None:
    def domains() -> Iterator[str]:
        yield "a.com"
        yield "b.com"
        raise ValueError("the input file is broken")

    sim = make_sim()
    seen: list[ka.ScoreOutcome] = []
    async with kepler_on(sim) as kepler:
        with pytest.raises(ValueError, match="input file is broken"):  # noqa: PT012
            async for outcome in kepler.score_many(domains()):
                seen.append(outcome)
        assert (await kepler.score("c.com")).domain == "c.com"  # the client goes on
    assert sim.counters.total_cold_runs == 3  # a.com and b.com were submitted, and c.com


async def test_breaking_out_over_an_endless_generator_returns_promptly() -> None:
    read = itertools.count()

    def endless() -> Iterator[str]:
        for n in read:
            yield f"d{n}.com"

    sim = make_sim()
    async with kepler_on(sim) as kepler:
        batch = kepler.score_many(endless(), max_outstanding=20)
        async for _ in batch:
            break
        await batch.aclose()
        consumed = next(read)
    assert consumed <= 20 + 64 + 1  # read only while there was room, never drained


# --- closing while a batch runs -------------------------------------------------------------


async def test_aclose_during_score_many_ends_it_with_one_outcome_per_input() -> None:
    sim = make_sim(per_key_cold_per_hour=None)
    domains = [f"d{n}.com" for n in range(400)]
    outcomes: list[ka.ScoreOutcome] = []
    kepler = kepler_on(sim)
    async with kepler:
        async for outcome in kepler.score_many(domains, max_outstanding=100):
            outcomes.append(outcome)
            if len(outcomes) == 50:
                await kepler.aclose()
    assert sorted(o.index for o in outcomes) == list(range(400))
    closed = [o for o in outcomes if isinstance(o.error, ka.ClientClosed)]
    assert closed
    submitted = [o for o in closed if o.job_id is not None]
    assert submitted  # those whose job had started carry its id
    assert all(o.error.job_id == o.job_id for o in submitted)  # type: ignore[union-attr]


async def test_a_cold_limit_in_a_big_batch_stalls_nothing() -> None:
    """2,000 domains, the simulator's real limit (200 cold runs per key per hour): every
    accepted job ends scored or failed by the server, the rest not_attempted, in about
    the time the accepted jobs take."""
    sim = KeplerSimulator(clock=anyio.current_time)  # default limits and failure mix
    async with kepler_on(sim) as kepler:
        start = anyio.current_time()
        outcomes = [o async for o in kepler.score_many(f"d{n}.com" for n in range(2000))]
        took = anyio.current_time() - start
    statuses = Counter(o.status for o in outcomes)
    assert len(outcomes) == 2000
    assert not any(isinstance(o.error, ka.DeadlineExceeded) for o in outcomes)
    assert statuses["scored"] + statuses["failed"] == sim.counters.total_cold_runs == 200
    assert statuses["not_attempted"] == 1800
    assert took < 300  # the accepted runs take 25-90 s; nobody waits for the hour


# --- hostile bytes ---------------------------------------------------------------------------


async def test_a_deeply_nested_answer_is_a_transient_fault_of_that_job() -> None:
    sim = make_sim(per_key_cold_per_hour=None)
    wire = Wire(sim.create_app())
    async with kepler_on(sim, wire) as kepler:
        hostile = await kepler.submit("hostile.com")
        fine = await kepler.submit("fine.com")
        deep = b"[" * 200_000 + b"]" * 200_000
        wire.answer_paths[f"/v1/jobs/{hostile.job_id}"] = httpx.Response(200, content=deep)
        assert (await hostile).domain == "hostile.com"  # the next poll read fine
        assert (await fine).domain == "fine.com"
        assert kepler.statistics().transient_errors == 1


async def test_an_answer_that_never_clears_is_the_cause_of_the_deadline() -> None:
    sim = make_sim(per_key_cold_per_hour=None)
    sim.script("garbled.com", duration=500)
    wire = Wire(sim.create_app())
    async with kepler_on(sim, wire) as kepler:
        job = await kepler.submit("garbled.com", deadline=120)
        path = f"/v1/jobs/{job.job_id}"

        async def keep_garbling() -> None:
            while not job.done():
                wire.answer_paths[path] = httpx.Response(200, content=b'{"status": "pen')
                await anyio.sleep(0.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_garbling)
            with pytest.raises(ka.DeadlineExceeded) as info:
                await job
        assert isinstance(info.value.__cause__, ka.ProtocolError)


async def test_a_well_formed_answer_with_an_unknown_status_fails_the_job_at_once() -> None:
    sim = make_sim(per_key_cold_per_hour=None)
    wire = Wire(sim.create_app())
    async with kepler_on(sim, wire) as kepler:
        job = await kepler.submit("odd.com")
        odd = httpx.Response(200, json={"job_id": job.job_id, "status": "exploded"})
        wire.answer_paths[f"/v1/jobs/{job.job_id}"] = odd
        with pytest.raises(ka.ProtocolError, match="unknown status"):
            await job


# --- one event loop per client ----------------------------------------------------------------


def test_a_client_used_from_another_thread_gets_a_clear_error() -> None:
    sim = KeplerSimulator(time_scale=0.001)
    kepler = simulated_client(sim)
    errors: list[BaseException] = []

    async def use() -> None:
        await kepler.score("stripe.com")

    asyncio.run(use())

    def other_thread() -> None:
        try:
            asyncio.run(use())
        except BaseException as error:  # collected for the assertion
            errors.append(error)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()  # no hang
    assert [type(e) for e in errors] == [RuntimeError]
    assert "another event loop" in str(errors[0])


run_on_asyncio_and_trio(globals(), virtual_time=True)
