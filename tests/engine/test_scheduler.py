"""The poll engine's semantics, under fake time, on asyncio and on trio.

Time is virtual (tests/virtual_time.py): a 90 s cold run passes in milliseconds and
nothing sleeps for real. The simulator reads the same clock.
"""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import hypothesis
import hypothesis.strategies as st
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler, PollPolicy
from kepler_async.testing import (
    LIVE_KEY,
    OTHER_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    asgi_transport,
)
from kepler_async.testing.fixtures import open_for_fixture
from tests.apis import Wire
from tests.backends import run_on_asyncio_and_trio

POLICY = PollPolicy(first_delay=20, interval=4, multiplier=1.5, cap=10, jitter=0.2, deadline=180)
JOB = "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f"


async def sim() -> KeplerSimulator:
    return KeplerSimulator(seed=11, clock=anyio.current_time, per_key_cold_per_hour=None)


@pytest.fixture
def wire(sim: KeplerSimulator) -> Wire:
    return Wire(asgi_transport(sim))


async def kepler(wire: Wire) -> AsyncIterator[AsyncKepler]:
    client = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=wire, poll_policy=POLICY)
    async for opened in open_for_fixture(client):
        yield opened


# --- the paths of one score -------------------------------------------------------------


async def test_a_cached_score_resolves_at_once(kepler: AsyncKepler, sim: KeplerSimulator):
    sim.seed_score("stripe.com", age=60)
    job = await kepler.submit("stripe.com")
    assert job.done()
    assert job.job_id is None
    assert (await job).domain == "stripe.com"
    stats = kepler.statistics()
    assert (stats.submits_inline, stats.jobs_started, stats.polls_sent) == (1, 0, 0)


async def test_a_cold_job_polls_with_growing_jittered_intervals(
    kepler: AsyncKepler, sim: KeplerSimulator, wire: Wire
) -> None:
    sim.script("stripe.com", duration=80)
    start = anyio.current_time()
    score = await kepler.score("stripe.com")
    assert score.domain == "stripe.com"
    polls = wire.times("/v1/jobs/")
    gaps = [b - a for a, b in zip([start, *polls], polls, strict=False)]
    assert POLICY.first_delay * 0.8 - 0.01 <= gaps[0] <= POLICY.first_delay + 0.01
    for attempt, gap in enumerate(gaps[1:]):
        nominal = min(POLICY.cap, POLICY.interval * POLICY.multiplier**attempt)
        assert nominal * (1 - POLICY.jitter) - 0.01 <= gap <= nominal + 0.01, (attempt, gap)
    assert polls[-1] >= start + 80
    assert polls[-2] < start + 80
    fetch = wire.times("/v1/score/stripe.com")
    assert len(fetch) == 1
    assert fetch[0] == pytest.approx(polls[-1], abs=0.01)


def scripted_api(
    *job_bodies: Any, score_status: int = 200
) -> tuple[Callable[[httpx.Request], httpx.Response], list[str]]:
    """A fake Kepler: 202 for the POST, then the given job bodies, then a score."""
    bodies = list(job_bodies)
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.method == "POST":
            return httpx.Response(
                202,
                json={
                    "job_id": JOB,
                    "status": "pending",
                    "domain": "stripe.com",
                    "poll_url": f"/v1/jobs/{JOB}",
                },
            )
        if request.url.path.startswith("/v1/jobs/"):
            body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
            if isinstance(body, Exception):
                raise body
            if "__status__" in body:
                return httpx.Response(
                    int(body["__status__"]),
                    json=body.get("json", {}),
                    headers=body.get("headers", {}),
                )
            return httpx.Response(200, json=body)
        if score_status != 200:
            return httpx.Response(score_status, json={"error": "no score available"})
        return httpx.Response(
            200,
            json={
                "domain": "stripe.com",
                "scored_at": "2026-05-12T18:30:43Z",
                "ki_rating": "KI-1",
                "composite_score": 70.0,
                "buckets": {
                    "team_structure": 1,
                    "market_position": 2,
                    "momentum_tailwinds": 3,
                    "financial_health": 4,
                },
            },
        )

    return handler, hosts


