"""The engine's scheduler: one task polls any number of jobs of any job API.

It keeps a min-heap of (due time, job), sleeps until the earliest (or until woken by
a new, earlier job), and hands due jobs to poll workers: at most one worker per free
slot of the ``CapacityLimiter`` of in-flight requests (shared with submits). A worker
keeps its slot and goes on to whatever else is due, so a busy engine starts no task
per poll; it ends when nothing is due. A pending job costs its ``Job`` record and a
heap entry: no task, thread or timer of its own.

Each job belongs to a ``Channel`` (one client: its API's dialect, HTTP boundary and
throttle). A request-scoped 429 pauses that channel's polls until its ``Retry-After``;
a 401 fails that channel's jobs. Transient failures (timeouts, connect errors, 5xx)
are retried on the job's schedule until its deadline; the last one rides along as the
``__cause__`` of ``DeadlineExceeded``. The last poll happens at the deadline.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import sniffio
from anyio.abc import TaskGroup, TaskStatus

from kepler_async._exceptions import (
    AuthenticationError,
    ClientClosed,
    DeadlineExceeded,
    KeplerError,
    ProtocolError,
    RateLimited,
    ServerError,
    TransportError,
)
from kepler_async._policies import RetryPolicy

from ._adaptive import DurationModel
from ._handle import Job
from ._protocol import Done, Failed, Fetch, Pending, Request

if TYPE_CHECKING:
    from ._channel import Channel

__all__ = ["Scheduler"]

logger = logging.getLogger("kepler_async")

#: uvloop and friends wake timers up to ~1 ms early; anything due that soon is due now.
_EARLY = 0.001
#: The engine does its own retrying (on each job's schedule), so requests it sends are
#: tried once by the HTTP layer.
_ONCE = RetryPolicy(attempts=1)
#: How long after its deadline a job's last poll may still answer (seconds): a poll in
#: flight then is abandoned, and a job that waited that long for a free slot fails
#: without it (looked for every ``_EXPIRY_CHECK`` while every slot is busy), so
#: ``DeadlineExceeded`` comes at most about 0.2 s late (benchmarks/deadlines.py).
DEADLINE_GRACE = 0.15
_EXPIRY_CHECK = 0.05
#: How many deadline entries may pile up before finished jobs' are swept out
#: (``_forget_finished``).
_SWEEP_AT_LEAST = 256
#: The longest a poll worker runs polls back to back before it lets the event loop
#: turn (an in-process transport answers without ever yielding; a network transport
#: yields on every request, so this costs it nothing). Yielding after every poll
#: instead cost 1.27x raw httpx's CPU per cold job in benchmarks/overhead.py, against
#: 1.03-1.08x this way (2 cores, 2026-11-22, zero poll intervals; 1.22x at the
#: MIN_POLL_INTERVAL the benchmark now uses).
_MAX_STALL = 0.0005


def _loop_clock() -> Callable[[], float]:
    """The running loop's clock itself: ``anyio.current_time`` looks the event loop
    library up on every call, and the scheduler reads the clock several times a poll
    (63,000 calls, 0.23 s of 11 s under cProfile in benchmarks/overhead.py)."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        return asyncio.get_running_loop().time
    if library == "trio":
        import trio

        return trio.current_time
    return anyio.current_time  # pragma: no cover - anyio supports only these two


def _unreadable(error: BaseException) -> ProtocolError:
    """A ``ProtocolError`` for an answer that could not be read at all."""
    wrapped = ProtocolError(f"the answer could not be read ({type(error).__name__})")
    wrapped.__cause__ = error
    return wrapped


class _Token:
    """A borrower of one in-flight slot (a worker holds it across several polls)."""

    __slots__ = ()


