"""The one submit path, the same for all four APIs (parametrised, never copied).

Every test runs for Kepler, deepidv, MidLyr and ParseTx, on asyncio and trio, on fake
time, against each API's simulator behind a ``Wire`` that can hold, refuse or lose a
submit's answer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

import kepler_async as ka
from kepler_async import JobEngine, SQLiteJobStore
from tests.apis import API_NAMES, APIS, BILLED, QUOTA_SCOPED, Api, Wire, answer
from tests.backends import run_on_asyncio_and_trio


@pytest.fixture(params=API_NAMES)
def api(request: pytest.FixtureRequest) -> Api:
    return APIS[str(request.param)]


async def journal_entry(path: Path, api: Api, n: int) -> ka.JournalEntry | None:
    return await SQLiteJobStore(path, threaded=False).get(api.name, api.journal_key(n))


async def test_concurrent_identical_submits_make_one_request(api: Api) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    handles: list[ka.JobHandle[Any]] = []
    async with api.client(sim, wire) as client:

        async def one() -> None:
            handles.append(await api.submit(client, 1))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
        results = [await handle for handle in handles]
        other = await api.submit(client, 2)
        await other
    assert wire.posts == 2  # one for the ten, one for the other submission
    assert api.jobs_started(sim) == 2
    assert len(set(handles)) == 1
    assert all(result == results[0] for result in results)


async def test_a_cancelled_caller_never_loses_the_job(api: Api, tmp_path: Path) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.hold_posts = 5.0  # the caller gives up while its POST is on its way
    journal = tmp_path / "j.db"
    async with api.client(sim, wire, journal=journal) as client:
        with anyio.move_on_after(1.0) as scope:
            await api.submit(client, 1)
        assert scope.cancelled_caught
        await anyio.sleep(10)  # the POST lands, in the engine's task group
        assert client.statistics().jobs_started == 1
        entry = await journal_entry(journal, api, 1)
        assert entry is not None
        assert entry.job_id is not None  # journaled although its caller was gone
        again = await api.submit(client, 1)  # the same job, no second POST
        assert again.job_id == entry.job_id
        await again
    assert wire.posts == 1
    assert api.jobs_started(sim) == 1


async def test_each_caller_keeps_its_own_deadline(api: Api) -> None:
    sim = api.make_sim()
    sim_start = anyio.current_time()
    outcomes: dict[str, object] = {}
    async with api.client(sim) as client:

        async def wait(name: str, deadline: float) -> None:
            handle = await api.submit(client, 1, deadline)
            try:
                outcomes[name] = await handle
            except ka.DeadlineExceeded as error:
                outcomes[name] = error
            outcomes[name + "_at"] = anyio.current_time() - sim_start

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, "short", 2.0)
            tg.start_soon(wait, "long", 400.0)
    assert isinstance(outcomes["short"], ka.DeadlineExceeded)
    assert outcomes["short_at"] == pytest.approx(2.0, abs=0.05)
    assert not isinstance(outcomes["long"], BaseException)
    assert api.jobs_started(sim) == 1


async def test_the_journal_row_is_written_before_the_job_is_acted_on(
    api: Api, tmp_path: Path
) -> None:
    sim = api.make_sim()
    journal = tmp_path / "j.db"
    async with api.client(sim, journal=journal) as client:
        handle = await api.submit(client, 1)
        entry = await journal_entry(journal, api, 1)
        assert entry is not None
        assert (entry.state, entry.job_id) == ("pending", handle.job_id)
        await handle
    entry = await journal_entry(journal, api, 1)
    assert entry is not None
    assert entry.state == "done"


async def test_a_lost_answer_is_journaled_as_uncertain(api: Api, tmp_path: Path) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.lose_posts = 1
    journal = tmp_path / "j.db"
    async with api.client(sim, wire, journal=journal) as client:
        if api.name in BILLED:
            with pytest.raises(ka.SubmitUncertain):
                await api.submit(client, 1)
            entry = await journal_entry(journal, api, 1)
            assert entry is not None
            assert entry.state == "uncertain"
        else:  # an idempotency key makes the retry safe: one job all the same
            await (await api.submit(client, 1))
            assert wire.posts == 2
    assert api.jobs_started(sim) == 1


async def test_a_garbled_answer_to_a_submit_is_in_doubt(api: Api, tmp_path: Path) -> None:
    """The API took the submit (a job started) but its answer cannot be read."""
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.garble_posts = 1
    journal = tmp_path / "j.db"
    async with api.client(sim, wire, journal=journal) as client:
        if api.name in BILLED:
            with pytest.raises(ka.SubmitUncertain):
                await api.submit(client, 1)
            entry = await journal_entry(journal, api, 1)
            assert entry is not None
            assert entry.state == "uncertain"
        else:  # not paid work: an unreadable answer is a plain protocol error
            with pytest.raises(ka.ProtocolError):
                await api.submit(client, 1)
    assert api.jobs_started(sim) == 1


async def test_aclose_during_a_submit_journals_it_as_uncertain(api: Api, tmp_path: Path) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.hold_posts = 30.0
    journal = tmp_path / "j.db"
    errors: list[BaseException] = []
    async with api.client(sim, wire, journal=journal) as client:

        async def caller() -> None:
            try:
                await api.submit(client, 1)
            except ka.KeplerError as error:
                errors.append(error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await anyio.sleep(1)
            await client.aclose()
    assert [type(e) for e in errors] == [ka.SubmitUncertain]
    entry = await journal_entry(journal, api, 1)
    assert entry is not None
    assert entry.state == "uncertain"


async def test_resuming_from_the_journal_keeps_the_callers_deadline(
    api: Api, tmp_path: Path
) -> None:
    sim = api.make_sim()
    sim.duration = (300.0, 300.0)
    if api.name == "kepler":
        sim.script("d1.com", duration=300)
    wire = Wire(sim.create_app())
    journal = tmp_path / "j.db"
    async with api.client(sim, wire, journal=journal) as client:
        first = await api.submit(client, 1)
    async with api.client(sim, wire, journal=journal) as client:
        start = anyio.current_time()
        resumed = await api.submit(client, 1, 3.0)
        assert resumed.job_id == first.job_id
        with pytest.raises(ka.DeadlineExceeded):
            await resumed
        assert anyio.current_time() - start == pytest.approx(3.0, abs=0.05)
    assert wire.posts == 1


async def test_a_401_on_submit_fails_only_that_clients_jobs(api: Api) -> None:
    sim = api.make_sim()
    refused = Wire(sim.create_app())
    async with (
        JobEngine() as engine,
        api.client(sim, refused, engine=engine) as a,
        api.client(sim, engine=engine) as b,
    ):
        a_job = await api.submit(a, 1)
        b_job = await api.submit(b, 2)
        refused.refuse_posts.append(answer(401, {"error": "invalid api key"}))
        with pytest.raises(ka.AuthenticationError):
            await api.submit(a, 3)
        with pytest.raises(ka.AuthenticationError):
            await a_job
        await b_job  # another client on the same engine goes on


async def test_a_rate_429_on_submit_holds_every_request_of_the_client(api: Api) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    async with api.client(sim, wire) as client:
        await api.submit(client, 1)
        body, headers = api.rate_429
        wire.refuse_posts.append(answer(429, body, headers))
        with pytest.raises(ka.RateLimited):
            await api.submit(client, 2)
        assert client.statistics().paused_for == pytest.approx(60, abs=1)
        gets = wire.gets
        await anyio.sleep(59)
        assert wire.gets == gets  # no poll while the rate limit holds


async def test_a_quota_429_stops_submits_only(api: Api) -> None:
    if api.name not in QUOTA_SCOPED:
        pytest.skip(f"{api.name} has no 429 that limits paid work only")
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    async with api.client(sim, wire) as client:
        accepted = await api.submit(client, 1)
        body, headers = api.quota_429
        wire.refuse_posts.append(answer(429, body, headers))
        with pytest.raises(ka.RateLimited):
            await api.submit(client, 2)
        assert client.statistics().paused_for == 0
        await accepted  # the job already paid for is polled to its end


async def test_kepler_force_fresh_never_joins_a_plain_flight() -> None:
    api = APIS["kepler"]
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    async with api.client(sim, wire) as client:
        assert isinstance(client, ka.AsyncKepler)
        plain = await client.submit("stripe.com")
        fresh = await client.submit("stripe.com", force_fresh=True)
        assert fresh != plain
        again = await client.submit("stripe.com", force_fresh=True)
        assert again == fresh
    assert wire.posts == 2


# --- write-ahead: the intent is on disk before the request ---------------------------------


async def test_the_intent_is_journaled_before_the_submit_is_sent(api: Api, tmp_path: Path) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.hold_posts = 30.0
    journal = tmp_path / "j.db"
    client = api.client(sim, wire, journal=journal)

    async def submit() -> None:
        await api.submit(client, 1)

    async with client, anyio.create_task_group() as tg:
        tg.start_soon(submit)
        await anyio.sleep(1)
        assert wire.posts == 0  # not yet sent...
        entry = await journal_entry(journal, api, 1)
        assert entry is not None
        assert entry.state == "uncertain"  # ...and already written down
        tg.cancel_scope.cancel()


async def test_a_refused_submit_forgets_its_intent(api: Api, tmp_path: Path) -> None:
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.refuse_posts.append(answer(400, {"error": "bad request"}))
    journal = tmp_path / "j.db"
    async with api.client(sim, wire, journal=journal) as client:
        with pytest.raises(ka.BadRequest):
            await api.submit(client, 1)
    assert await journal_entry(journal, api, 1) is None  # nothing started: no doubt


async def test_a_submit_in_doubt_follows_its_apis_rule_on_the_next_run(
    api: Api, tmp_path: Path
) -> None:
    """The answer to a submit that started a job was lost; the next run must not pay
    for it again unless the caller says so."""
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.lose_posts = 1 if api.name in BILLED else 3  # deepidv retries: lose them all
    journal = tmp_path / "j.db"
    async with api.client(sim, wire, journal=journal) as client:
        with pytest.raises(ka.TransportError):
            await api.submit(client, 1)
    assert api.jobs_started(sim) >= 1
    started = api.jobs_started(sim)
    async with api.client(sim, wire, journal=journal) as client:
        if api.name in ("midlyr", "parsetx"):  # no way to find the job: reported
            with pytest.raises(ka.SubmitInDoubt) as info:
                await api.submit(client, 1)
            assert info.value.journal_key == api.journal_key(1)
            assert api.jobs_started(sim) == started
        else:  # Kepler finds the run's score; deepidv replays its idempotency key
            await (await api.submit(client, 1))
            assert api.jobs_started(sim) == started
    if api.name in ("midlyr", "parsetx"):
        store = SQLiteJobStore(journal, threaded=False)
        bold = api.client_class(
            api.key,
            base_url=f"http://{api.name}.test",
            transport=wire,
            journal=store,
            resubmit_in_doubt=True,
        )
        async with bold:
            await (await api.submit(bold, 1))
        assert api.jobs_started(sim) == started + 1  # the caller chose to pay again


async def test_kepler_waits_out_the_longest_run_before_submitting_a_doubt_again(
    tmp_path: Path,
) -> None:
    """The POST never reached the API (a crash before it left): no score ever comes,
    so the next run waits until no run can still be going, then submits once."""
    api = APIS["kepler"]
    sim = api.make_sim()
    wire = Wire(sim.create_app())
    wire.hold_posts = 30.0
    journal = tmp_path / "j.db"
    async with api.client(sim, wire, journal=journal) as client:
        with anyio.move_on_after(1):
            await api.submit(client, 1)
        await client.aclose()  # a crash: the intent stays, nothing was sent
    wire.hold_posts = 0.0
    async with api.client(sim, wire, journal=journal) as client:
        start = anyio.current_time()
        await (await api.submit(client, 1))
        waited = anyio.current_time() - start
    assert waited >= 90  # the longest documented cold run (and a margin) passed first
    assert api.jobs_started(sim) == 1


# --- one journal, two processes -----------------------------------------------------------


async def test_two_processes_on_one_journal_submit_a_key_once(api: Api, tmp_path: Path) -> None:
    """Two stores on one file stand for two processes (each has its own owner id): the
    second finds the first's live claim, waits for its job id, and watches that job."""
    sim = api.make_sim()
    slow = Wire(sim.create_app())
    slow.hold_posts = 5.0
    journal = tmp_path / "j.db"
    first = api.client(sim, slow, journal=journal)
    second = api.client(sim, Wire(sim.create_app()), journal=journal)
    async with first, second:
        handles: dict[str, ka.JobHandle[Any]] = {}

        async def run(name: str, client: Any, after: float) -> None:
            await anyio.sleep(after)
            handles[name] = await api.submit(client, 1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "first", first, 0.0)
            tg.start_soon(run, "second", second, 1.0)  # while the first's POST waits
        assert handles["second"].job_id == handles["first"].job_id
        await handles["second"]
    assert api.jobs_started(sim) == 1