def fake(handler, **kwargs: object) -> AsyncKepler:
    return AsyncKepler(
        LIVE_KEY,
        base_url="https://api.example.test",
        transport=httpx.MockTransport(handler),
        poll_policy=kwargs.pop("poll_policy", POLICY),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


async def test_the_score_is_read_at_the_relative_score_url() -> None:
    handler, _ = scripted_api(
        {
            "job_id": JOB,
            "status": "complete",
            "domain": "stripe.com",
            "score_url": "/v1/score/stripe.com?run=latest",
        }
    )
    seen: list[str] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return handler(request)

    async with fake(spy) as kepler:
        await kepler.score("stripe.com")
    assert seen[-1] == "https://api.example.test/v1/score/stripe.com?run=latest"


async def test_an_absolute_score_url_on_the_api_host_is_followed() -> None:
    handler, hosts = scripted_api(
        {
            "job_id": JOB,
            "status": "complete",
            "domain": "stripe.com",
            "score_url": "https://api.example.test/v1/score/stripe.com",
        }
    )
    async with fake(handler) as kepler:
        await kepler.score("stripe.com")
    assert set(hosts) == {"api.example.test"}


async def test_without_score_url_the_score_comes_from_the_domain() -> None:
    handler, _ = scripted_api(
        {
            "job_id": JOB,
            "status": "complete",
            "domain": "stripe.com",
            "score_url": None,
            "result_ref": {"domain": "stripe.com", "scored_at": "2026-05-12T18:30:43Z"},
        }
    )
    seen: list[str] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return handler(request)

    async with fake(spy) as kepler:
        assert (await kepler.score("stripe.com")).composite_score == 70.0
    assert seen[-1] == "/v1/score/stripe.com"


async def test_a_score_url_on_another_host_is_refused_and_gets_no_key() -> None:
    handler, hosts = scripted_api(
        {
            "job_id": JOB,
            "status": "complete",
            "domain": "stripe.com",
            "score_url": "https://evil.example/v1/score/stripe.com",
        }
    )
    async with fake(handler) as kepler:
        with pytest.raises(ka.ProtocolError, match="another host"):
            await kepler.score("stripe.com")
    assert set(hosts) == {"api.example.test"}


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("sfn_failed", ka.PipelineFailed),
        ("sfn_timed_out", ka.PipelineTimedOut),
        ("sfn_aborted", ka.PipelineAborted),
        ("scoring_completed_no_record", ka.NoScoreRecord),
    ],
)
async def test_failed_jobs_raise_their_reason(
    kepler: AsyncKepler, sim: KeplerSimulator, reason: str, cls: type[ka.JobFailed]
) -> None:
    sim.script("broken.io", failure_reason=reason, duration=40)
    with pytest.raises(cls) as info:
        await kepler.score("broken.io")
    error = info.value
    assert type(error) is cls
    assert (error.failure_reason, error.domain) == (reason, "broken.io")
    assert error.job_id in sim.jobs
    assert error.retryable is (reason == "sfn_timed_out")


