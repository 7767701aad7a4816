"""The shared poll scheduler: one driver task for any number of jobs of any job API.

The driver keeps a min-heap of (due time, handle), sleeps until the earliest (or until
woken by a new, earlier job), and hands due jobs to poll workers: at most one worker
per free slot of the ``CapacityLimiter`` of in-flight requests (shared with submits).
A worker keeps its slot and goes on to whatever else is due, so a busy client starts
no task per poll; it ends when nothing is due. A pending job costs its handle and a
heap entry: no task, thread or timer of its own.

Server signals are shared: a 429 pauses all polling until its ``Retry-After``; a 401
fails every pending handle. Transient failures (timeouts, connect errors, 5xx) are
retried on the job's schedule until its deadline; the last one rides along as the
``__cause__`` of ``DeadlineExceeded``. The last poll happens at the deadline.

Vendor-neutral: the API-specific parts come from each handle's ``JobApi``.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import sniffio
from anyio.abc import TaskGroup, TaskStatus

from kepler_async._exceptions import (
    AuthenticationError,
    ClientClosed,
    DeadlineExceeded,
    KeplerError,
    RateLimited,
    ServerError,
    TransportError,
)
from kepler_async._policies import RetryPolicy

from ._adaptive import DurationModel
from ._handle import JobHandle
from ._protocol import Done, Failed, Fetch, Pending, Request

__all__ = ["Scheduler", "SchedulerStatistics"]

logger = logging.getLogger("kepler_async")

#: uvloop and friends wake timers up to ~1 ms early; anything due that soon is due now.
_EARLY = 0.001
#: The engine does its own retrying (on each job's schedule), so requests it sends are
#: tried once by the HTTP layer.
_ONCE = RetryPolicy(attempts=1)
#: The longest a busy poll worker keeps the event loop from other work (seconds).
_MAX_STALL = 0.0002
#: After this many polls in a row that never yielded, polls run on one worker.
_SYNC_STREAK = 16
#: How long to pause on a 429 that names no ``Retry-After``.
DEFAULT_THROTTLE_PAUSE = 5.0


@attrs.frozen(kw_only=True)
class SchedulerStatistics:
    """A snapshot of what the scheduler has done, for dashboards and tests."""

    jobs_started: int
    submits_inline: int
    jobs_pending: int
    jobs_succeeded: int
    jobs_failed: int
    polls_sent: int
    polls_unchanged: int
    results_fetched: int
    transient_errors: int
    throttle_pauses: int
    in_flight: int
    max_in_flight: int
    paused_for: float
    next_poll_in: float | None

    @property
    def polls_per_finished_job(self) -> float:
        """Polls sent per job that has finished (succeeded or failed)."""
        finished = self.jobs_succeeded + self.jobs_failed
        return self.polls_sent / finished if finished else 0.0


class _Turns:
    """Makes sure a busy worker gives the event loop a turn between polls."""

    __slots__ = ()

    def arm(self) -> None:
        pass

    def arm_step(self) -> int:
        return 0

    def turned_since(self, ticket: int) -> bool:
        return True  # unknown here: assume polls wait on I/O

    async def settle(self) -> None:
        await anyio.lowlevel.checkpoint()


class _AsyncioTurns(_Turns):
    """On asyncio, yield only when the loop has not had a turn for a while.

    One per scheduler, shared by its workers: a callback marks each turn of the loop,
    and a worker whose polls never yielded (an in-process transport) yields once the
    last turn is ``_MAX_STALL`` old, so one turn of the loop lasts about that long
    whatever the number of workers. A network transport yields on every request, so
    this costs it next to nothing.
    """

    __slots__ = ("_armed", "_loop", "_turned_at", "_turns")

    def __init__(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._turned_at = self._loop.time()
        self._armed = False
        self._turns = 0

    def _mark(self) -> None:
        self._armed = False
        self._turns += 1
        self._turned_at = self._loop.time()

    def arm(self) -> None:
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._mark)

    def arm_step(self) -> int:
        """Arm the turn marker; the ticket tells later whether the loop turned."""
        self.arm()
        return self._turns

    def turned_since(self, ticket: int) -> bool:
        """True if the event loop had a turn since ``arm_step`` gave ``ticket``."""
        return self._turns != ticket

    async def settle(self) -> None:
        if self._loop.time() - self._turned_at >= _MAX_STALL:
            import asyncio

            await asyncio.sleep(0)


def _fast_clock() -> tuple[Callable[[], float], _Turns]:
    """The running loop's own clock, without anyio's per-call backend lookup."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        return asyncio.get_running_loop().time, _AsyncioTurns()
    if library == "trio":
        import trio

        return trio.current_time, _Turns()
    return anyio.current_time, _Turns()


