"""Fan-out (``*_many``) is an engine feature: the same promises for all four APIs.

One outcome per input, duplicates share one job, bad inputs fail typed, at most
``max_outstanding`` jobs at a time, a quota stops what it limits, closing ends every
outcome, and a journal makes a rerun free. Parametrised over the four-API harness, on
asyncio and trio, on fake time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import kepler_async as ka
from kepler_async.testing import (
    DeepidvSimulator,
    KeplerSimulator,
    MidLyrSimulator,
    ParseTxSimulator,
)
from tests.apis import API_NAMES, APIS, QUOTA_SCOPED, Api, Wire, answer
from tests.backends import run_on_asyncio_and_trio


@pytest.fixture(params=API_NAMES)
def api(request: pytest.FixtureRequest) -> Api:
    return APIS[str(request.param)]


def status(outcome: Any) -> str:
    """``done`` whatever the API calls it (Kepler says ``scored``)."""
    return "done" if outcome.status in ("done", "scored") else str(outcome.status)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [outcome async for outcome in stream]


async def test_every_input_gets_one_outcome_and_duplicates_share_a_job(api: Api) -> None:
    sim = api.make_sim()
    inputs = [api.item(1), api.item(2), api.bad_item, api.item(1), api.item(3)]
    async with api.client(sim) as client:
        outcomes = await collect(api.many(client, inputs))
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3, 4]
    by_index = {o.index: o for o in outcomes}
    assert [status(by_index[i]) for i in range(5)] == ["done", "done", "failed", "done", "done"]
    assert isinstance(by_index[2].error, ka.InvalidInput)
    assert by_index[0].job_id == by_index[3].job_id  # one job for the duplicate
    assert by_index[0].input == inputs[0]
    assert api.jobs_started(sim) == 3


async def test_at_most_max_outstanding_jobs_at_a_time(api: Api) -> None:
    sim = api.make_sim()
    most = 0
    async with api.client(sim) as client:
        stream = api.many(client, [api.item(n) for n in range(7)], max_outstanding=2)
        outcomes = []
        async for outcome in stream:
            most = max(most, client.statistics().jobs_pending)
            outcomes.append(outcome)
    assert len(outcomes) == 7
    assert all(status(o) == "done" for o in outcomes)
    assert 1 <= most <= 2


async def test_closing_the_client_ends_every_outcome_of_hundreds(api: Api) -> None:
    sim = api.make_sim()
    outcomes: list[Any] = []
    async with api.client(sim) as client:
        stream = api.many(client, [api.item(n) for n in range(300)])
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                async for outcome in stream:
                    outcomes.append(outcome)

            tg.start_soon(read)
            await anyio.sleep(1)  # submitted, not finished
            await client.aclose()
    assert sorted(o.index for o in outcomes) == list(range(300))
    assert all(isinstance(o.error, ka.ClientClosed) for o in outcomes)
    assert all(o.error.job_id == o.job_id and o.job_id for o in outcomes)


async def test_a_quota_429_ends_what_was_not_submitted(api: Api) -> None:
    if api.name not in QUOTA_SCOPED:
        pytest.skip(f"{api.name} has no 429 that limits paid work only")
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    body, headers = api.quota_429
    wire.refuse_posts = [answer(429, body, headers) for _ in range(5)]
    async with api.client(sim, wire) as client:
        outcomes = await collect(api.many(client, [api.item(n) for n in range(3)]))
    assert [status(o) for o in outcomes] == ["not_attempted"] * 3
    assert all(o.reason and "lifts at" in o.reason for o in outcomes)
    assert api.jobs_started(sim) == 0


async def test_a_rate_429_is_waited_out(api: Api) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    body, headers = api.rate_429
    wire.refuse_posts = [answer(429, body, headers)]
    async with api.client(sim, wire) as client:
        outcomes = await collect(
            api.many(client, [api.item(1)], wait_for_budget=api.name in QUOTA_SCOPED)
        )
    assert [status(o) for o in outcomes] == ["done"]
    assert api.jobs_started(sim) == 1


async def test_a_rerun_over_a_journal_pays_nothing_again(api: Api, tmp_path: Path) -> None:
    sim = api.make_sim()
    journal = tmp_path / "run.db"
    inputs = [api.item(n) for n in range(3)]
    async with api.client(sim, journal=journal) as client:
        first = await collect(api.many(client, inputs))
    async with api.client(sim, journal=journal) as client:
        again = await collect(api.many(client, inputs))
    assert all(status(o) == "done" for o in first + again)
    assert api.jobs_started(sim) == 3
    results = {o.index: (o.result if hasattr(o, "result") else o.score) for o in first}
    assert {o.index: (o.result if hasattr(o, "result") else o.score) for o in again} == results


async def test_an_input_that_is_not_an_iterable_is_refused(api: Api) -> None:
    sim = api.make_sim()
    async with api.client(sim) as client:
        with pytest.raises(TypeError):
            api.many(client, 42)
        with pytest.raises(ka.ConfigurationError):
            api.many(client, [api.item(1)], max_outstanding=0)


#: The simulators as they come: failures on, Kepler's per-key cold-run limit (200 an
#: hour) on, ParseTx with a monthly quota of 50 strings.
AS_THEY_COME: dict[str, Callable[[], Any]] = {
    "kepler": lambda: KeplerSimulator(seed=3, clock=anyio.current_time),
    "deepidv": lambda: DeepidvSimulator(seed=3, clock=anyio.current_time),
    "midlyr": lambda: MidLyrSimulator(seed=3, clock=anyio.current_time),
    "parsetx": lambda: ParseTxSimulator(seed=3, clock=anyio.current_time, monthly_quota=50),
}


async def test_a_big_fan_out_against_the_simulators_as_they_come(api: Api) -> None:
    """300 inputs, the APIs' real limits and failures on: one outcome per input, every
    failure typed, nothing billed twice, and a limit ends what it stops, saying why."""
    sim = AS_THEY_COME[api.name]()
    async with api.client(sim) as client:
        outcomes = await collect(api.many(client, [api.item(n) for n in range(300)]))
        started = client.statistics().jobs_started
    assert sorted(o.index for o in outcomes) == list(range(300))
    statuses = Counter(status(o) for o in outcomes)
    assert all(isinstance(o.error, ka.KeplerError) for o in outcomes if status(o) == "failed")
    assert api.jobs_started(sim) == started  # each job the server started, started once
    assert started == len({o.job_id for o in outcomes if o.job_id})
    if api.name == "kepler":  # 200 cold runs an hour per key
        assert started == 200
        assert statuses["not_attempted"] == 100
        assert all("per_key_cold_1h" in str(o.reason) for o in outcomes if not o.job_id)
    elif api.name == "parsetx":  # 50 strings a month: the rest is never waited for
        from kepler_async.parsetx import QuotaExceeded

        assert started == 50
        for outcome in (o for o in outcomes if not o.job_id):
            # refused by the quota itself (its error), or not sent after it (the reason)
            refused = isinstance(outcome.error, QuotaExceeded)
            assert refused or "Monthly quota exceeded" in str(outcome.reason), outcome
    else:
        assert started == 300
        assert statuses["failed"] > 0  # the simulators' own failure rate is on


async def test_an_error_of_the_callers_iterable_leaves_async_with_as_itself(api: Api) -> None:
    sim = api.make_sim()

    def inputs() -> Iterator[Any]:
        yield api.item(1)
        raise ValueError("the caller's own")

    with pytest.raises(ValueError, match="the caller's own"):  # noqa: PT012
        async with api.client(sim) as client:
            async for _ in api.many(client, inputs()):
                pass
    assert api.jobs_started(sim) <= 1


async def test_a_monthly_quota_ends_a_fan_out_even_when_told_to_wait() -> None:
    """ParseTx's monthly quota lifts next month: ``wait_for_budget`` waits for limits
    that lift within the hour, not for it (as Kepler's monthly cold budget)."""
    from kepler_async.parsetx import QuotaExceeded

    api = APIS["parsetx"]
    sim = ParseTxSimulator(seed=3, clock=anyio.current_time, failure_rate=0, monthly_quota=2)
    start = anyio.current_time()
    async with api.client(sim) as client:
        stream = api.many(
            client, [api.item(n) for n in range(5)], max_outstanding=1, wait_for_budget=True
        )
        outcomes = sorted(await collect(stream), key=lambda o: o.index)
    assert [o.status for o in outcomes] == ["done", "done", "failed"] + ["not_attempted"] * 2
    assert isinstance(outcomes[2].error, QuotaExceeded)
    assert all("Monthly quota exceeded" in str(o.reason) for o in outcomes[3:])
    assert anyio.current_time() - start < 600  # not waited for


run_on_asyncio_and_trio(globals(), virtual_time=True)
