"""A journal that goes away ends one wait, never the client (SQLite, and any store).

Faults are injected at the store boundary of a real ``SQLiteJobStore``: while
``outage`` names an operation, that operation fails as the store reports a disk I/O
error (``JournalUnavailable``), before touching the file. Virtual time, the simulator
in-process; its counters say what was billed. What must hold, per operation:

- a claim or the write before the billed POST that fails: the input fails with
  ``JournalUnavailable`` and nothing is sent (nothing billed); once the journal is
  back, the next call submits it, once;
- a write after the POST (its job id, its outcome) that fails: the caller gets its
  result all the same, the engine goes on, and the write lands once the journal is back;
- deadlines hold while waiting on another process's claim or on a submit in doubt.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

import kepler_async as ka
from kepler_async import AsyncKepler, SQLiteJobStore
from kepler_async._engine.stores import JournalUnavailable, key_fingerprint
from kepler_async.testing import LIVE_KEY, SIM_BASE_URL, KeplerSimulator, asgi_transport
from tests.backends import VIRTUAL
from tests.bodies import SCORE

virtual_time = pytest.mark.asyncio(loop_factories=[VIRTUAL])


class FlakyStore(SQLiteJobStore):
    """A real SQLite journal whose named operations fail while ``outage`` names them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, threaded=False)
        self.outage: set[str] = set()
        self.failed: Counter[str] = Counter()

    def _fault(self, name: str) -> None:
        if name in self.outage or "all" in self.outage:
            self.failed[name] += 1
            raise JournalUnavailable(f"journal {self.path}: disk I/O error (injected)")


def _failing(name: str) -> Any:
    """``SQLiteJobStore.<name>``, failing first while the outage names it."""

    async def operation(self: FlakyStore, *args: Any, **kwargs: Any) -> Any:
        self._fault(name)
        return await getattr(SQLiteJobStore, name)(self, *args, **kwargs)

    return operation


for _name in (
    "claim",
    "record_sending",
    "record_submitted",
    "record_done",
    "record_failed",
    "forget_intent",
    "record_uncertain",
):
    setattr(FlakyStore, _name, _failing(_name))


@pytest_asyncio.fixture
async def sim() -> KeplerSimulator:
    return KeplerSimulator(
        seed=5, clock=anyio.current_time, per_key_cold_per_hour=None, failure_mix={}
    )


@pytest.fixture
def store(tmp_path: Path) -> FlakyStore:
    return FlakyStore(tmp_path / "journal.db")


def client(sim: KeplerSimulator, store: SQLiteJobStore, **kwargs: Any) -> AsyncKepler:
    return AsyncKepler(
        LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim), journal=store, **kwargs
    )


async def state_of(store: SQLiteJobStore, domain: str) -> str | None:
    entry = await store.get("kepler", domain)
    return None if entry is None else entry.state


@virtual_time
async def test_an_outcome_that_cannot_be_written_still_reaches_the_caller(
    sim: KeplerSimulator, store: FlakyStore
) -> None:
    async with client(sim, store) as kepler:
        store.outage = {"record_done"}
        assert (await kepler.score("stripe.com")).domain == "stripe.com"
        await anyio.sleep(0.1)  # the outcome is written after the caller has it
        assert store.failed["record_done"] >= 1
        # The engine goes on: another cold job scores (its outcome waits too).
        assert (await kepler.score("plaid.com")).domain == "plaid.com"
        assert await state_of(store, "stripe.com") == "pending"
        store.outage = set()  # the journal is back: the backlog catches up
        await anyio.sleep(30)
        assert await state_of(store, "stripe.com") == "done"
        assert await state_of(store, "plaid.com") == "done"
    assert sim.counters.cold_runs_billed == {"stripe.com": 1, "plaid.com": 1}


@virtual_time
@pytest.mark.parametrize("operation", ["claim", "record_sending"])
async def test_a_submit_the_journal_cannot_record_is_not_sent(
    sim: KeplerSimulator, store: FlakyStore, operation: str
) -> None:
    async with client(sim, store) as kepler:
        store.outage = {operation, "forget_intent"}
        with pytest.raises(ka.JournalUnavailable):
            await kepler.score("stripe.com")
        assert sim.counters.cold_runs_billed["stripe.com"] == 0
        assert sim.counters.requests["POST /v1/score"] == 0
        # Back: the claim left behind is dropped before the key is claimed again, so
        # the next call submits at once (not after the 120 s lease), and once.
        store.outage = set()
        started = anyio.current_time()
        with anyio.fail_after(100):
            await kepler.score("stripe.com")
        assert sim.counters.cold_runs_billed["stripe.com"] == 1
        assert anyio.current_time() - started < 100
        await anyio.sleep(0.1)
        assert await state_of(store, "stripe.com") == "done"