async def test_an_unknown_failure_reason_raises_the_base_class_with_the_raw_string(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    sim.script("broken.io", failure_reason="quota_gremlins", duration=40)
    with pytest.raises(ka.JobFailed) as info:
        await kepler.score("broken.io")
    assert type(info.value) is ka.JobFailed
    assert info.value.failure_reason == "quota_gremlins"


async def test_an_unknown_job_status_is_a_protocol_error_not_a_hang() -> None:
    handler, _ = scripted_api({"job_id": JOB, "status": "dreaming", "domain": "stripe.com"})
    async with fake(handler) as kepler:
        with pytest.raises(ka.ProtocolError, match="dreaming"):
            await kepler.score("stripe.com")


async def test_complete_but_no_score_on_file_is_no_score_record() -> None:
    handler, _ = scripted_api(
        {
            "job_id": JOB,
            "status": "complete",
            "domain": "stripe.com",
            "score_url": "/v1/score/stripe.com",
        },
        score_status=404,
    )
    async with fake(handler) as kepler:
        with pytest.raises(ka.NoScoreRecord) as info:
            await kepler.score("stripe.com")
    assert isinstance(info.value.__cause__, ka.NotFound)


# --- deadlines ----------------------------------------------------------------------------


async def test_the_last_poll_happens_at_the_deadline(
    kepler: AsyncKepler, sim: KeplerSimulator, wire: Wire
) -> None:
    sim.script("slow.io", duration=500)
    start = anyio.current_time()
    with pytest.raises(ka.DeadlineExceeded) as info:
        await kepler.score("slow.io", deadline=60)
    assert info.value.domain == "slow.io"
    assert info.value.job_id in sim.jobs
    polls = wire.times("/v1/jobs/")
    assert polls[-1] == pytest.approx(start + 60, abs=0.01)
    assert anyio.current_time() == pytest.approx(start + 60, abs=0.01)
    assert sim.jobs[info.value.job_id].status == "pending"  # still running server-side


async def test_resume_finishes_a_job_after_its_deadline(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    sim.script("slow.io", duration=100)
    with pytest.raises(ka.DeadlineExceeded) as info:
        await kepler.score("slow.io", deadline=30)
    job_id = info.value.job_id
    assert job_id is not None
    await anyio.sleep(200)
    job = kepler.resume(job_id)
    assert kepler.resume(job_id.upper()) == job  # the same job, watched once
    score = await job
    assert score.domain == "slow.io"
    assert job.domain == "slow.io"  # learnt from the first poll
    assert sim.counters.cold_runs_billed["slow.io"] == 1


async def test_resume_polls_at_once(kepler: AsyncKepler, sim: KeplerSimulator, wire: Wire):
    sim.script("x.io", duration=1)
    accepted = sim.post_score(sim.keys[LIVE_KEY], {"domain": "x.io"}).body
    await anyio.sleep(5)
    start = anyio.current_time()
    await kepler.resume(accepted["job_id"])
    assert wire.times("/v1/jobs/")[0] == pytest.approx(start, abs=0.01)


@pytest.mark.parametrize("deadline", [-1, 0, math.nan, "soon"])
async def test_bad_deadlines_are_value_errors(kepler: AsyncKepler, deadline: object) -> None:
    with pytest.raises(ValueError, match="deadline"):
        await kepler.score("stripe.com", deadline=deadline)  # type: ignore[arg-type]


def test_bad_policy_values_are_value_errors() -> None:
    for kwargs in (
        {"first_delay": -1},
        {"interval": math.nan},
        {"multiplier": 0.5},
        {"jitter": 2},
        {"cap": math.inf},
        {"deadline": -5},
    ):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            PollPolicy(**kwargs)


# --- shared server signals ---------------------------------------------------------------


async def test_a_429_pauses_all_polling_until_retry_after(
    kepler: AsyncKepler, sim: KeplerSimulator, wire: Wire
) -> None:
    for i in range(5):
        sim.script(f"d{i}.com", duration=60)
    jobs = [await kepler.submit(f"d{i}.com") for i in range(5)]
    await anyio.sleep(POLICY.first_delay + 1)  # every job has polled once
    sim.add_fault(
        "status", path="/v1/jobs/", status=429, code="rate limited", retry_after=30, times=1
    )
    await anyio.sleep(POLICY.cap + 1)  # a poll meets the 429
    paused_at = next(t for t, _, _, p in reversed(wire.log) if p.startswith("/v1/jobs/"))
    for job in jobs:
        await job
    polls_after = [t for t in wire.times("/v1/jobs/") if t > paused_at]
    assert polls_after
    assert min(polls_after) >= paused_at + 30 - 0.01
    assert kepler.statistics().throttle_pauses == 1


class _SpinGuard:
    """The scheduler's clock, failing loudly once it is read at one instant so often
    that the scheduler can only be spinning (time stands still while a loop never
    yields, on virtual time as on a real clock read in a tight loop)."""

    LIMIT = 100_000

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last = math.nan
        self.reads = 0

    def __call__(self) -> float:
        now = self.clock()
        if now == self.last:
            self.reads += 1
            if self.reads > self.LIMIT:
                raise AssertionError(f"the scheduler spins: {self.reads} clock reads at {now}")
        else:
            self.last, self.reads = now, 0
        return now


async def test_a_pause_ending_a_hair_after_a_due_poll_is_waited_out_not_spun_on(
    sim: KeplerSimulator, wire: Wire
) -> None:
    """A request-scoped 429 whose pause ends 0.5 ms after another job's poll is due:
    the scheduler once held that job again and again at the same instant, forever."""
    exact = PollPolicy(first_delay=20, interval=4, multiplier=1.0, cap=4, jitter=0.0, deadline=180)
    client = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=wire, poll_policy=exact)
    async with client as kepler:
        scheduler = kepler.engine.scheduler
        scheduler.clock = _SpinGuard(scheduler.clock)
        sim.script("a.com", duration=60)
        sim.script("b.com", duration=60)
        start = anyio.current_time()
        first = await kepler.submit("a.com")  # first poll due at start + 20
        await anyio.sleep(9.9995)
        second = await kepler.submit("b.com")  # first poll due at start + 29.9995
        await anyio.sleep(19.5 - 9.9995)
        sim.add_fault(
            "status", path="/v1/jobs/", status=429, code="rate limited", retry_after=10, times=1
        )
        # a.com's poll at start + 20 meets the 429: every request waits until start + 30.
        assert (await first).domain == "a.com"
        assert (await second).domain == "b.com"
    polls = [t - start for t, _, _, path in wire.log if path.startswith("/v1/jobs/")]
    assert polls[0] == pytest.approx(20)
    assert min(polls[1:]) >= 30 - 0.001  # nothing went out during the pause
    assert kepler.statistics().throttle_pauses == 1


class _PausedOwner:
    """Just what the scheduler reads of a job's owner to hold a job (counting the
    reads), and where it settles the jobs it fails."""

    def __init__(self, paused_until: float) -> None:
        self._paused_until = paused_until
        self.reads = 0
        self.settled: list[Any] = []

    def settle(self, record: Any, *, result: Any = None, error: Any = None) -> None:
        self.settled.append(record)

    @property
    def paused_until(self) -> float:
        self.reads += 1
        if self.reads > 1000:
            raise AssertionError("the scheduler keeps looking at one paused owner")
        return self._paused_until


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    due=st.floats(-0.003, 0.003),
    pause_end=st.floats(-0.003, 0.003),
    deadline=st.one_of(st.just(math.inf), st.floats(-0.003, 0.003)),
    jobs=st.integers(1, 4),
)
def test_popping_due_work_always_makes_progress(
    due: float, pause_end: float, deadline: float, jobs: int
) -> None:
    """Due times, pause ends and deadlines within a few ms of now, in any order: one
    ``_pop_due`` returns; popping until it says "nothing due" hands out each job at
    most once, and what stays in the heap is not due now."""
    from kepler_async._engine._poll import EARLY
    from kepler_async._engine._record import JobRecord
    from kepler_async._engine._scheduler import Scheduler

    now = 1000.0
    scheduler = Scheduler(max_in_flight=1)
    scheduler.clock = lambda: now
    owner = _PausedOwner(now + pause_end)
    for i in range(jobs):
        job: JobRecord[Any] = JobRecord(f"job-{i}", None, owner)  # type: ignore[arg-type]
        job.deadline = now + deadline
        scheduler._push(job, min(now + due + i * 0.0004, job.deadline))
    popped = [one for _ in range(jobs + 1) if (one := scheduler._pop_due()) is not None]
    assert scheduler._pop_due() is None
    if popped:
        assert owner._paused_until <= now + EARLY  # handed out only when not paused
    assert len(popped) + len(owner.settled) + len(scheduler._heap) == jobs
    assert all(when > now + EARLY for when, _ in scheduler._heap)


