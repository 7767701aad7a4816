"""``score_many(max_cold_runs=N)``: at most N billed runs, exact under concurrency, with
the simulator's real limits on; on asyncio and trio, on virtual time."""

from __future__ import annotations

import pytest

import kepler_async as ka
from kepler_async.testing import KeplerSimulator, simulated_client, virtual_time
from tests.backends import run_on_asyncio_and_trio


def sim_of(new: int, cached: int = 0) -> tuple[KeplerSimulator, list[str], list[str]]:
    """The simulator as a Standard-plan key would meet it (its hourly limit and
    monthly budget on), ``new`` domains it holds no score for and ``cached`` ones."""
    sim = KeplerSimulator(seed=11, failure_mix={})
    fresh = [f"new-{n:03d}.com" for n in range(new)]
    known = [f"known-{n:03d}.com" for n in range(cached)]
    for domain in known:
        sim.seed_score(domain, age=60)
    return sim, fresh, known


async def test_the_cap_is_exact_with_many_submits_at_once() -> None:
    sim, fresh, known = sim_of(new=40, cached=10)
    async with virtual_time(), simulated_client(sim) as kepler:
        batch = kepler.score_many(known + fresh, max_cold_runs=7, max_outstanding=30)
        outcomes = await batch.collect()
        progress = batch.progress()
    assert sim.counters.total_cold_runs == 7
    scored = {o.domain for o in outcomes if o.status == "scored"}
    assert len(scored & set(fresh)) == 7  # exactly the cap's cold runs
    skipped = [o for o in outcomes if o.status == "not_attempted"]
    assert len(skipped) == 50 - len(scored)
    # Once the cap is spent nothing more is sent: a POST for a domain thought cached
    # could still start a billed run.
    assert all("cap of 7 billed runs (max_cold_runs)" in str(o.reason) for o in skipped)
    assert (progress.cold_runs_started, progress.max_cold_runs) == (7, 7)


async def test_cached_answers_do_not_count() -> None:
    """Cached domains first (one at a time, so in order), a cap of 1: every cached
    answer gives its place back; the first new domain takes it."""
    sim, fresh, known = sim_of(new=3, cached=5)
    async with virtual_time(), simulated_client(sim) as kepler:
        batch = kepler.score_many(known + fresh, max_cold_runs=1, max_outstanding=1)
        outcomes = await batch.collect()
    assert sim.counters.total_cold_runs == 1
    assert [o.status for o in outcomes].count("scored") == 6
    assert batch.progress().cold_runs_started == 1


async def test_a_submit_in_doubt_counts_as_billed() -> None:
    sim, fresh, _ = sim_of(new=5)
    # The first POST starts a run, and its answer is lost.
    sim.add_fault("malformed", path="/v1/score", after_processing=True, times=1)
    async with virtual_time(), simulated_client(sim) as kepler:
        batch = kepler.score_many(fresh, max_cold_runs=2, max_outstanding=1)
        outcomes = await batch.collect()
    assert sim.counters.total_cold_runs == 2  # the one in doubt, and one more
    assert [o.status for o in outcomes].count("not_attempted") == 3
    assert batch.progress().cold_runs_started == 2
    assert any(isinstance(o.error, ka.SubmitUncertain) for o in outcomes)


async def test_a_cap_of_zero_sends_nothing() -> None:
    sim, fresh, known = sim_of(new=2, cached=2)
    async with simulated_client(sim) as kepler:
        outcomes = await kepler.score_many(known + fresh, max_cold_runs=0).collect()
    assert {o.status for o in outcomes} == {"not_attempted"}
    assert sum(sim.counters.requests.values()) == 0


@pytest.mark.parametrize("cap", [-1, 1.5, True, "3"])
async def test_a_bad_cap_is_refused(cap: object) -> None:
    sim, fresh, _ = sim_of(new=1)
    async with simulated_client(sim) as kepler:
        with pytest.raises(ka.ConfigurationError, match="max_cold_runs"):
            kepler.score_many(fresh, max_cold_runs=cap)  # type: ignore[arg-type]


run_on_asyncio_and_trio(globals(), virtual_time=False)