@virtual_time
async def test_a_job_id_that_cannot_be_written_is_not_lost(
    sim: KeplerSimulator, store: FlakyStore
) -> None:
    async with client(sim, store) as kepler:
        store.outage = {"record_submitted", "record_done"}
        job = await kepler.submit("stripe.com")
        assert job.job_id is not None
        assert await state_of(store, "stripe.com") == "uncertain"  # in doubt, not lost
        store.outage = set()
        await anyio.sleep(6)  # the backlog writes the job id
        entry = await store.get("kepler", "stripe.com")
        assert entry is not None
        assert (entry.state, entry.job_id) == ("pending", job.job_id)
        assert (await job).domain == "stripe.com"
        await anyio.sleep(6)
        assert await state_of(store, "stripe.com") == "done"
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


@virtual_time
async def test_a_batch_through_an_outage_has_one_outcome_per_input(
    sim: KeplerSimulator, store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """300 domains; the journal is away for 60 s in the middle of the batch."""
    domains = [f"d{i}.com" for i in range(300)]

    async def outage() -> None:
        await anyio.sleep(40)
        store.outage = {"all"}
        await anyio.sleep(60)
        store.outage = set()

    caplog.set_level(logging.ERROR, logger="kepler_async")
    async with client(sim, store) as kepler, anyio.create_task_group() as tg:
        tg.start_soon(outage)
        outcomes = [o async for o in kepler.score_many(domains, max_outstanding=50)]
        # The engine is alive after it: a new domain scores.
        assert (await kepler.score("after.com")).domain == "after.com"
    assert sorted(o.index for o in outcomes) == list(range(300))
    errors = Counter(type(o.error).__name__ for o in outcomes if o.error is not None)
    assert set(errors) <= {"JournalUnavailable"}, errors
    assert errors["JournalUnavailable"] > 0
    assert store.failed  # the outage was met
    assert max(sim.counters.cold_runs_billed.values()) == 1
    # Nothing the caller needs to see was logged as an error (outages are warnings).
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    # Run it again: what failed is submitted now, what scored is served from the
    # journal; no domain is billed twice.
    async with client(sim, store) as kepler:
        again = [o async for o in kepler.score_many(domains, max_outstanding=50)]
    assert all(o.ok for o in again), Counter(type(o.error).__name__ for o in again)
    assert max(sim.counters.cold_runs_billed.values()) == 1
    assert sum(sim.counters.cold_runs_billed.values()) == 301


async def ends_at_the_deadline(kepler: AsyncKepler) -> pytest.ExceptionInfo[ka.DeadlineExceeded]:
    """``score("stripe.com", deadline=5)`` raises ``DeadlineExceeded`` at 5 s."""
    async with kepler:
        started = anyio.current_time()
        with pytest.raises(ka.DeadlineExceeded) as info:
            await kepler.score("stripe.com", deadline=5)
        waited = anyio.current_time() - started
    assert 4.5 <= waited <= 5.5
    return info


@virtual_time
async def test_waiting_on_another_processs_claim_ends_at_the_deadline(
    sim: KeplerSimulator, tmp_path: Path
) -> None:
    """Another machine claimed the key (only its 120 s lease can tell it is gone): a
    call with a 5 s deadline ends at 5 s, sends nothing, and leaves the claim alone."""
    path = tmp_path / "journal.db"
    elsewhere = SQLiteJobStore(path, threaded=False)
    elsewhere.owner = "another-machine/4242/cafe0001"
    await elsewhere.bind(base_url=SIM_BASE_URL, fingerprint=key_fingerprint(LIVE_KEY))
    claimed, _ = await elsewhere.claim("kepler", "stripe.com", subject="stripe.com", lease=120)
    assert claimed
    info = await ends_at_the_deadline(client(sim, SQLiteJobStore(path, threaded=False)))
    assert isinstance(info.value, ka.SubmitHeldElsewhere)
    assert info.value.owner == "another-machine/4242/cafe0001"
    assert info.value.domain == "stripe.com"
    assert "another-machine/4242/cafe0001" in str(info.value)
    assert sim.counters.requests["POST /v1/score"] == 0
    entry = await elsewhere.get("kepler", "stripe.com")
    assert entry is not None
    assert (entry.state, entry.owner) == ("claimed", "another-machine/4242/cafe0001")
    # The claimant settles it later; a later call is served from the journal.
    await elsewhere.record_done("kepler", "stripe.com", None, {**SCORE, "domain": "stripe.com"})
    async with client(sim, SQLiteJobStore(path, threaded=False)) as kepler:
        assert (await kepler.score("stripe.com", deadline=5)).domain == "stripe.com"
    assert sim.counters.requests["POST /v1/score"] == 0


@virtual_time
async def test_waiting_on_a_submit_in_doubt_ends_at_the_deadline(
    sim: KeplerSimulator, tmp_path: Path
) -> None:
    """An earlier POST's answer never came (its process died): Kepler looks for its
    score for up to the longest run; a call with a 5 s deadline ends at 5 s."""
    path = tmp_path / "journal.db"
    earlier = SQLiteJobStore(path, threaded=False)
    await earlier.bind(base_url=SIM_BASE_URL, fingerprint=key_fingerprint(LIVE_KEY))
    await earlier.record_uncertain("kepler", "stripe.com", subject="stripe.com")
    info = await ends_at_the_deadline(client(sim, SQLiteJobStore(path, threaded=False)))
    assert "in doubt" in str(info.value)
    assert sim.counters.requests["POST /v1/score"] == 0
    assert await state_of(earlier, "stripe.com") == "uncertain"


# --- SQLite's own failures: a full disk, a lock held too long ----------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB filesystem of its own (tmpfs; needs root, as CI has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@virtual_time
async def test_a_full_disk_fails_inputs_not_the_client(
    sim: KeplerSimulator, small_disk: Path
) -> None:
    store = SQLiteJobStore(small_disk / "journal.db", threaded=False)
    domains = [f"disk{i}.com" for i in range(200)]
    async with client(sim, store) as kepler:
        filler = small_disk / "filler"
        # The disk fills up, to the last page.
        with filler.open("wb", buffering=0) as sink, contextlib.suppress(OSError):
            while True:
                sink.write(b"\0" * 4096)
        outcomes = [o async for o in kepler.score_many(domains, max_outstanding=50)]
        errors = Counter(type(o.error).__name__ for o in outcomes if o.error is not None)
        assert sorted(o.index for o in outcomes) == list(range(200))
        assert set(errors) <= {"JournalFull"}, errors
        assert errors["JournalFull"] > 0
        filler.unlink()  # room again: the same client goes on
        assert (await kepler.score("room.com")).domain == "room.com"
    async with client(sim, SQLiteJobStore(small_disk / "journal.db", threaded=False)) as kepler:
        again = [o async for o in kepler.score_many(domains, max_outstanding=50)]
    assert all(o.ok for o in again), Counter(type(o.error).__name__ for o in again)
    assert max(sim.counters.cold_runs_billed.values()) == 1


@pytest.mark.asyncio
async def test_a_journal_locked_too_long_fails_the_input_and_sends_nothing(
    tmp_path: Path,
) -> None:
    """Another process holds the SQLite file's write lock past the busy timeout (5 s,
    real time): the submit fails with ``JournalLocked``; once the lock is gone, the
    same client submits it, once."""
    sim = KeplerSimulator(seed=5, time_scale=0.01, failure_mix={}, per_key_cold_per_hour=None)
    path = tmp_path / "journal.db"
    from kepler_async._kepler._dialect import KEPLER_POLICY

    kepler = client(sim, SQLiteJobStore(path), poll_policy=KEPLER_POLICY.scaled(0.01))
    async with kepler:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(ka.JournalLocked):
                await kepler.score("locked.com")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert sim.counters.requests["POST /v1/score"] == 0
        assert (await kepler.score("locked.com")).domain == "locked.com"
    assert sim.counters.cold_runs_billed["locked.com"] == 1