async def test_a_401_fails_every_pending_handle(kepler: AsyncKepler, sim: KeplerSimulator) -> None:
    jobs = [await kepler.submit(f"d{i}.com") for i in range(4)]
    sim.keys.pop(LIVE_KEY)  # the key is revoked
    for job in jobs:
        with pytest.raises(ka.AuthenticationError):
            await job
    assert kepler.statistics().jobs_pending == 0


async def test_transient_poll_errors_are_retried_and_the_last_is_the_cause(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    sim.script("flaky.io", duration=40)
    sim.add_fault("status", path="/v1/jobs/", status=503, code="unavailable", times=3)
    assert (await kepler.score("flaky.io")).domain == "flaky.io"
    assert kepler.statistics().transient_errors == 3

    sim.script("down.io", duration=1000)
    sim.add_fault("status", path="/v1/jobs/", status=502, code="bad gateway", times=1000)
    with pytest.raises(ka.DeadlineExceeded) as info:
        await kepler.score("down.io", deadline=50)
    assert isinstance(info.value.__cause__, ka.ServerError)
    assert info.value.__cause__.status == 502


async def test_connect_errors_on_polls_are_retried() -> None:
    handler, _ = scripted_api(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        {
            "job_id": JOB,
            "status": "complete",
            "domain": "stripe.com",
            "score_url": "/v1/score/stripe.com",
        },
    )
    async with fake(handler) as kepler:
        assert (await kepler.score("stripe.com")).domain == "stripe.com"
        assert kepler.statistics().transient_errors == 2


@pytest.mark.parametrize(("status", "cls"), [(404, ka.JobNotFound), (403, ka.JobForbidden)])
async def test_a_lost_or_foreign_job_fails_its_handle(status: int, cls: type[Exception]):
    handler, _ = scripted_api({"__status__": status, "json": {"error": "nope"}})
    async with fake(handler) as kepler:
        with pytest.raises(cls):
            await kepler.score("stripe.com")


async def test_resuming_another_accounts_job_is_forbidden(sim: KeplerSimulator) -> None:
    accepted = sim.post_score(sim.keys[OTHER_KEY], {"domain": "x.io"}).body
    async with AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim)) as k:
        with pytest.raises(ka.JobForbidden):
            await k.resume(accepted["job_id"])


