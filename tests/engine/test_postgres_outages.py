"""A real PostgreSQL journal that goes away in the middle of the work, and comes back.

The server is this module's own (``postgres`` fixture: initdb + pg_ctl), so the tests
can crash it (``pg_ctl stop -m immediate``), start it again, and cut connections with
``pg_terminate_backend``. The simulator runs in-process at 100x speed (cold runs of
0.25-0.9 s); real time, since a database is real I/O. Counted in each: outcomes per
input, error types, billed cold runs per domain, and that the same client goes on.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pytest
import pytest_asyncio

import kepler_async as ka
from kepler_async import AsyncKepler, PostgresJobStore
from kepler_async._kepler._dialect import KEPLER_POLICY
from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport
from tests.postgres_server import PostgresServer

SCALE = 0.01


@pytest_asyncio.fixture
async def store(postgres: PostgresServer) -> AsyncIterator[PostgresJobStore]:
    journal = PostgresJobStore(postgres.dsn, prefix=f"o{uuid.uuid4().hex[:10]}_")
    yield journal
    await journal.aclose()


def fast_sim() -> KeplerSimulator:
    return KeplerSimulator(seed=4, time_scale=SCALE, failure_mix={}, per_key_cold_per_hour=None)


def client(sim: KeplerSimulator, store: PostgresJobStore) -> AsyncKepler:
    return AsyncKepler(
        LIVE_KEY,
        base_url=SIM_BASE_URL,
        transport=asgi_transport(sim),
        poll_policy=KEPLER_POLICY.scaled(SCALE),
        journal=store,
    )


def check_outcomes(outcomes: list[ka.ScoreOutcome], count: int) -> Counter[str]:
    assert sorted(o.index for o in outcomes) == list(range(count))  # one per input
    errors = Counter(type(o.error).__name__ for o in outcomes if o.error is not None)
    assert set(errors) <= {"JournalUnavailable"}, errors
    return errors


async def settled(store: PostgresJobStore, domains: list[str], within: float) -> Counter[str]:
    """The journal's states once the backlog has caught up (or ``within`` passed)."""
    end = anyio.current_time() + within
    while True:
        states: Counter[str] = Counter(e.state for e in await store.entries() if e.key in domains)
        if states.get("done", 0) == len(domains) or anyio.current_time() > end:
            return states
        await anyio.sleep(0.2)


