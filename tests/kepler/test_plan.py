"""``AsyncKepler.plan`` and ``kepler-async plan``: what a batch would cost, with nothing
billed sent (the simulator counts every request)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

import kepler_async as ka
from kepler_async import SQLiteJobStore
from kepler_async.cli import main
from kepler_async.testing import KeplerSimulator, create_app, serve, simulated_client
from tests.backends import run_on_asyncio_and_trio

STARTER = "ki_live_starter-plan-key-for-plans"


def starter_sim() -> KeplerSimulator:
    # 1,000x fast, real time: the journal's SQLite writes run in threads, which
    # virtual time would not wait for.
    sim = KeplerSimulator(seed=12, time_scale=0.001, failure_mix={}, per_key_cold_per_hour=None)
    sim.add_key(STARTER, plan="starter")  # 50 cold runs a month, 24 h freshness
    return sim


async def test_a_plan_reads_the_journal_and_usage_and_bills_nothing(tmp_path: Path) -> None:
    sim = starter_sim()
    journal = SQLiteJobStore(tmp_path / "run.db")
    async with simulated_client(sim, STARTER, journal=journal) as kepler:
        await kepler.score("plaid.com")  # a cold run, journaled
        for _ in range(1000):  # its result reaches the journal after the caller's
            entry = await journal.get("kepler", "plaid.com")
            if entry is not None and entry.state == "done":
                break
            await anyio.sleep(0.01)
        sim.seed_score("stripe.com", age=60)  # fresh on the server, not journaled
        before = dict(sim.counters.requests)
        plan = await kepler.plan(
            ["plaid.com", "PLAID.com", "stripe.com", "ramp.com", "not a domain", "brex.com"]
        )
        after = dict(sim.counters.requests)
        checked = await kepler.plan(["plaid.com", "stripe.com", "ramp.com"], check_server=True)
    spent = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: v for k, v in spent.items() if v} == {"GET /v1/usage": 1}
    assert isinstance(plan, ka.BatchPlan)
    assert (plan.inputs, plan.duplicates) == (6, 1)
    assert plan.domains == ["plaid.com", "stripe.com", "ramp.com", "brex.com"]
    assert [(i, raw) for i, raw, _ in plan.invalid] == [(4, "not a domain")]
    assert set(plan.in_journal) == {"plaid.com"}
    assert plan.cold_at_most == 3
    assert plan.cold_left_this_month == 49
    assert plan.freshness_window == 24 * 3600
    assert plan.fresh_on_server is None
    assert checked.fresh_on_server == ["stripe.com"]  # ramp.com: never scored
    assert checked.cold_at_most == 1
    assert sim.counters.total_cold_runs == 1  # the one score above, nothing else


async def test_a_plan_of_a_large_batch_says_the_hourly_limit_stretches_it() -> None:
    sim = starter_sim()
    async with simulated_client(sim, STARTER) as kepler:
        plan = await kepler.plan([f"company-{n}.com" for n in range(450)])
    assert plan.cold_at_most == 450
    assert plan.hours_at_least == 2  # 200 an hour: three hours' worth
    assert sum(sim.counters.requests.values()) == 1  # GET /v1/usage


def test_the_plan_command_in_a_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEPLER_API_KEY", STARTER)
    sim = starter_sim()
    sim.seed_score("stripe.com", age=60)
    domains = tmp_path / "domains.txt"
    domains.write_text("stripe.com\nplaid.com\nPLAID.COM\n# a comment\nhttp://bad/x\nramp.com\n")
    journal = str(tmp_path / "run.db")
    runner = CliRunner()
    with serve(create_app(sim)) as url:
        scored = runner.invoke(
            main,
            ["score", "stripe.com", "--base-url", url, "--journal", journal, "-q"],
        )
        assert scored.exit_code == 0, scored.output
        before = dict(sim.counters.requests)
        text = runner.invoke(
            main, ["plan", "-f", str(domains), "--base-url", url, "--journal", journal]
        )
        as_json = runner.invoke(
            main, ["plan", "-f", str(domains), "--base-url", url, "--journal", journal, "--json"]
        )
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == "inputs: 5 (3 distinct domains, 1 repeated, 1 invalid)"
    assert lines[1].startswith(f"  invalid, {domains}:5: 'http://bad/x'")
    assert lines[2].startswith("in the journal: 1 scored already")
    assert "billed cold runs at most: 2" in lines
    assert any("50 cold runs left" in line for line in lines)
    assert "freshness window: 24 h (a score younger is served cached)" in lines
    assert lines[-1] == "nothing billed was sent"
    record = json.loads(as_json.stdout)
    assert (record["cold_at_most"], record["cold_left_this_month"]) == (2, 50)
    assert list(record["in_journal"]) == ["stripe.com"]
    posts = sim.counters.requests["POST /v1/score"] - before.get("POST /v1/score", 0)
    assert posts == 0
    assert STARTER not in text.output + as_json.output


run_on_asyncio_and_trio(globals(), virtual_time=False)
