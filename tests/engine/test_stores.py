"""The two journal stores, one behaviour: SQLite (one machine) and PostgreSQL (several),
the same tests for both. The PostgreSQL server is real, started here (skipped, with the
reason, only where none can be started). Real time: a database is real I/O."""

from __future__ import annotations

import time

import anyio
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler, JobStore, PostgresJobStore
from kepler_async._kepler._dialect import KEPLER_POLICY
from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport
from tests.conftest import StoreFactory


async def bound(store: JobStore) -> JobStore:
    await store.bind(base_url="http://kepler.simulator.test", fingerprint="f1")
    return store


@pytest.mark.asyncio
async def test_records_round_trip(make_store: StoreFactory) -> None:
    store = await bound(make_store())
    await store.record_submitted("kepler", "a.com", "job-1", subject="a.com")
    entry = await store.get("kepler", "a.com")
    assert entry is not None
    assert (entry.state, entry.job_id, entry.subject) == ("pending", "job-1", "a.com")
    await store.record_done("kepler", "a.com", "job-1", {"score": 70})
    entry = await store.get("kepler", "a.com")
    assert entry is not None
    assert (entry.state, entry.result) == ("done", {"score": 70})
    failure = ka.PipelineTimedOut("timed out", job_id="job-2", subject="b.com", failure_reason="x")
    await store.record_failed("kepler", "b.com", "job-2", failure)
    entry = await store.get("kepler", "b.com")
    assert entry is not None
    assert (entry.state, entry.retryable, entry.error_class) == ("failed", True, "PipelineTimedOut")
    assert await store.get("kepler", "nothing.com") is None
    await store.aclose()


@pytest.mark.asyncio
async def test_a_journal_of_another_api_or_key_is_refused(make_store: StoreFactory) -> None:
    await bound(make_store())
    with pytest.raises(ka.JournalError, match="another API key"):
        await make_store().bind(base_url="http://kepler.simulator.test", fingerprint="f2")
    with pytest.raises(ka.JournalError, match="was made for"):
        await make_store().bind(base_url="https://elsewhere.test", fingerprint="f1")


@pytest.mark.asyncio
async def test_claims_are_atomic_and_held_by_one_owner(make_store: StoreFactory) -> None:
    one, two = await bound(make_store()), await bound(make_store())
    claimed, _ = await one.claim("kepler", "a.com", subject="a.com", lease=60)
    assert claimed
    claimed, entry = await two.claim("kepler", "a.com", subject="a.com", lease=60)
    assert not claimed
    assert entry is not None
    assert entry.owner == one.owner
    assert entry.claim_is_live(time.time())
    # even taking over is refused while the claim lives
    claimed, _ = await two.claim("kepler", "a.com", subject="a.com", lease=60, take_over=True)
    assert not claimed
    await one.forget_intent("kepler", "a.com")  # refused for sure: free again
    claimed, _ = await two.claim("kepler", "a.com", subject="a.com", lease=60)
    assert claimed


@pytest.mark.asyncio
async def test_an_expired_claim_that_sent_nothing_is_simply_free(
    make_store: StoreFactory,
) -> None:
    one, two = await bound(make_store()), await bound(make_store())
    assert (await one.claim("kepler", "a.com", subject="a.com", lease=0.2))[0]
    await anyio.sleep(0.3)
    claimed, entry = await two.claim("kepler", "a.com", subject="a.com", lease=60)
    assert claimed  # nothing was sent under that claim: no doubt to resolve
    assert entry is not None
    assert entry.state == "claimed"


@pytest.mark.asyncio
async def test_an_expired_claim_that_sent_its_submit_is_in_doubt(
    make_store: StoreFactory,
) -> None:
    one, two = await bound(make_store()), await bound(make_store())
    assert (await one.claim("kepler", "a.com", subject="a.com", lease=0.2))[0]
    await one.record_sending("kepler", "a.com")
    await anyio.sleep(0.3)
    claimed, entry = await two.claim("kepler", "a.com", subject="a.com", lease=60)
    assert not claimed
    assert entry is not None
    assert entry.state == "uncertain"
    assert not entry.claim_is_live(time.time())  # in doubt: the API's rule decides
    claimed, _ = await two.claim("kepler", "a.com", subject="a.com", lease=60, take_over=True)
    assert claimed


@pytest.mark.asyncio
async def test_concurrent_claims_elect_exactly_one(make_store: StoreFactory) -> None:
    stores = [await bound(make_store()) for _ in range(8)]
    results: list[bool] = []

    async def claim(store: JobStore) -> None:
        results.append((await store.claim("kepler", "race.com", subject=None, lease=60))[0])

    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(claim, store)
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.asyncio
async def test_two_clients_on_one_store_submit_a_domain_once(make_store: StoreFactory) -> None:
    """Two clients, each with its own store on the journal (two processes, or two
    machines on one PostgreSQL): one cold run, one job, two scores."""
    sim = KeplerSimulator(time_scale=0.01, failure_mix={})
    policy = KEPLER_POLICY.scaled(0.01)

    def client() -> AsyncKepler:
        return AsyncKepler(
            LIVE_KEY,
            base_url=SIM_BASE_URL,
            transport=asgi_transport(sim),
            poll_policy=policy,
            journal=make_store(),
        )

    scores: list[ka.Score] = []
    async with client() as first, client() as second:

        async def score(kepler: AsyncKepler) -> None:
            scores.append(await kepler.score("stripe.com"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(score, first)
            tg.start_soon(score, second)
    assert len(scores) == 2
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


@pytest.mark.asyncio
async def test_an_unreachable_database_names_host_and_port_never_the_password() -> None:
    """Refused is an outage (retry later), not a configuration error."""
    store = PostgresJobStore("postgresql://app:hunter2@127.0.0.1:9/jobs")
    kepler = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, journal=store)
    with pytest.raises(ka.JournalUnavailable) as info:
        async with kepler:
            pass
    assert not isinstance(info.value, ka.ConfigurationError)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert "127.0.0.1:9" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(store)


@pytest.mark.asyncio
async def test_a_wrong_database_is_a_configuration_error(postgres_dsn: str) -> None:
    store = PostgresJobStore(postgres_dsn.rsplit("/", 1)[0] + "/no_such_database")
    with pytest.raises(ka.JournalError) as info:
        await bound(store)
    assert "no_such_database" in str(info.value)
    assert type(info.value.__cause__).__name__ == "InvalidCatalogNameError"
    await store.aclose()


@pytest.mark.asyncio
async def test_many_processes_opening_a_new_journal_at_once(make_store: StoreFactory) -> None:
    """Workers start together: creating the journal's tables must not race."""
    stores = [make_store() for _ in range(8)]
    async with anyio.create_task_group() as tg:
        for store in stores:
            tg.start_soon(bound, store)