async def test_a_shared_journal_is_said_once_at_info(
    api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sharing a journal is the recommended setup for several workers: this process says
    so once, at INFO, however many of its clients wait on another's claims."""
    from kepler_async._engine import _replay

    sim = api.make_sim()
    slow = Wire(sim.create_app())
    slow.hold_posts = 5.0
    journal = tmp_path / "j.db"
    _replay._SAID_SHARED.discard(repr(SQLiteJobStore(journal)))
    holder = api.client(sim, slow, journal=journal)
    waiters = [api.client(sim, Wire(sim.create_app()), journal=journal) for _ in range(3)]
    caplog.set_level(logging.INFO, logger="kepler_async")

    async def submit(client: Any) -> None:
        await (await api.submit(client, 1))

    async with holder, waiters[0], waiters[1], waiters[2], anyio.create_task_group() as tg:
        tg.start_soon(submit, holder)
        await anyio.sleep(1.0)  # the holder's POST is on its way
        for waiter in [*waiters, *waiters]:
            tg.start_soon(submit, waiter)
    said = [r for r in caplog.records if "is shared with another process" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
    assert api.jobs_started(sim) == 1


async def test_a_claim_whose_process_is_gone_is_in_doubt_at_once(tmp_path: Path) -> None:
    import os
    import socket
    import sys

    gone = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    dead_pid = int(gone.stdout)
    assert dead_pid != os.getpid()
    store = SQLiteJobStore(tmp_path / "j.db", threaded=False)
    await store.bind(base_url="http://x.test", fingerprint="f")
    store.owner = f"{socket.gethostname()}/{dead_pid}/gone"
    claimed, _ = await store.claim("kepler", "a.com", subject="a.com", lease=120)
    assert claimed
    await store.record_sending("kepler", "a.com")  # then the process died mid-POST
    other = SQLiteJobStore(tmp_path / "j.db", threaded=False)
    await other.bind(base_url="http://x.test", fingerprint="f")
    claimed, entry = await other.claim("kepler", "a.com", subject="a.com", lease=120)
    assert not claimed
    assert entry is not None
    assert not entry.claim_is_live(entry.submitted_at or 0.0)  # its owner is gone


# --- the simulators' faults: one mechanism for all four ----------------------------------


async def test_a_submit_whose_answer_is_lost_after_processing_is_billed_once(api: Api) -> None:
    """The simulator does the work, then answers 502 (`after_processing`)."""
    sim = api.make_sim()
    sim.add_fault("status", method="POST", status=502, after_processing=True)
    wire = Wire(sim.create_app())
    async with api.client(sim, wire) as client:
        if api.name in BILLED:
            with pytest.raises(ka.APIError):
                await api.submit(client, 0)
            assert wire.posts == 1  # not sent again
        else:  # deepidv resends under its Idempotency-Key: the replay names the same job
            assert await (await api.submit(client, 0)) is not None
    assert api.jobs_started(sim) == 1


async def test_a_poll_answered_503_with_retry_after_is_retried(api: Api) -> None:
    sim = api.make_sim()
    fault = sim.add_fault("status", method="GET", status=503, retry_after=40)
    async with api.client(sim) as client:
        handle = await api.submit(client, 0)
        assert await handle is not None
    assert fault.fired == 1


run_on_asyncio_and_trio(globals(), virtual_time=True)