# --- the billed POST -----------------------------------------------------------------------


async def test_a_submit_whose_answer_is_lost_is_uncertain_and_not_resent(
    sim: KeplerSimulator,
) -> None:
    sim.add_fault("delay", path="/v1/score", method="POST", delay=60, after_processing=True)
    async with AsyncKepler(
        LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim), timeout=5
    ) as kepler:
        with anyio.fail_after(30):
            with pytest.raises(ka.SubmitUncertain):
                await _with_timeout_transport(kepler)
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


async def _with_timeout_transport(kepler: AsyncKepler) -> None:
    # ASGITransport has no timeouts of its own: model the read timeout explicitly.
    original = kepler._http._client._transport

    class TimesOut(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            with anyio.move_on_after(5):
                return await original.handle_async_request(request)
            raise httpx.ReadTimeout("no answer", request=request)

    kepler._http._client._transport = TimesOut()
    await kepler.score("stripe.com")


async def test_a_submit_that_never_connected_is_resent_once_it_can() -> None:
    calls: list[str] = []
    handler, _ = scripted_api(
        {
            "job_id": JOB,
            "status": "complete",
            "domain": "stripe.com",
            "score_url": "/v1/score/stripe.com",
        }
    )

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "POST" and calls.count("POST") == 1:
            raise httpx.ConnectError("refused")
        return handler(request)

    async with fake(flaky, retry=ka.RetryPolicy(initial=0.1)) as kepler:
        await kepler.score("stripe.com")
    assert calls.count("POST") == 2


async def test_engine_unavailable_is_retried_and_bills_once(sim: KeplerSimulator) -> None:
    sim.add_fault(
        "status", path="/v1/score", method="POST", status=500, code="scoring engine unavailable"
    )
    async with AsyncKepler(
        LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim), poll_policy=POLICY
    ) as kepler:
        await kepler.score("stripe.com")
    assert sim.counters.requests["POST /v1/score"] == 2
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


async def test_a_cold_limit_429_on_submit_is_raised_and_polls_go_on(
    sim: KeplerSimulator,
) -> None:
    """The cold-run limits stop new cold runs; the job already accepted (and paid for)
    is still polled to its end."""
    sim = KeplerSimulator(clock=anyio.current_time, per_key_cold_per_hour=1)
    async with AsyncKepler(
        LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim), poll_policy=POLICY
    ) as kepler:
        accepted = await kepler.submit("a.com")
        with pytest.raises(ka.RateLimited) as info:
            await kepler.submit("b.com")
        assert info.value.retry_after is not None
        assert kepler.statistics().paused_for == 0
        assert (await accepted).domain == "a.com"
    assert sim.counters.total_cold_runs == 1


