"""Following the engine from outside: ``on_event`` hooks, a batch's ``progress()`` and
progress bar, and the ``KEPLER_ASYNC_LOG`` switch; on asyncio and trio, cold jobs on
virtual time."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import kepler_async as ka
from kepler_async.testing import LIVE_KEY, KeplerSimulator, simulated_client, virtual_time
from tests.backends import run_on_asyncio_and_trio


def sim_with(cold: dict[str, float], cached: tuple[str, ...] = ()) -> KeplerSimulator:
    sim = KeplerSimulator(seed=5, failure_mix={}, per_key_cold_per_hour=None)
    for domain, seconds in cold.items():
        sim.script(domain, duration=seconds)
    for domain in cached:
        sim.seed_score(domain, age=60)
    return sim


async def test_a_cold_score_tells_its_hook_each_step() -> None:
    sim = sim_with({"plaid.com": 45})
    sim.add_fault("status", path="/v1/jobs", status=429, retry_after=3, times=1)
    events: list[ka.JobEvent] = []
    async with virtual_time(), simulated_client(sim, on_event=events.append) as kepler:
        await kepler.score("plaid.com")
    kinds = [event.kind for event in events]
    job_id = next(iter(sim.jobs))
    assert kinds[0] == "submitted"
    assert kinds[-1] == "finished"
    assert "throttled" in kinds
    assert kinds.count("polled") >= 1
    assert events[0] == ka.JobEvent(
        kind="submitted", api="kepler", job_id=job_id, subject="plaid.com"
    )
    [throttled] = [e for e in events if e.kind == "throttled"]
    assert throttled.retry_after == 3
    for polled in (e for e in events if e.kind == "polled"):
        assert polled.job_id == job_id
        assert polled.status in ("pending", "unreadable")
        assert polled.next_poll_in is not None
        assert polled.next_poll_in > 0
    assert events[-1].status == "succeeded"
    assert events[-1].error is None


async def test_a_hook_that_raises_costs_nothing_but_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: ka.JobEvent) -> None:
        raise RuntimeError("the hook's own bug")

    sim = sim_with({"plaid.com": 30})
    with caplog.at_level(logging.ERROR, logger="kepler_async"):
        async with virtual_time(), simulated_client(sim, on_event=broken) as kepler:
            score = await kepler.score("plaid.com")
    assert score.domain == "plaid.com"
    assert "the on_event hook raised" in caplog.text


async def test_a_batch_says_where_it_stands_as_it_goes() -> None:
    sim = sim_with({"a.com": 30, "b.com": 50, "c.com": 70}, cached=("d.com", "e.com"))
    seen: list[ka.BatchProgress] = []
    async with virtual_time(), simulated_client(sim) as kepler:
        batch = kepler.score_many(["a.com", "b.com", "c.com", "d.com", "e.com", "bad domain"])
        before = batch.progress()
        async for _ in batch:
            seen.append(batch.progress())
    assert (before.total, before.finished, before.pending, before.eta) == (6, 0, 6, None)
    assert [p.finished for p in seen] == [1, 2, 3, 4, 5, 6]
    assert [p.pending for p in seen] == [5, 4, 3, 2, 1, 0]
    last = seen[-1]
    assert (last.done, last.failed, last.not_attempted) == (5, 1, 0)
    assert last.cold_runs_started == 3
    assert last.eta == 0.0
    assert all(p.eta is not None for p in seen)
    assert last.elapsed >= 70  # virtual seconds: the longest run


async def test_a_batch_over_a_generator_knows_its_total_once_read() -> None:
    sim = sim_with({}, cached=("a.com", "b.com"))

    def domains() -> Iterator[str]:
        yield "a.com"
        yield "b.com"

    async with simulated_client(sim) as kepler:
        batch = kepler.score_many(domains())
        assert batch.progress().total is None
        outcomes = await batch.collect()
        assert batch.progress().total == 2
    assert sorted(str(o.domain) for o in outcomes) == ["a.com", "b.com"]


async def test_collect_shows_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    sim = sim_with({"a.com": 30}, cached=("b.com", "c.com"))
    async with virtual_time(), simulated_client(sim) as kepler:
        outcomes = await kepler.score_many(["a.com", "b.com", "c.com"]).collect(progress=True)
    assert len(outcomes) == 3
    err = capsys.readouterr().err
    assert "3/3" in err
    assert "cold_runs=1" in err


async def test_a_progress_bar_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    sim = sim_with({}, cached=("b.com",))
    async with simulated_client(sim) as kepler:
        with pytest.raises(ImportError, match=r"kepler-async\[progress\]"):
            await kepler.score_many(["b.com"]).collect(progress=True)


SCRIPT = textwrap.dedent(
    """
    import asyncio
    from kepler_async.testing import KeplerSimulator, simulated_client

    async def main():
        sim = KeplerSimulator(seed=1, failure_mix={}, time_scale=0.002)
        sim.script("plaid.com", duration=60)
        async with simulated_client(sim) as kepler:
            await kepler.score("plaid.com")

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("level", ["debug", "info", ""])
def test_kepler_async_log_sends_the_librarys_lines_to_stderr(level: str) -> None:
    env = {**os.environ, "KEPLER_ASYNC_LOG": level}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    if not level:
        assert lines == []
        return
    assert any(" INFO kepler job " in line and "submitted (plaid.com)" in line for line in lines)
    assert any(line.endswith("(plaid.com) done") for line in lines)
    requests = [line for line in lines if " DEBUG " in line and " -> " in line]
    if level == "info":
        assert requests == []
    else:
        assert any("POST /v1/score -> 202" in line for line in requests)
        assert any("GET /v1/jobs/{job_id} -> 200" in line for line in requests)
        assert any("pending; next poll in" in line for line in lines)
    assert LIVE_KEY not in run.stderr


run_on_asyncio_and_trio(globals(), virtual_time=False)
