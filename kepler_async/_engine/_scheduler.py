"""The engine's scheduler: one task polls any number of jobs of any job API.

It keeps a min-heap of (due time, job), sleeps until the earliest (or until woken by
a new, earlier job), and hands due jobs to poll workers: at most one worker per free
slot of the ``CapacityLimiter`` of in-flight requests (shared with submits). A worker
keeps its slot and goes on to whatever else is due, so a busy engine starts no task
per poll; it ends when nothing is due. A pending job costs its ``Job`` record and a
heap entry: no task, thread or timer of its own.

Each job's record names its owner (``JobOwner``: one client's binding, with its API's
dialect, HTTP boundary and throttle). A request-scoped 429 pauses that owner's polls
until its ``Retry-After``; a 401 fails that owner's jobs. Transient failures
(timeouts, connect errors, 5xx) are retried on the job's schedule until its
deadline; the last one rides along as the ``__cause__`` of ``DeadlineExceeded``. The
last poll happens at the deadline.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import sniffio
from anyio.abc import TaskGroup, TaskStatus

from kepler_async._exceptions import (
    ClientClosed,
)

from ._poll import DEADLINE_GRACE, EARLY, Poller, deadline_exceeded
from ._record import JobRecord

__all__ = ["Scheduler"]

logger = logging.getLogger("kepler_async")

_EXPIRY_CHECK = 0.05
#: How many deadline entries may pile up before finished jobs' are swept out
#: (``_forget_finished``).
_SWEEP_AT_LEAST = 256
#: The longest a poll worker runs polls back to back before it lets the event loop
#: turn (an in-process transport answers without ever yielding; a network transport
#: yields on every request). Yielding after every poll instead costs about a fifth
#: more CPU per cold job (measured in benchmarks/overhead.py; see its README).
_MAX_STALL = 0.0005


def _loop_clock() -> Callable[[], float]:
    """The running loop's clock itself: ``anyio.current_time`` looks the event loop
    library up on every call, and the scheduler reads the clock several times a poll
    (what that cost: benchmarks/README.md, "Why the engine does what it does")."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        return asyncio.get_running_loop().time
    if library == "trio":
        import trio

        return trio.current_time
    return anyio.current_time  # pragma: no cover - anyio supports only these two


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
        # (due time, job): tuples compare their floats in C; ``Job.__lt__`` only
        # breaks exact ties.
        self._heap: list[tuple[float, JobRecord[Any]]] = []
        # (deadline, job) of the jobs that have one: only read while every slot is
        # busy, to fail on time the jobs a backlog holds past their deadline. Entries
        # of finished jobs are dropped in sweeps (``_forget_finished``).
        self._deadlines: list[tuple[float, JobRecord[Any]]] = []
        self._sweep_at = _SWEEP_AT_LEAST
        self.limiter = anyio.CapacityLimiter(max_in_flight)
        self._tg: TaskGroup | None = None
        self._wake: anyio.Event | None = None
        self._sleeping_until = math.inf
        self._stop: anyio.Event | None = None
        self._workers = 0
        self._worker_free: anyio.Event | None = None
        self._poller = Poller(self._push, rand)
        self.running = False
        self.clock: Callable[[], float] = anyio.current_time
        #: Called once ``run`` accepts work (the engine waits on it without ``start``).
        self.on_start: Callable[[], object] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll until ``stop()``; start it with ``task_group.start(run)``."""
        self._stop = anyio.Event()
        self.clock = self._poller.clock = _loop_clock()
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

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one in-flight slot while the body sends (every request of the engine
        does: submits take theirs here, poll workers theirs in ``_drive``)."""
        token = _Token()
        await self._acquire(token)
        try:
            yield
        finally:
            self.limiter.release_on_behalf_of(token)

    @property
    def in_flight(self) -> int:
        """How many slots are taken now."""
        return int(self.limiter.borrowed_tokens)

    async def _acquire(self, borrower: object) -> None:
        """Take an in-flight slot for ``borrower``.

        A free slot is taken without a trip through the event loop: anyio's ``acquire``
        always yields once, a cost paid on every request (benchmarks/README.md).
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

    def watch(self, job: JobRecord[Any], deadline: float | None, *, first_poll_now: bool) -> None:
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
        first = 0.0 if first_poll_now else self._poller.next_delay(job, now, None)
        self._push(job, min(now + first, job.deadline))

    # --- the loop -----------------------------------------------------------------------

    def _push(self, job: JobRecord[Any], due: float) -> None:
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
        job: JobRecord[Any] | None = None
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
            if job.due > now + EARLY:
                await self._sleep_until(job.due)
                continue
            if self._paused(job, now):
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
                await self._acquire(token)
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
            deadline_exceeded(job, now, "no request slot was free for its last poll in time")

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

    def _paused(self, job: JobRecord[Any], now: float) -> bool:
        """True (and the job moved) if its owner is paused by a throttle now.

        "Now" has the tolerance "due" has (``EARLY``): a pause that ends within it is
        over, so a held job always moves past ``now + EARLY`` and the loops that pop
        due work make progress (a pause ending a hair after a due poll once spun them).
        """
        owner = job.owner
        assert owner is not None
        paused_until = owner.paused_until
        if paused_until <= now + EARLY:
            return False
        heapq.heappop(self._heap)
        if job.deadline <= now + EARLY:
            deadline_exceeded(
                job,
                now,
                "a 429 held every request of the client at its deadline, for "
                f"{paused_until - now:.1f}s more: no last poll was sent",
            )
        else:
            self._push(job, min(paused_until, job.deadline))
        return True

    def _pop_due(self) -> JobRecord[Any] | None:
        """The next job whose poll is due now, if any."""
        heap = self._heap
        now = self.clock()
        while heap:
            due, job = heap[0]
            if job.done():
                heapq.heappop(heap)
                continue
            if due > now + EARLY:
                return None
            if self._paused(job, now):
                continue
            return heapq.heappop(heap)[1]
        return None

    async def _work(self, token: _Token, job: JobRecord[Any]) -> None:
        """Poll ``job``, then keep polling whatever else is due, on one in-flight slot."""
        try:
            next_job: JobRecord[Any] | None = job
            clock = self.clock
            step = self._poller.step
            yielded = clock()
            while next_job is not None:
                await step(next_job)
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

    def next_due(self) -> float | None:
        """When the next live poll is due (loop time), if any.

        Amortised O(1): finished jobs on top of the heap are dropped on the way (the
        loop would drop them anyway); the rest of the heap is not looked at.
        """
        heap = self._heap
        while heap and heap[0][1].done():
            heapq.heappop(heap)
        return heap[0][1].due if heap else None