# --- single flight, cancellation, shutdown -------------------------------------------------


async def test_concurrent_scores_of_one_domain_share_one_post_and_one_job(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    results: list[ka.Score] = []
    jobs: list[ka.ScoreJob] = []

    async def one(raw: str) -> None:
        jobs.append(await kepler.submit(raw))
        results.append(await jobs[-1])

    async with anyio.create_task_group() as tg:
        for raw in ["stripe.com", "STRIPE.com", "https://www.stripe.com/"] + ["stripe.com"] * 7:
            tg.start_soon(one, raw)
    assert len(results) == 10
    assert len(set(jobs)) == 1  # handles on one job
    assert sim.counters.requests["POST /v1/score"] == 1
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


async def test_cancelling_one_waiter_leaves_the_job_and_the_others_alone(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    sim.script("stripe.com", duration=60)
    job = await kepler.submit("stripe.com")
    other = await kepler.submit("plaid.com")
    with anyio.move_on_after(10):
        await job  # this waiter gives up
    assert not job.done()
    assert (await job).domain == "stripe.com"
    assert (await other).domain == "plaid.com"


async def test_cancelling_the_submitting_task_does_not_lose_the_job(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    # A client opened without `async with` (asyncio's fixture) starts its engine on
    # first use; a caller cancelled during that start has sent nothing. Start it first,
    # so the cancel lands once the POST is the engine's.
    sim.seed_score("plaid.com", age=60)
    await kepler.score("plaid.com")
    async with anyio.create_task_group() as tg:
        tg.start_soon(kepler.score, "stripe.com")
        await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    await anyio.sleep(1)
    assert sim.counters.cold_runs_billed["stripe.com"] == 1
    # The job was kept and is watched: a new score() shares it instead of paying again.
    await kepler.score("stripe.com")
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


async def test_job_cancel_stops_local_polling(
    kepler: AsyncKepler, sim: KeplerSimulator, wire: Wire
) -> None:
    job = await kepler.submit("stripe.com")
    assert job.cancel()
    assert not job.cancel()
    with pytest.raises(ka.PollingCancelled) as info:
        await job
    assert info.value.job_id == job.job_id
    await anyio.sleep(300)
    assert wire.times("/v1/jobs/") == []


async def test_result_with_timeout(kepler: AsyncKepler, sim: KeplerSimulator) -> None:
    sim.script("stripe.com", duration=60)
    job = await kepler.submit("stripe.com")
    with pytest.raises(TimeoutError):
        await job.result(timeout=5)
    assert (await job.result(timeout=500)).domain == "stripe.com"


async def test_aclose_fails_every_pending_job_with_its_id_and_leaves_no_task(
    sim: KeplerSimulator,
) -> None:
    before = running_tasks()
    kepler = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim))
    async with kepler:
        jobs = [await kepler.submit(f"d{i}.com") for i in range(1000)]
        assert kepler.statistics().jobs_pending == 1000
    for job in jobs:
        error = job.exception()
        assert isinstance(error, ka.ClientClosed)
        assert error.job_id == job.job_id
    assert kepler.closed
    with pytest.raises(ka.ClientClosed):
        await kepler.score("x.com")
    gc.collect()
    assert running_tasks() == before


async def test_a_long_lived_client_keeps_nothing_of_the_jobs_it_finished(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    """A web service's client lives for weeks and is rarely saturated: once a job is
    done and its caller has dropped the result, nothing in the engine may hold it."""
    sim.failure_mix = {}
    finished: list[weakref.ref[ka.Score]] = []

    async def one(domain: str, into: list[ka.Score]) -> None:
        into.append(await kepler.score(domain))

    for round_ in range(3):
        scores: list[ka.Score] = []
        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, f"round{round_}-{i}.com", scores)
        finished += [weakref.ref(score) for score in scores]
        del scores
    assert len(finished) == 120
    await anyio.sleep(1)  # (virtual) the workers wind down
    gc.collect()
    assert [ref for ref in finished if ref() is not None] == []


async def test_a_client_that_is_never_idle_keeps_a_bounded_number_of_finished_jobs(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    """A steady stream (a request a second, each a 25-90 s cold job): some job is
    always pending, so the engine never falls idle; what it keeps of finished jobs
    stays bounded all the same."""
    sim.failure_mix = {}
    finished: list[weakref.ref[ka.Score]] = []

    async def one(domain: str) -> None:
        finished.append(weakref.ref(await kepler.score(domain)))

    async with anyio.create_task_group() as tg:
        for i in range(700):
            tg.start_soon(one, f"stream-{i}.com")
            await anyio.sleep(1)
        # 700 submitted over 700 s: most are done, the last minute's pending.
        gc.collect()
        kept = sum(ref() is not None for ref in finished)
        assert len(finished) > 600
        assert kept <= 300, f"{kept} of {len(finished)} finished jobs still held"


def anyio_backend_name() -> str:
    import sniffio

    return sniffio.current_async_library()


def running_tasks() -> set[object]:
    """The tasks alive now (asyncio); on trio, nurseries make strays impossible."""
    if anyio_backend_name() != "asyncio":
        return set()
    import asyncio

    return set(asyncio.all_tasks())


async def test_notebook_mode_without_async_with(sim: KeplerSimulator) -> None:
    if anyio_backend_name() != "asyncio":
        kepler = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim))
        with pytest.raises(ka.KeplerError, match="async with"):
            await kepler.score("stripe.com")
        await kepler.aclose()
        return
    before = running_tasks()
    kepler = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim))
    assert (await kepler.score("stripe.com")).domain == "stripe.com"  # "cell 1"
    job = await kepler.submit("plaid.com")  # "cell 2"
    assert "1 jobs pending" in repr(kepler)
    await kepler.aclose()
    assert isinstance(job.exception(), ka.ClientClosed)
    assert running_tasks() == before


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["nope", "../v1/usage", "", JOB + "/x"])
async def test_resume_rejects_ids_that_are_not_api_ids(kepler: AsyncKepler, job_id: str):
    with pytest.raises(ka.InvalidJobId):
        kepler.resume(job_id)