@pytest.mark.asyncio
async def test_a_batch_through_a_database_crash_and_restart(
    postgres: PostgresServer, store: PostgresJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    """300 domains; 0.5 s in, the server crashes; 2 s later it is back."""
    caplog.set_level(logging.WARNING)
    sim = fast_sim()
    domains = [f"pg{i}.com" for i in range(300)]
    timeline: dict[str, float] = {}

    async def crash_and_restart() -> None:
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(postgres.stop, "immediate")
        timeline["down"] = time.monotonic()
        await anyio.sleep(2)
        await anyio.to_thread.run_sync(postgres.start)
        timeline["up"] = time.monotonic()

    async with client(sim, store) as kepler:
        async with anyio.create_task_group() as tg:
            tg.start_soon(crash_and_restart)
            outcomes = [o async for o in kepler.score_many(domains, max_outstanding=100)]
        errors = check_outcomes(outcomes, 300)
        assert "down" in timeline  # the crash happened while the batch ran
        # The same client goes on: a new domain scores, with its journal row.
        assert (await kepler.score("after-restart.com")).domain == "after-restart.com"
        scored = [o.domain for o in outcomes if o.ok and o.domain is not None]
        states = await settled(store, scored, within=20)
    assert states["done"] == len(scored), states
    assert max(sim.counters.cold_runs_billed.values()) == 1
    # asyncpg's pool no longer logs a traceback per reconnect attempt.
    assert not [r for r in caplog.records if r.name.startswith("asyncpg")]
    print(f"\n300 inputs through a crash: {len(scored)} scored, {dict(errors)}")

    # Again, after the outage: the rest is submitted, nothing is billed twice.
    async with client(sim, store) as kepler:
        again = [o async for o in kepler.score_many(domains, max_outstanding=100)]
    assert all(o.ok for o in again), Counter(type(o.error).__name__ for o in again)
    assert max(sim.counters.cold_runs_billed.values()) == 1
    assert len(sim.counters.cold_runs_billed) == 301


@pytest.mark.asyncio
async def test_connections_cut_mid_claim_and_mid_query(
    postgres: PostgresServer, store: PostgresJobStore
) -> None:
    """Every connection of the client is terminated every 40 ms while 200 domains
    are claimed, submitted and settled: typed errors only, never two runs of one."""
    import asyncpg

    sim = fast_sim()
    domains = [f"cut{i}.com" for i in range(200)]
    cuts = 0

    async def cut_connections(stop: anyio.Event) -> None:
        nonlocal cuts
        admin = await asyncpg.connect(postgres.dsn)
        try:
            while not stop.is_set():
                rows = await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
                cuts += sum(1 for row in rows if row[0])
                await anyio.sleep(0.04)
        finally:
            await admin.close()

    async with client(sim, store) as kepler:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(cut_connections, stop)
            outcomes = [o async for o in kepler.score_many(domains, max_outstanding=100)]
            stop.set()
        check_outcomes(outcomes, 200)
        assert cuts > 0
        assert (await kepler.score("after-cuts.com")).domain == "after-cuts.com"
    assert max(sim.counters.cold_runs_billed.values()) == 1


@pytest.mark.asyncio
async def test_an_outage_error_names_the_server_never_the_password(
    postgres: PostgresServer,
) -> None:
    dsn = postgres.dsn.replace("postgres@", "postgres:hunter2@")
    store = PostgresJobStore(dsn, prefix=f"o{uuid.uuid4().hex[:10]}_")
    sim = fast_sim()
    try:
        async with client(sim, store) as kepler:
            await anyio.to_thread.run_sync(postgres.stop, "immediate")
            try:
                with pytest.raises(ka.JournalUnavailable) as info:
                    await kepler.score("down.com")
            finally:
                await anyio.to_thread.run_sync(postgres.start)
            assert "127.0.0.1:" in str(info.value)
            assert "hunter2" not in str(info.value)
            assert info.value.__cause__ is not None
            assert sim.counters.requests["POST /v1/score"] == 0
            # Back: the same client and store work again, without a restart.
            with anyio.fail_after(10):
                while True:
                    try:
                        await kepler.score("down.com")
                        break
                    except ka.JournalUnavailable:
                        await anyio.sleep(0.1)
    finally:
        await store.aclose()
    assert sim.counters.cold_runs_billed["down.com"] == 1


@pytest.mark.asyncio
async def test_a_claim_held_on_another_machine_ends_the_wait_at_the_deadline(
    postgres: PostgresServer,
) -> None:
    """Two machines on one database (two stores, two owners): the other holds the claim
    of a domain with its 120 s lease; a call here with a 1.5 s deadline ends then,
    sends nothing, and leaves the claim for its owner to settle."""
    from kepler_async._engine.stores import key_fingerprint

    prefix = f"o{uuid.uuid4().hex[:10]}_"
    elsewhere = PostgresJobStore(postgres.dsn, prefix=prefix)
    elsewhere.owner = "other-machine/77/feed0002"
    here = PostgresJobStore(postgres.dsn, prefix=prefix)
    sim = fast_sim()
    try:
        await elsewhere.bind(base_url=SIM_BASE_URL, fingerprint=key_fingerprint(LIVE_KEY))
        claimed, _ = await elsewhere.claim("kepler", "held.com", subject="held.com", lease=120)
        assert claimed
        async with client(sim, here) as kepler:
            started = time.monotonic()
            with pytest.raises(ka.SubmitHeldElsewhere) as info:
                await kepler.score("held.com", deadline=1.5)
            waited = time.monotonic() - started
        assert 1.4 <= waited <= 3.0
        assert info.value.owner == "other-machine/77/feed0002"
        assert sim.counters.requests["POST /v1/score"] == 0
        entry = await elsewhere.get("kepler", "held.com")
        assert entry is not None
        assert (entry.state, entry.owner) == ("claimed", "other-machine/77/feed0002")
    finally:
        await elsewhere.aclose()
        await here.aclose()
