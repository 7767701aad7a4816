"""``cache_max_age``: a score the journal holds, made within that age, is served from
it without a request, in this process and in another one sharing the journal (SQLite
and PostgreSQL); an older one is asked for again; ``force_fresh`` always asks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kepler_async as ka
from kepler_async import AsyncKepler, SQLiteJobStore
from kepler_async.testing import LIVE_KEY, KeplerSimulator, create_app, serve, simulated_client
from tests.conftest import StoreFactory

GROWTH = "ki_live_growth-plan-key-for-cache"  # its API serves scores up to 6 h old


def sim_with_old_score() -> KeplerSimulator:
    sim = KeplerSimulator(seed=13, failure_mix={}, per_key_cold_per_hour=None)
    sim.add_key(GROWTH, plan="growth")
    sim.seed_score("stripe.com", age=7200)  # scored two hours ago: the API serves it
    return sim


def requests_of(sim: KeplerSimulator) -> int:
    return sum(sim.counters.requests.values())


@pytest.mark.asyncio
async def test_a_young_enough_score_is_served_from_the_journal(
    make_store: StoreFactory,
) -> None:
    sim = sim_with_old_score()
    async with simulated_client(sim, GROWTH, journal=make_store()) as first:
        await first.score("stripe.com")  # POST -> 200: the two-hour-old score, journaled
        await first.aclose()
    before = requests_of(sim)
    async with simulated_client(
        sim, GROWTH, journal=make_store(), cache_max_age=3 * 3600
    ) as second:
        score = await second.score("stripe.com")
        assert second.statistics().from_journal == 1
    assert requests_of(sim) == before  # not one request
    assert score.domain == "stripe.com"


@pytest.mark.asyncio
async def test_an_older_score_is_asked_for_again(make_store: StoreFactory) -> None:
    sim = sim_with_old_score()
    async with simulated_client(sim, GROWTH, journal=make_store()) as first:
        await first.score("stripe.com")
    posts = sim.counters.requests["POST /v1/score"]
    async with simulated_client(sim, GROWTH, journal=make_store(), cache_max_age=3600) as second:
        await second.score("stripe.com")  # two hours old > one hour: ask the API
        assert second.statistics().from_journal == 0
        await second.score("stripe.com")  # journaled again now, still two hours old
    assert sim.counters.requests["POST /v1/score"] == posts + 2
    assert sim.counters.total_cold_runs == 0  # the API served its own cached score


@pytest.mark.asyncio
async def test_force_fresh_always_asks_the_api(tmp_path: Path) -> None:
    sim = KeplerSimulator(seed=13, time_scale=0.001, failure_mix={})
    sim.seed_score("stripe.com", age=60)
    store = SQLiteJobStore(tmp_path / "journal.db")
    async with simulated_client(sim, LIVE_KEY, journal=store, cache_max_age=86400) as kepler:
        await kepler.score("stripe.com")
        await kepler.score("stripe.com")  # from the journal
        fresh = await kepler.score("stripe.com", force_fresh=True)  # a billed run
    assert sim.counters.requests["POST /v1/score"] == 2
    assert sim.counters.total_cold_runs == 1
    assert fresh.domain == "stripe.com"
    await store.aclose()


def test_cache_max_age_needs_a_journal_and_seconds(tmp_path: Path) -> None:
    with pytest.raises(ka.ConfigurationError, match="pass journal="):
        AsyncKepler(LIVE_KEY, cache_max_age=60)
    with pytest.raises(ka.ConfigurationError, match="cache_max_age"):
        AsyncKepler(LIVE_KEY, journal=SQLiteJobStore(tmp_path / "j.db"), cache_max_age=-1)


OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from kepler_async import AsyncKepler, SQLiteJobStore

    async def main(url, path):
        async with AsyncKepler(
            base_url=url, allow_plain_http=True, journal=SQLiteJobStore(path),
            cache_max_age=3 * 3600,
        ) as kepler:
            score = await kepler.score("stripe.com")
            print(json.dumps({"domain": score.domain,
                              "from_journal": kepler.statistics().from_journal}))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_another_process_gets_the_score_with_no_request(tmp_path: Path) -> None:
    sim = sim_with_old_score()
    path = tmp_path / "journal.db"

    def another_process(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", OTHER_PROCESS, url, str(path)],
            env={**os.environ, "KEPLER_API_KEY": GROWTH},
            capture_output=True,
            text=True,
            timeout=60,
        )

    with serve(create_app(sim)) as url:
        here = another_process(url)
        assert here.returncode == 0, here.stderr
        before = requests_of(sim)
        there = another_process(url)
    assert there.returncode == 0, there.stderr
    assert '"from_journal": 0' in here.stdout
    assert '"from_journal": 1' in there.stdout
    assert requests_of(sim) == before  # the second process sent nothing