async def test_submit_rejects_bad_domains_before_any_request(kepler: AsyncKepler, wire: Wire):
    with pytest.raises(ka.InvalidDomain):
        await kepler.score("not a domain")
    assert wire.log == []


# --- observability ------------------------------------------------------------------------------


async def test_reprs_and_statistics_say_what_is_going_on(
    kepler: AsyncKepler, sim: KeplerSimulator
) -> None:
    sim.script("stripe.com", duration=60)
    job = await kepler.submit("stripe.com")
    text = repr(job)
    assert text.startswith(f"<ScoreJob {job.job_id} stripe.com pending, 0 polls, next poll in")
    assert LIVE_KEY not in repr(kepler)
    assert LIVE_KEY not in repr(kepler.engine)
    assert "1 pending" in repr(kepler.engine)
    await job
    assert repr(job) == f"<ScoreJob {job.job_id} stripe.com done>"
    stats = kepler.statistics()
    assert stats.jobs_succeeded == 1
    assert stats.polls_sent == stats.polls_unchanged + 1
    assert stats.polls_per_finished_job == stats.polls_sent


async def test_the_adaptive_policy_learns_to_poll_less(sim: KeplerSimulator) -> None:
    """On 25-90 s runs, after learning from 100 jobs, it needs fewer polls per job."""
    import attrs

    plain = PollPolicy(first_delay=5, interval=5, multiplier=1.0, cap=5, jitter=0.1)
    results = {}
    for adaptive in (False, True):
        runs = KeplerSimulator(seed=3, clock=anyio.current_time, per_key_cold_per_hour=None)
        policy = attrs.evolve(plain, adaptive=adaptive)
        async with AsyncKepler(
            LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(runs), poll_policy=policy
        ) as kepler:
            async for _ in kepler.score_many([f"warm-{i}.com" for i in range(100)]):
                pass
            before = kepler.statistics().polls_sent
            async for _ in kepler.score_many([f"d{i}.com" for i in range(200)]):
                pass
            results[adaptive] = (kepler.statistics().polls_sent - before) / 200
    assert results[True] < 0.75 * results[False]


run_on_asyncio_and_trio(globals(), virtual_time=True, async_fixtures=[sim, kepler])