class _Token:
    """A borrower of one in-flight slot (a worker holds it across several polls)."""

    __slots__ = ()


class Scheduler:
    """Polls every watched job on its own schedule from one driver task."""

    def __init__(
        self,
        *,
        max_in_flight: int = 10,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError("max_in_flight must be an integer")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._max_in_flight = max_in_flight
        self._rand = rand
        # (due time, handle): tuples compare their floats in C; the handle's own
        # ``__lt__`` only breaks exact ties.
        self._heap: list[tuple[float, JobHandle[Any]]] = []
        # API name -> job id -> handle (no key object per job, unlike a tuple key)
        self._jobs: dict[str, dict[str, JobHandle[Any]]] = {}
        self._limiter: anyio.CapacityLimiter | None = None
        self._tg: TaskGroup | None = None
        self._wake: anyio.Event | None = None
        self._sleeping_until = math.inf
        self._paused_until = -math.inf
        self._running = False
        self._closed = False
        self._stopped: anyio.Event | None = None
        self._host: Any = None  # the asyncio task hosting ``run`` outside ``async with``
        self._succeeded = 0
        self._failed = 0
        self._polls = 0
        self._unchanged = 0
        self._fetched = 0
        self._transient = 0
        self._pauses = 0
        self._started = 0
        self._inline = 0
        self._models: dict[str, DurationModel] = {}
        self._time: Callable[[], float] = anyio.current_time
        self._turns: _Turns = _Turns()
        self._workers = 0
        self._sync_steps = 0  # consecutive polls that never yielded to the loop
        self._worker_free: anyio.Event | None = None

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def closed(self) -> bool:
        return self._closed

    def now(self) -> float:
        """The event loop's clock (nan outside a loop)."""
        try:
            return anyio.current_time()
        except RuntimeError:  # no event loop here (sniffio's and anyio's errors)
            return math.nan

    def _clock(self) -> float:
        """``anyio.current_time`` without its per-call backend lookup (a hot path)."""
        return self._time()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Drive polling until ``close()``; start it with ``task_group.start(run)``."""
        if self._closed:
            raise ClientClosed()
        if self._running:
            raise RuntimeError("this scheduler is already running")
        self._stopped = anyio.Event()
        self._time, self._turns = _fast_clock()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._limiter = anyio.CapacityLimiter(self._max_in_flight)
                self._running = True
                task_status.started()
                await self._drive()
                tg.cancel_scope.cancel()
        finally:
            self._running = False
            self._tg = None
            self._stopped.set()

    def ensure_running(self) -> None:
        """Start the driver in the background if nobody did (notebooks, no ``async with``).

        Only asyncio allows a task outside a task group; on trio open the client with
        ``async with`` instead.
        """
        if self._running or self._host is not None:
            return
        if self._closed:
            raise ClientClosed()
        if sniffio.current_async_library() != "asyncio":
            raise KeplerError(
                "on trio, open the client with `async with` so its poll driver has a home"
            )
        import asyncio

        self._host = asyncio.get_running_loop().create_task(self.run(), name="kepler-poll-driver")

    async def wait_running(self) -> None:
        """Start the driver if needed and return once it accepts work."""
        self.ensure_running()
        while not self._running:
            if self._closed:
                raise ClientClosed()
            await anyio.lowlevel.checkpoint()

    async def close(self) -> None:
        """Stop the driver, fail every unfinished handle with ``ClientClosed``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fail_all(lambda job: ClientClosed("the client was closed", job_id=job.job_id))
        self._wakeup()
        if self._worker_free is not None:
            self._worker_free.set()
        if self._stopped is not None:
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()
        host, self._host = self._host, None
        if host is not None:
            with anyio.CancelScope(shield=True):
                await host

    def start_soon(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` in the driver's task group (work that must outlive callers)."""
        if self._tg is None:
            raise ClientClosed() if self._closed else RuntimeError("the driver is not running")
        self._tg.start_soon(func, *args)

    async def acquire(self, borrower: object) -> None:
        """Take an in-flight slot for ``borrower`` (every request of the client does).

        A free slot is taken without a trip through the event loop.
        """
        limiter = self._limiter
        if limiter is None:
            raise ClientClosed() if self._closed else RuntimeError("the driver is not running")
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            await limiter.acquire_on_behalf_of(borrower)

    def release(self, borrower: object) -> None:
        """Give back the slot ``acquire`` took."""
        assert self._limiter is not None
        self._limiter.release_on_behalf_of(borrower)

    # --- jobs ---------------------------------------------------------------------------

    def find(self, api: str, job_id: str) -> JobHandle[Any] | None:
        """The pending handle watching job ``job_id`` of API ``api``, if any."""
        return self._jobs.get(api, {}).get(job_id)

    def watch(self, job: JobHandle[Any], *, first_poll_now: bool = False) -> None:
        """Start polling ``job`` on its policy's schedule, from now.

        ``first_poll_now`` skips the first delay (for a job resumed from elsewhere,
        which may have finished long ago).
        """
        if self._closed:
            raise ClientClosed(job_id=job.job_id)
        assert job.job_id is not None
        assert job._policy is not None
        assert job._api is not None
        now = self._clock()
        policy = job._policy
        job._submitted_at = now
        job._pending_age = 0.0
        job._resumed = first_poll_now
        job._deadline = now + policy.deadline if policy.deadline is not None else math.inf
        job._attempt = 0
        self._jobs.setdefault(job._api.name, {})[job.job_id] = job
        first = 0.0 if first_poll_now else self._next_delay(job, now, None)
        self._push(job, min(now + first, job._deadline))

    def record_submit(self, *, started: bool) -> None:
        """Count a submit: ``started`` a job to poll, or answered inline."""
        if started:
            self._started += 1
        else:
            self._inline += 1

    def forget(self, job: JobHandle[Any]) -> None:
        """Stop tracking a handle (it was cancelled); its heap slot is dropped lazily."""
        self._untrack(job)

    def _untrack(self, job: JobHandle[Any]) -> None:
        if job.job_id is None or job._api is None:
            return
        per_api = self._jobs.get(job._api.name)
        if per_api is not None and per_api.get(job.job_id) is job:
            del per_api[job.job_id]

    def pause(self, retry_after: float | None) -> None:
        """Pause all polling for ``retry_after`` seconds (a 429 said so)."""
        seconds = DEFAULT_THROTTLE_PAUSE if retry_after is None else retry_after
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._pauses += 1
            logger.debug("throttled: pausing all polling for %.1fs", seconds)

    def fail_all(self, error: BaseException) -> None:
        """Fail every pending handle with ``error`` (a 401 said the key is bad)."""
        self._fail_all(lambda job: error)

    # --- statistics ---------------------------------------------------------------------

    def statistics(self) -> SchedulerStatistics:
        now = self.now()
        live = [job for _, job in self._heap if not job.done()]
        next_due = min((job._due for job in live), default=None)
        in_flight = 0
        if self._limiter is not None:
            in_flight = int(self._limiter.borrowed_tokens)
        return SchedulerStatistics(
            jobs_started=self._started,
            submits_inline=self._inline,
            jobs_pending=sum(len(jobs) for jobs in self._jobs.values()),
            jobs_succeeded=self._succeeded,
            jobs_failed=self._failed,
            polls_sent=self._polls,
            polls_unchanged=self._unchanged,
            results_fetched=self._fetched,
            transient_errors=self._transient,
            throttle_pauses=self._pauses,
            in_flight=in_flight,
            max_in_flight=self._max_in_flight,
            paused_for=max(0.0, self._paused_until - now) if math.isfinite(now) else 0.0,
            next_poll_in=None if next_due is None else max(0.0, next_due - now),
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        state = "closed" if self._closed else ("running" if self._running else "idle")
        text = (
            f"<Scheduler {state}: {stats.jobs_pending} pending, {stats.jobs_succeeded} done, "
            f"{stats.jobs_failed} failed, {stats.polls_sent} polls"
        )
        if stats.next_poll_in is not None and math.isfinite(stats.next_poll_in):
            text += f", next poll in {stats.next_poll_in:.1f}s"
        if stats.paused_for:
            text += f", paused for {stats.paused_for:.1f}s"
        return text + ">"

    # --- the driver ---------------------------------------------------------------------

    def _push(self, job: JobHandle[Any], due: float) -> None:
        job._due = due
        heapq.heappush(self._heap, (due, job))
        if due < self._sleeping_until:
            self._wakeup()

    def _wakeup(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _sleep_until(self, when: float) -> None:
        self._sleeping_until = when
        self._wake = anyio.Event()
        try:
            with anyio.move_on_after(max(0.0, when - self._clock())):
                await self._wake.wait()
        finally:
            self._wake = None
            self._sleeping_until = -math.inf

    async def _drive(self) -> None:
        assert self._limiter is not None
        assert self._tg is not None
        heap = self._heap
        while not self._closed:
            if not heap:
                await self._sleep_until(math.inf)
                continue
            job = heap[0][1]
            if job.done():  # cancelled or failed by a shared signal: drop the stale slot
                heapq.heappop(heap)
                continue
            now = self._clock()
            if job._due > now + _EARLY:
                await self._sleep_until(job._due)
                continue
            if self._paused_until > now:
                if job._deadline <= now + _EARLY:
                    heapq.heappop(heap)
                    self._deadline_exceeded(job)
                    continue
                await self._sleep_until(min(self._paused_until, job._deadline))
                continue
            if self._workers >= self._worker_limit():
                # Every slot has a worker, and workers take due jobs as they go:
                # wait for one to run out of work instead of churning the limiter.
                self._worker_free = anyio.Event()
                await self._worker_free.wait()
                continue
            token = _Token()
            await self.acquire(token)
            # The wait for a slot may have let another worker take this job.
            if heap and heap[0][1] is job and not job.done():
                heapq.heappop(heap)
                self._workers += 1
                self._tg.start_soon(self._work, token, job)
            else:
                self._limiter.release_on_behalf_of(token)

    def _worker_limit(self) -> int:
        """How many poll workers may run: one while polls complete without waiting.

        A transport that answers without yielding (an in-process fake or ASGI app) has
        no I/O to overlap, so more workers only take turns on the CPU and lengthen
        every turn of the event loop; the full ``max_in_flight`` is for real I/O.
        """
        return 1 if self._sync_steps >= _SYNC_STREAK else self._max_in_flight

    def _pop_due(self) -> JobHandle[Any] | None:
        """The next job whose poll is due now, if any (and polling is not paused)."""
        heap = self._heap
        now = self._clock()
        while heap and not self._closed:
            due, job = heap[0]
            if job.done():
                heapq.heappop(heap)
                continue
            if due > now + _EARLY or self._paused_until > now:
                return None
            return heapq.heappop(heap)[1]
        return None

    async def _work(self, token: _Token, job: JobHandle[Any]) -> None:
        """Poll ``job``, then keep polling whatever else is due, on one in-flight slot.

        Under load this keeps up to ``max_in_flight`` workers busy without a new task
        (or a limiter round trip) per poll; when nothing is due the worker ends.
        """
        assert self._limiter is not None
        try:
            next_job: JobHandle[Any] | None = job
            turns = self._turns
            while next_job is not None:
                ticket = turns.arm_step()
                await self._step(next_job)
                if turns.turned_since(ticket):
                    self._sync_steps = 0
                else:
                    self._sync_steps += 1
                    if self._workers > self._worker_limit():
                        return  # polls never wait on I/O: one worker is enough
                # An in-process transport may answer without ever yielding to the
                # event loop: then let the rest of the loop run before the next poll.
                await turns.settle()
                next_job = self._pop_due()
        finally:
            self._workers -= 1
            self._limiter.release_on_behalf_of(token)
            if self._worker_free is not None:
                self._worker_free.set()

    async def _step(self, job: JobHandle[Any]) -> None:
        """One poll of ``job`` (and the result fetch, if the poll says it is done)."""
        api, job_id = job._api, job.job_id
        assert api is not None
        assert job_id is not None
        while not job.done():
            fetching = job._fetch is not None
            request = job._fetch or api.poll_request(job_id)
            try:
                body = await self._send(job, request)
            except KeplerError as raw:
                error = api.poll_error(job_id, raw)
                if isinstance(error, (TransportError, ServerError)):
                    self._transient += 1
                    self._reschedule(job, error)
                elif isinstance(error, RateLimited):
                    self.pause(error.retry_after)
                    self._reschedule(job, error)
                elif isinstance(error, AuthenticationError):
                    self.fail_all(error)
                else:
                    if fetching:
                        error = api.result_missing(job_id, job.subject, error)
                    self._settle(job, error=error)
                return
            if fetching:
                self._fetched += 1
                self._settle_state(job, api.classify_result, body, polled=False)
                return
            self._polls += 1
            if not self._settle_state(job, api.classify_poll, body, polled=True):
                return

    def _settle_state(
        self, job: JobHandle[Any], classify: Callable[..., Any], body: Any, *, polled: bool
    ) -> bool:
        """Apply a classified answer; True when the step should go on to a fetch.

        ``polled``: the answer is a poll's (its end is what the duration model learns).
        """
        try:
            state = classify(job.job_id, job.subject, body)
        except KeplerError as error:  # a ProtocolError: the answer cannot be read
            self._settle(job, error=error)
            return False
        if isinstance(state, Pending):
            self._unchanged += 1
            job._pending_age = self._clock() - job._submitted_at
            if job.subject is None:
                job.subject = state.subject
            self._reschedule(job, None)
            return False
        if isinstance(state, Fetch):
            if job.subject is None:
                job.subject = state.subject
            self._learn(job)
            job._fetch = state.request
            return True
        if isinstance(state, Done):
            if polled:
                self._learn(job)
            self._settle(job, result=state.result)
            return False
        if isinstance(state, Failed):
            self._learn(job)
            self._settle(job, error=state.error)
            return False
        raise TypeError(f"a dialect returned {state!r}")  # pragma: no cover

    async def _send(self, job: JobHandle[Any], request: Request) -> object:
        http = job._http
        assert http is not None
        reply = await http.request(
            request.method,
            request.path,
            params=request.params,
            json=request.json,
            billed=request.billed,
            retry=_ONCE,
        )
        return reply.body

    def _reschedule(self, job: JobHandle[Any], error: KeplerError | None) -> None:
        if job.done():
            return
        if error is not None:
            job._last_error = error
        now = self._clock()
        if now >= job._deadline - _EARLY:
            self._deadline_exceeded(job)
            return
        job._attempt += 1
        delay = self._next_delay(job, now, error)
        due = max(now + delay, self._paused_until)
        self._push(job, min(due, job._deadline))

    def _next_delay(self, job: JobHandle[Any], now: float, error: KeplerError | None) -> float:
        policy = job._policy
        assert policy is not None
        assert job._api is not None
        if policy.adaptive and error is None:
            model = self._models.get(job._api.name)
            age = now - job._submitted_at
            target = None if model is None else model.next_age(age, min_gap=policy.interval / 2)
            if target is not None:
                return (target - age) * (1.0 - policy.jitter * self._rand())
        return policy.delay(job._attempt, self._rand)

    def _learn(self, job: JobHandle[Any]) -> None:
        """Note how long a job took, from the polls that bracket its end.

        Measured locally, so it needs nothing from the API and is on this clock.
        """
        if job._api is None or job._resumed:
            return
        model = self._models.get(job._api.name)
        if model is None:
            model = self._models[job._api.name] = DurationModel()
        age = self._clock() - job._submitted_at
        # Seen pending before: it ended between that poll and this one (take the
        # middle). Done at the first poll: all we know is that it took at most this.
        model.observe((job._pending_age + age) / 2 if job._pending_age else age)

    def _deadline_exceeded(self, job: JobHandle[Any]) -> None:
        policy = job._policy
        waited = f" after {policy.deadline:g}s" if policy and policy.deadline else ""
        error = DeadlineExceeded(
            f"job {job.job_id} ({job.subject}) was still pending at its deadline{waited}; "
            "it goes on server-side: resume(job_id) picks it up later",
            job_id=job.job_id,
            domain=job.subject,
        )
        error.__cause__ = job._last_error
        self._settle(job, error=error)

    def _settle(
        self, job: JobHandle[Any], *, result: Any = None, error: BaseException | None = None
    ) -> None:
        if job.done():
            return
        self._untrack(job)
        if error is None:
            self._succeeded += 1
            job._resolve(result)
        else:
            self._failed += 1
            logger.debug("job %s failed: %s", job.job_id, error)
            job._fail(error)

    def _fail_all(self, error_for: Callable[[JobHandle[Any]], BaseException]) -> None:
        jobs = [job for per_api in self._jobs.values() for job in per_api.values()]
        self._jobs.clear()
        self._heap.clear()
        for job in jobs:
            if not job.done():
                self._failed += 1
                job._fail(error_for(job))
