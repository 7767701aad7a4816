"""score_many: one outcome per input, shared jobs for duplicates, bounded, never paid twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import anyio
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler, ScoreOutcome
from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport
from kepler_async.testing.fixtures import open_for_fixture
from tests.backends import run_on_asyncio_and_trio


async def sim() -> KeplerSimulator:
    return KeplerSimulator(seed=5, clock=anyio.current_time, per_key_cold_per_hour=None)


async def kepler(sim: KeplerSimulator) -> AsyncIterator[AsyncKepler]:
    client = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim))
    async for opened in open_for_fixture(client):
        yield opened


async def collect(stream: AsyncIterator[ScoreOutcome]) -> list[ScoreOutcome]:
    return [outcome async for outcome in stream]


def check_against_simulator(outcomes: list[ScoreOutcome], sim: KeplerSimulator) -> None:
    """Every attempted outcome agrees with what the simulator decided for its job."""
    for outcome in outcomes:
        if outcome.status == "scored":
            assert outcome.score is not None
            job = sim.jobs.get(outcome.job_id or "")
            if job is not None:
                assert job.failure_reason is None
            latest = sim.latest(outcome.score.domain)
            assert latest is not None
            assert outcome.score.scored_at == sim.at_dt(latest.at)
        elif outcome.status == "failed" and isinstance(outcome.error, ka.JobFailed):
            assert outcome.error.failure_reason == sim.jobs[outcome.error.job_id].failure_reason


async def test_every_input_gets_exactly_one_outcome(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    sim.seed_score("cached.com", age=10)
    sim.script("broken.io", failure_reason="sfn_failed")
    inputs = [
        "stripe.com",
        "https://www.Stripe.com/about",  # the same domain: shares the job
        "",
        "not a domain",
        "cached.com",
        "broken.io",
        "plaid.com",
        "stripe.com",
        None,
    ]
    outcomes = await collect(kepler.score_many(inputs))  # type: ignore[arg-type]
    assert sorted(o.index for o in outcomes) == list(range(len(inputs)))
    by_index = {o.index: o for o in outcomes}
    assert by_index[1].input == "https://www.Stripe.com/about"
    assert by_index[0].status == by_index[1].status == by_index[7].status == "scored"
    assert by_index[0].job_id == by_index[1].job_id == by_index[7].job_id
    for bad in (2, 3, 8):
        assert by_index[bad].status == "failed"
        assert isinstance(by_index[bad].error, ka.InvalidDomain)
        assert by_index[bad].domain is None
    assert by_index[4].status == "scored"
    assert by_index[4].job_id is None  # answered from cache, no job
    assert isinstance(by_index[5].error, ka.PipelineFailed)
    assert by_index[5].job_id == by_index[5].error.job_id
    assert sim.counters.cold_runs_billed == Counter(
        {"stripe.com": 1, "broken.io": 1, "plaid.com": 1}
    )
    check_against_simulator(outcomes, sim)


async def test_outstanding_jobs_are_bounded(kepler: AsyncKepler, sim: KeplerSimulator) -> None:
    seen_pending: list[int] = []
    inputs = [f"d{i}.com" for i in range(60)]
    async for _ in kepler.score_many(inputs, max_outstanding=7):
        seen_pending.append(kepler.statistics().jobs_pending)
    assert max(seen_pending) <= 7
    assert sim.counters.total_cold_runs == 60


async def test_cold_budget_exhaustion_stops_submitting_and_reports_the_rest(
    sim: KeplerSimulator,
) -> None:
    sim.add_key("ki_live_starter", plan="starter", account="acct_small")  # 50 cold runs
    async with AsyncKepler(
        "ki_live_starter", base_url=SIM_BASE_URL, transport=asgi_transport(sim)
    ) as kepler:
        outcomes = await collect(
            kepler.score_many([f"d{i}.com" for i in range(80)], max_outstanding=10)
        )
    assert len(outcomes) == 80
    assert sorted(o.index for o in outcomes) == list(range(80))
    exhausted = [o for o in outcomes if isinstance(o.error, ka.ColdBudgetExhausted)]
    not_attempted = [o for o in outcomes if o.status == "not_attempted"]
    attempted = [o for o in outcomes if o.job_id is not None]
    assert len(attempted) == 50 == sim.counters.total_cold_runs
    assert exhausted
    assert len(attempted) + len(exhausted) + len(not_attempted) == 80
    assert all("cold budget" in (o.reason or "") for o in not_attempted)
    assert max(sim.counters.cold_runs_billed.values()) == 1


async def test_a_cold_limit_ends_the_rest_not_attempted_and_the_accepted_jobs_finish(
    sim: KeplerSimulator,
) -> None:
    sim = KeplerSimulator(seed=5, clock=anyio.current_time, per_key_cold_per_hour=10)
    async with AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim)) as k:
        start = anyio.current_time()
        outcomes = await collect(k.score_many([f"d{i}.com" for i in range(15)]))
        took = anyio.current_time() - start
    by_status = Counter(o.status for o in outcomes)
    assert by_status["not_attempted"] == 5
    assert by_status["scored"] + by_status["failed"] == 10
    assert not any(isinstance(o.error, ka.DeadlineExceeded) for o in outcomes)
    reasons = {o.reason for o in outcomes if o.status == "not_attempted"}
    assert len(reasons) == 1
    reason = str(reasons.pop())
    assert "per_key_cold_1h" in reason
    assert "lifts at" in reason
    assert sim.counters.total_cold_runs == 10
    assert took < 200  # about as long as the accepted jobs take, not the limit's hour


async def test_wait_for_budget_waits_the_cold_limit_out(sim: KeplerSimulator) -> None:
    sim = KeplerSimulator(seed=5, clock=anyio.current_time, per_key_cold_per_hour=10)
    async with AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim)) as k:
        start = anyio.current_time()
        batch = k.score_many([f"d{i}.com" for i in range(15)], deadline=None, wait_for_budget=True)
        outcomes = await collect(batch)
    assert Counter(o.status for o in outcomes)["not_attempted"] == 0
    assert all(o.job_id for o in outcomes)
    assert sim.counters.total_cold_runs == 15
    assert anyio.current_time() - start >= 3600 - 1  # the limit's hour passed


async def test_async_iterables_are_accepted(kepler: AsyncKepler) -> None:
    async def domains() -> AsyncIterator[str]:
        for i in range(5):
            await anyio.sleep(1)
            yield f"d{i}.com"

    outcomes = await collect(kepler.score_many(domains()))
    assert sorted(o.domain or "" for o in outcomes) == [f"d{i}.com" for i in range(5)]


async def test_stopping_early_submits_nothing_more(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    stream = kepler.score_many([f"d{i}.com" for i in range(100)], max_outstanding=5)
    async for _ in stream:
        break
    await stream.aclose()
    await anyio.sleep(500)
    # Five were outstanding; one more may have been on the wire when iteration stopped.
    assert sim.counters.total_cold_runs <= 6


async def test_bad_bounds_are_refused(kepler: AsyncKepler) -> None:
    with pytest.raises(ka.ConfigurationError):
        kepler.score_many(["a.com"], max_outstanding=0)
    with pytest.raises(ValueError, match="deadline"):
        kepler.score_many(["a.com"], deadline=-1)


async def test_a_thousand_domains_end_to_end(sim: KeplerSimulator) -> None:
    """1,000 cold runs with the default failure mix: outcomes match, one run per domain."""
    domains = [f"company-{i:04d}.com" for i in range(1000)]
    async with AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim)) as k:
        outcomes = await collect(k.score_many(domains))
        stats = k.statistics()
    assert len(outcomes) == 1000
    assert sim.counters.total_cold_runs == 1000
    assert set(sim.counters.cold_runs_billed.values()) == {1}
    statuses = Counter(o.status for o in outcomes)
    assert statuses["scored"] + statuses["failed"] == 1000
    assert 0 < statuses["failed"] < 200
    check_against_simulator(outcomes, sim)
    assert stats.polls_sent == sim.counters.polls_served
    assert stats.polls_per_finished_job < 12  # the documented 5 s loop needs ~12


run_on_asyncio_and_trio(globals(), virtual_time=True, async_fixtures=[sim, kepler])