class Scheduler:
    """Polls every watched job on its own schedule from one task (see the module)."""

    def __init__(self, *, max_in_flight: int, rand: Callable[[], float] = random.random) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError("max_in_flight must be an integer")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._rand = rand
        # (due time, job): tuples compare their floats in C; ``Job.__lt__`` only
        # breaks exact ties.
        self._heap: list[tuple[float, Job[Any]]] = []
        # (deadline, job) of the jobs that have one: only read while every slot is
        # busy, to fail on time the jobs a backlog holds past their deadline. Entries
        # of finished jobs are dropped in sweeps (``_forget_finished``).
        self._deadlines: list[tuple[float, Job[Any]]] = []
        self._sweep_at = _SWEEP_AT_LEAST
        self.limiter = anyio.CapacityLimiter(max_in_flight)
        self._tg: TaskGroup | None = None
        self._wake: anyio.Event | None = None
        self._sleeping_until = math.inf
        self._stop: anyio.Event | None = None
        self._workers = 0
        self._worker_free: anyio.Event | None = None
        self._models: dict[str, DurationModel] = {}
        self.running = False
        self.clock: Callable[[], float] = anyio.current_time
        #: Called once ``run`` accepts work (the engine waits on it without ``start``).
        self.on_start: Callable[[], object] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll until ``stop()``; start it with ``task_group.start(run)``."""
        self._stop = anyio.Event()
        self.clock = _loop_clock()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.running = True
                task_status.started()
                if self.on_start is not None:
                    self.on_start()
                tg.start_soon(self._drive)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self.running = False
            self._tg = None

    def stop(self) -> None:
        """Make ``run`` return (its workers are cancelled)."""
        if self._stop is not None:
            self._stop.set()

    async def acquire(self, borrower: object) -> None:
        """Take an in-flight slot for ``borrower`` (every request of the engine does).

        A free slot is taken without a trip through the event loop (anyio's
        ``acquire`` always yields once: with it, 1.30x raw httpx's CPU per cold job in
        benchmarks/overhead.py; without, 1.03-1.08x).
        """
        try:
            self.limiter.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            await self.limiter.acquire_on_behalf_of(borrower)

    def start_soon(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` in the scheduler's task group (work that outlives callers)."""
        if self._tg is None:
            raise ClientClosed("the engine is not running")
        self._tg.start_soon(func, *args)

    # --- jobs ---------------------------------------------------------------------------

    def watch(self, job: Job[Any], deadline: float | None, *, first_poll_now: bool) -> None:
        """Start polling ``job`` from now, until ``deadline`` seconds from now (None: no
        deadline). ``first_poll_now`` skips the first delay (a job resumed from
        elsewhere may have finished long ago)."""
        now = self.clock()
        job.submitted_at = now
        job.pending_age = 0.0
        job.resumed = first_poll_now
        job.deadline = now + deadline if deadline is not None else math.inf
        if deadline is not None:
            if len(self._deadlines) >= self._sweep_at:
                self._forget_finished()
            heapq.heappush(self._deadlines, (job.deadline, job))
        job.attempt = 0
        first = 0.0 if first_poll_now else self._next_delay(job, now, None)
        self._push(job, min(now + first, job.deadline))

    # --- the loop -----------------------------------------------------------------------

    def _push(self, job: Job[Any], due: float) -> None:
        job.due = due
        heapq.heappush(self._heap, (due, job))
        if due < self._sleeping_until and self._wake is not None:
            self._wake.set()

    async def _sleep_until(self, when: float) -> None:
        self._sleeping_until = when
        self._wake = anyio.Event()
        try:
            with anyio.move_on_after(max(0.0, when - self.clock())):
                await self._wake.wait()
        finally:
            self._wake = None
            self._sleeping_until = -math.inf

    async def _drive(self) -> None:
        heap = self._heap
        job: Job[Any] | None = None
        while True:
            if not heap:
                job = None  # idle: hold on to no job (nor its result)
                await self._sleep_until(math.inf)
                continue
            job = heap[0][1]
            if job.done():  # cancelled or failed by a shared signal: drop the stale slot
                heapq.heappop(heap)
                continue
            now = self.clock()
            if job.due > now + _EARLY:
                await self._sleep_until(job.due)
                continue
            if self._held(job, now):
                continue
            if self._workers >= self.max_in_flight:
                # Every slot has a worker, and workers take due jobs as they go:
                # wait for one to run out of work instead of churning the limiter,
                # failing meanwhile the jobs whose deadline passes while they wait.
                self._worker_free = anyio.Event()
                with anyio.move_on_after(_EXPIRY_CHECK):
                    await self._worker_free.wait()
                self._expire_overdue()
                continue
            token = _Token()
            with anyio.move_on_after(_EXPIRY_CHECK) as waited:
                await self.acquire(token)
            if waited.cancelled_caught:  # submits hold every slot
                self._expire_overdue()
                continue
            # The wait for a slot may have let a worker take this job.
            if heap and heap[0][1] is job and not job.done():
                heapq.heappop(heap)
                self._workers += 1
                assert self._tg is not None
                self._tg.start_soon(self._work, token, job)
            else:
                self.limiter.release_on_behalf_of(token)

    def _expire_overdue(self) -> None:
        """Fail the jobs whose deadline (and grace) passed while every slot was busy.

        Read from a heap by deadline, so a backlog of jobs without deadlines (or with
        later ones) costs nothing here. An entry whose job's deadline moved (another
        caller extended it) goes back with the new one.
        """
        deadlines = self._deadlines
        now = self.clock()
        while deadlines and deadlines[0][0] + DEADLINE_GRACE <= now:
            _, job = heapq.heappop(deadlines)
            if job.done():
                continue
            if job.deadline + DEADLINE_GRACE > now:
                heapq.heappush(deadlines, (job.deadline, job))
                continue
            self._deadline_exceeded(job, "no request slot was free for its last poll in time")

    def _forget_finished(self) -> None:
        """Drop the deadline entries of jobs that are over.

        ``_expire_overdue`` pops entries only while every slot is busy, so a client that
        is never saturated (most web services) would keep every job it ever watched,
        result and all. Swept when the engine falls idle, and whenever the entries have
        doubled since the last sweep: each entry is looked at O(1) times, amortised.
        """
        deadlines = self._deadlines
        deadlines[:] = [entry for entry in deadlines if not entry[1].done()]
        heapq.heapify(deadlines)
        self._sweep_at = max(_SWEEP_AT_LEAST, 2 * len(deadlines))

    def _held(self, job: Job[Any], now: float) -> bool:
        """True (and the job moved) if its channel is paused by a throttle now.

        "Now" has the tolerance "due" has (``_EARLY``): a pause that ends within it is
        over, so a held job always moves past ``now + _EARLY`` and the loops that pop
        due work make progress (a pause ending a hair after a due poll once spun them).
        """
        channel = job.channel
        assert channel is not None
        paused_until = channel.paused_until
        if paused_until <= now + _EARLY:
            return False
        heapq.heappop(self._heap)
        if job.deadline <= now + _EARLY:
            self._deadline_exceeded(
                job,
                "a 429 held every request of the client at its deadline, for "
                f"{paused_until - now:.1f}s more: no last poll was sent",
            )
        else:
            self._push(job, min(paused_until, job.deadline))
        return True

    def _pop_due(self) -> Job[Any] | None:
        """The next job whose poll is due now, if any."""
        heap = self._heap
        now = self.clock()
        while heap:
            due, job = heap[0]
            if job.done():
                heapq.heappop(heap)
                continue
            if due > now + _EARLY:
                return None
            if self._held(job, now):
                continue
            return heapq.heappop(heap)[1]
        return None

    async def _work(self, token: _Token, job: Job[Any]) -> None:
        """Poll ``job``, then keep polling whatever else is due, on one in-flight slot."""
        try:
            next_job: Job[Any] | None = job
            clock = self.clock
            yielded = clock()
            while next_job is not None:
                await self._step(next_job)
                # An in-process transport may answer without yielding to the event
                # loop: let the rest of the loop run now and then.
                if clock() - yielded >= _MAX_STALL:
                    await anyio.lowlevel.checkpoint()
                    yielded = clock()
                next_job = self._pop_due()
        finally:
            self._workers -= 1
            self.limiter.release_on_behalf_of(token)
            if self._worker_free is not None:
                self._worker_free.set()
            if not self._workers and not self._heap and self._deadlines:
                self._forget_finished()  # idle: nothing watched is pending

    async def _step(self, job: Job[Any]) -> None:
        """One poll of ``job`` (and the result fetch, if the poll says it is done)."""
        channel = job.channel
        job_id = job.job_id
        assert channel is not None
        assert job_id is not None
        api = channel.dialect
        counters = channel.counters
        while not job.done():
            fetching = job.fetch is not None
            request = job.fetch or api.poll_request(job_id)
            now = self.clock()
            if now >= job.deadline + DEADLINE_GRACE:  # it waited past its deadline
                self._deadline_exceeded(job, "no request slot was free at its deadline")
                return
            try:
                if job.deadline == math.inf:
                    body = await self._send(channel, request, poll=not fetching)
                else:
                    # A hard stop: an answer that has not come by the deadline (and
                    # its grace), body included, is not waited for.
                    with anyio.move_on_after(job.deadline + DEADLINE_GRACE - now) as scope:
                        body = await self._send(channel, request, poll=not fetching)
                    if scope.cancelled_caught:
                        self._deadline_exceeded(
                            job, "the poll in flight at its deadline had no answer yet"
                        )
                        return
            except (KeplerError, RecursionError, ValueError, TypeError) as caught:
                # Our tree, or bytes no decoder survived (too deep, too big): never
                # the scheduler's end.
                raw = caught if isinstance(caught, KeplerError) else _unreadable(caught)
                error = api.poll_error(job_id, raw)
                if isinstance(error, (TransportError, ServerError, ProtocolError)):
                    # An answer that could not be read (garbled, cut, too deep) is a
                    # transient fault like a timeout: tried again until the deadline,
                    # whose error then carries it as its cause. Only a well-formed
                    # answer the dialect cannot classify fails the job (``_apply``).
                    counters.transient_errors += 1
                    self._reschedule(job, error)
                elif isinstance(error, RateLimited):
                    channel.throttled(error, submitting=False)
                    self._reschedule(job, error)
                elif isinstance(error, AuthenticationError):
                    channel.fail_all(error)
                else:
                    if fetching:
                        error = api.result_missing(job_id, job.subject, error)
                    self._settle(job, error=error)
                return
            if fetching:
                counters.results_fetched += 1
                self._apply(job, api.classify_result, body, polled=False)
                return
            counters.polls_sent += 1
            if not self._apply(job, api.classify_poll, body, polled=True):
                return

    def _apply(
        self, job: Job[Any], classify: Callable[..., Any], body: Any, *, polled: bool
    ) -> bool:
        """Apply a classified answer; True when the step should go on to a fetch."""
        try:
            state = classify(job.job_id, job.subject, body)
        except KeplerError as error:  # a ProtocolError: the answer cannot be read
            self._settle(job, error=error)
            return False
        except Exception as error:  # a dialect tripped on the bytes: this job only
            self._settle(job, error=_unreadable(error))
            return False
        if isinstance(state, Pending):
            assert job.channel is not None
            job.channel.counters.polls_unchanged += 1
            job.pending_age = self.clock() - job.submitted_at
            if job.subject is None:
                job.subject = state.subject
            self._reschedule(job, None)
            return False
        if isinstance(state, Fetch):
            if job.subject is None:
                job.subject = state.subject
            self._learn(job)
            job.fetch = state.request
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
        unknown = ProtocolError(
            f"the {job.channel.dialect.name if job.channel else ''} dialect classified an "
            f"answer as {type(state).__name__}, which the engine does not know"
        )
        self._settle(job, error=unknown)
        return False

    async def _send(self, channel: Channel[Any], request: Request, *, poll: bool) -> object:
        http = channel.http
        reply = await http.request(
            request.method,
            request.path,
            params=request.params,
            json=request.json,
            billed=request.billed,
            retry=_ONCE,
            max_body=http.max_poll_body if poll else http.max_body,
        )
        return reply.body

    def _reschedule(self, job: Job[Any], error: KeplerError | None) -> None:
        if job.done():
            return
        if error is not None:
            job.last_error = error
        now = self.clock()
        if now >= job.deadline - _EARLY:
            self._deadline_exceeded(job)
            return
        job.attempt += 1
        delay = self._next_delay(job, now, error)
        assert job.channel is not None
        due = max(now + delay, job.channel.paused_until)
        self._push(job, min(due, job.deadline))

    def _next_delay(self, job: Job[Any], now: float, error: KeplerError | None) -> float:
        channel = job.channel
        assert channel is not None
        policy = channel.policy
        if policy.adaptive and error is None:
            model = self._models.get(channel.dialect.name)
            age = now - job.submitted_at
            target = None if model is None else model.next_age(age, min_gap=policy.interval / 2)
            if target is not None:
                return (target - age) * (1.0 - policy.jitter * self._rand())
        return policy.delay(job.attempt, self._rand)

    def _learn(self, job: Job[Any]) -> None:
        """Note how long a job took, from the polls that bracket its end.

        Measured locally, so it needs nothing from the API and is on this clock.
        """
        if job.resumed or job.channel is None:
            return
        name = job.channel.dialect.name
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = DurationModel()
        age = self.clock() - job.submitted_at
        # Seen pending before: it ended between that poll and this one (take the
        # middle). Done at the first poll: all we know is that it took at most this.
        model.observe((job.pending_age + age) / 2 if job.pending_age else age)

    def _deadline_exceeded(self, job: Job[Any], why: str | None = None) -> None:
        waited = self.clock() - job.submitted_at
        error = DeadlineExceeded(
            f"job {job.job_id} ({job.subject}) was still pending at its deadline, "
            f"{waited:.1f}s after it was watched{f' ({why})' if why else ''}; it goes on "
            "server-side and can be resumed by its job id",
            job_id=job.job_id,
            subject=job.subject,
        )
        error.__cause__ = job.last_error
        self._settle(job, error=error)

    def _settle(
        self, job: Job[Any], *, result: Any = None, error: BaseException | None = None
    ) -> None:
        channel = job.channel
        if job.done() or channel is None:
            return
        channel.settle(job, result=result, error=error)

    def next_due(self) -> float | None:
        """When the next live poll is due (loop time), if any."""
        return min((job.due for _, job in self._heap if not job.done()), default=None)
