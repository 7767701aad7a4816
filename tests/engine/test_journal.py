"""The journal: a batch that stops (or is killed) and runs again never pays twice."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

import kepler_async as ka
from kepler_async import AsyncKepler, SQLiteJobStore
from kepler_async.testing import (
    LIVE_KEY,
    OTHER_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    asgi_transport,
)
from tests.backends import VIRTUAL

virtual_time = pytest.mark.asyncio(loop_factories=[VIRTUAL])


@pytest_asyncio.fixture
async def sim() -> KeplerSimulator:
    return KeplerSimulator(seed=9, clock=anyio.current_time, per_key_cold_per_hour=None)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


def client(sim: KeplerSimulator, path: Path, key: str = LIVE_KEY, **kwargs: object) -> AsyncKepler:
    return AsyncKepler(
        key,
        base_url=SIM_BASE_URL,
        transport=asgi_transport(sim),
        journal=SQLiteJobStore(path, threaded=False),
        **kwargs,  # type: ignore[arg-type]
    )


async def outcomes(kepler: AsyncKepler, domains: list[str]) -> list[ka.ScoreOutcome]:
    return [o async for o in kepler.score_many(domains)]


@virtual_time
async def test_a_second_run_is_served_from_the_journal(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    sim.script("broken.io", failure_reason="sfn_failed")
    domains = ["stripe.com", "plaid.com", "broken.io"]
    async with client(sim, journal_path) as kepler:
        first = {o.domain: o for o in await outcomes(kepler, domains)}
    requests = sum(sim.counters.requests.values())
    async with client(sim, journal_path) as kepler:
        second = {o.domain: o for o in await outcomes(kepler, domains)}
    assert sum(sim.counters.requests.values()) == requests  # not one request
    assert second["stripe.com"].score == first["stripe.com"].score
    assert isinstance(second["broken.io"].error, ka.PipelineFailed)
    assert second["broken.io"].job_id == first["broken.io"].job_id


@virtual_time
async def test_pending_jobs_are_resumed_not_posted_again(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    for i in range(20):
        sim.script(f"d{i}.com", duration=60)
    domains = [f"d{i}.com" for i in range(20)]
    async with client(sim, journal_path) as kepler:
        jobs = [await kepler.submit(d) for d in domains]
    # The client closed with every job pending (as a crash would leave them).
    assert all(isinstance(job.exception(), ka.ClientClosed) for job in jobs)
    entries = await SQLiteJobStore(journal_path, threaded=False).entries()
    assert {e.state for e in entries} == {"pending"}
    assert {e.job_id for e in entries} == {job.job_id for job in jobs}
    async with client(sim, journal_path) as kepler:
        done = await outcomes(kepler, domains)
    assert {o.status for o in done} == {"scored"}
    assert sim.counters.requests["POST /v1/score"] == 20
    assert set(sim.counters.cold_runs_billed.values()) == {1}


@virtual_time
async def test_a_retryable_failure_is_submitted_again(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    sim.script("flaky.io", failure_reason="sfn_timed_out")
    async with client(sim, journal_path) as kepler:
        with pytest.raises(ka.PipelineTimedOut):
            await kepler.score("flaky.io")
    async with client(sim, journal_path) as kepler:
        assert (await kepler.score("flaky.io")).domain == "flaky.io"
    assert sim.counters.cold_runs_billed["flaky.io"] == 2
    entry = await SQLiteJobStore(journal_path, threaded=False).get("kepler", "flaky.io")
    assert entry is not None
    assert entry.state == "done"


@virtual_time
async def test_interrupted_batches_converge_to_one_run_per_domain(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    domains = [f"company-{i:03d}.com" for i in range(300)]
    for round_ in range(3):  # stop each run part-way, as an interrupt would
        async with client(sim, journal_path) as kepler:
            with anyio.move_on_after(40 + 10 * round_):
                await outcomes(kepler, domains)
    async with client(sim, journal_path) as kepler:
        final = await outcomes(kepler, domains)
    assert sorted(o.domain or "" for o in final) == domains
    assert Counter(o.status for o in final)["not_attempted"] == 0
    # One billed run per domain; a second only where the first ended in a retryable
    # failure (sfn_timed_out), which a journal run submits again by design.
    timed_out = {j.domain for j in sim.jobs.values() if j.failure_reason == "sfn_timed_out"}
    for domain, runs in sim.counters.cold_runs_billed.items():
        assert runs == 1 or (runs == 2 and domain in timed_out), (domain, runs)
    assert sim.counters.total_cold_runs <= len(domains) + len(timed_out)


@virtual_time
async def test_a_journal_for_another_api_or_key_is_refused(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    async with client(sim, journal_path) as kepler:
        await kepler.score("stripe.com")
    with pytest.raises(ka.JournalError, match="another API key"):  # refused on opening
        async with client(sim, journal_path, key=OTHER_KEY):
            pass
    other = AsyncKepler(
        LIVE_KEY,
        base_url="http://elsewhere.example",
        transport=asgi_transport(sim),
        journal=SQLiteJobStore(journal_path, threaded=False),
    )
    with pytest.raises(ka.JournalError, match=r"was made for 'http://kepler\.simulator\.test'"):
        async with other:
            pass
    raw = journal_path.read_bytes()
    assert LIVE_KEY.encode() not in raw  # a fingerprint, never the key


@virtual_time
async def test_a_corrupt_journal_is_refused_and_left_untouched(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    journal_path.write_bytes(b"this is not a database" * 100)
    before = journal_path.read_bytes()
    with pytest.raises(ka.JournalError, match="not a usable journal"):
        async with client(sim, journal_path):
            pass
    assert journal_path.read_bytes() == before


@virtual_time
async def test_a_journal_from_a_newer_version_is_refused(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    async with client(sim, journal_path) as kepler:
        await kepler.score("stripe.com")
    conn = sqlite3.connect(journal_path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ka.JournalError, match="newer kepler-async"):
        async with client(sim, journal_path):
            pass


@virtual_time
async def test_without_async_with_the_journal_is_checked_on_first_use(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    async with client(sim, journal_path) as kepler:
        await kepler.score("stripe.com")
    kepler = client(sim, journal_path, key=OTHER_KEY)  # notebook style
    with pytest.raises(ka.JournalError, match="another API key"):
        await kepler.score("stripe.com")
    await kepler.aclose()


def test_the_journal_repr_and_fingerprint_hide_the_key(tmp_path: Path) -> None:
    from kepler_async._engine.stores import key_fingerprint

    store = SQLiteJobStore(tmp_path / "j.db")
    assert "j.db" in repr(store)
    fingerprint = key_fingerprint(LIVE_KEY)
    assert LIVE_KEY not in fingerprint
    assert len(fingerprint) == 16


@virtual_time
async def test_the_threaded_store_round_trips(journal_path: Path) -> None:
    store = SQLiteJobStore(journal_path)  # statements on a worker thread
    await store.bind(base_url="http://x.example", fingerprint="abc")
    await store.record_submitted("kepler", "a.com", "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f")
    entry = await store.get("kepler", "a.com")
    assert entry is not None
    assert (entry.state, entry.job_id) == ("pending", "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f")
    await store.aclose()


@virtual_time
async def test_a_lost_submit_answer_is_looked_up_before_posting_again(
    sim: KeplerSimulator, journal_path: Path
) -> None:
    import httpx

    sim.script("stripe.com", duration=60)

    class LosesAnswer(httpx.AsyncBaseTransport):
        """The POST reaches the simulator (a run starts, billed), its answer is lost."""

        def __init__(self) -> None:
            self.inner = asgi_transport(sim)
            self.lost = False

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await self.inner.handle_async_request(request)
            if request.method == "POST" and not self.lost:
                self.lost = True
                raise httpx.ReadTimeout("the answer never came", request=request)
            return response

    first = AsyncKepler(
        LIVE_KEY,
        base_url=SIM_BASE_URL,
        transport=LosesAnswer(),
        journal=SQLiteJobStore(journal_path, threaded=False),
    )
    async with first:
        with pytest.raises(ka.SubmitUncertain):
            await first.score("stripe.com")
    entry = await SQLiteJobStore(journal_path, threaded=False).get("kepler", "stripe.com")
    assert entry is not None
    assert entry.state == "uncertain"
    await anyio.sleep(100)  # the run the lost POST started finishes meanwhile
    async with client(sim, journal_path) as kepler:
        score = await kepler.score("stripe.com")
    assert score.domain == "stripe.com"
    assert sim.counters.requests["POST /v1/score"] == 1  # looked up, not POSTed again
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


@virtual_time
async def test_journal_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    import stat

    path = tmp_path / "run.db"
    store = SQLiteJobStore(path, threaded=False)
    await store.bind(base_url="http://x.example", fingerprint="abc")
    await store.record_submitted("kepler", "a.com", "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f")
    files = [path, path.with_name("run.db-wal"), path.with_name("run.db-shm")]
    for file in files:
        assert file.exists(), file
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    await store.aclose()


@virtual_time
async def test_a_lock_held_too_long_is_an_error_of_its_own(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "run.db"
    store = SQLiteJobStore(path, threaded=False)
    await store.bind(base_url="http://x.example", fingerprint="abc")
    holder = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        store._open().execute("PRAGMA busy_timeout = 100")
        with pytest.raises(ka.JournalLocked) as info:
            await store.record_submitted("kepler", "a.com", "job-1")
        assert not isinstance(info.value, ValueError)  # not a configuration error
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await store.aclose()


class _MyStore:
    """A journal store of the user's own: not ours, just the ``JobStore`` methods
    (here kept in an SQLite file), noting which were called."""

    def __init__(self, path: Path) -> None:
        self._inner = SQLiteJobStore(path, threaded=False)
        self.owner = self._inner.owner
        self.calls: list[str] = []

    async def bind(self, *, base_url: str, fingerprint: str) -> None:
        await self._inner.bind(base_url=base_url, fingerprint=fingerprint)

    async def get(self, api: str, key: str) -> ka.JournalEntry | None:
        return await self._inner.get(api, key)

    async def claim(
        self, api: str, key: str, *, subject: str | None, lease: float, take_over: bool = False
    ) -> tuple[bool, ka.JournalEntry | None]:
        self.calls.append("claim")
        return await self._inner.claim(api, key, subject=subject, lease=lease, take_over=take_over)

    async def record_sending(self, api: str, key: str) -> None:
        self.calls.append("record_sending")
        await self._inner.record_sending(api, key)

    async def record_submitted(
        self, api: str, key: str, job_id: str, *, subject: str | None = None
    ) -> None:
        self.calls.append("record_submitted")
        await self._inner.record_submitted(api, key, job_id, subject=subject)

    async def record_uncertain(self, api: str, key: str, *, subject: str | None = None) -> None:
        await self._inner.record_uncertain(api, key, subject=subject)

    async def forget_intent(self, api: str, key: str) -> None:
        await self._inner.forget_intent(api, key)

    async def record_done(self, api: str, key: str, job_id: str | None, result: object) -> None:
        self.calls.append("record_done")
        await self._inner.record_done(api, key, job_id, result)

    async def record_failed(
        self, api: str, key: str, job_id: str | None, error: ka.KeplerError
    ) -> None:
        await self._inner.record_failed(api, key, job_id, error)

    async def aclose(self) -> None:
        await self._inner.aclose()


@virtual_time
async def test_any_object_with_the_jobstore_methods_is_a_journal(
    sim: KeplerSimulator, tmp_path: Path
) -> None:
    store = _MyStore(tmp_path / "mine.db")
    assert isinstance(store, ka.JobStore)
    async with AsyncKepler(
        LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim), journal=store
    ) as kepler:
        score = await kepler.score("mine.com")
        await anyio.sleep(1)  # the outcome is written from the engine's task
    assert score.domain == "mine.com"
    assert store.calls == ["claim", "record_sending", "record_submitted", "record_done"]
    with pytest.raises(ka.ConfigurationError, match="JobStore"):
        AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, journal=object())  # type: ignore[arg-type]
