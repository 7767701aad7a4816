"""Jobs and the handles callers hold on them.

``Job`` is the engine's record of one job: one small ``__slots__`` object, ordered by
its next due time so that it sits in the scheduler's heap directly. Its state, result
and waiters live here; the ``anyio.Event`` that wakes waiters is made only when
someone waits, so a job nobody awaits yet costs no event.

``JobHandle[T]`` is what a caller holds: the job plus the caller's own deadline.
Callers who share one job (concurrent identical submits) hold one handle each, so
each keeps its own deadline while the job goes on for the others. The job is polled
until the latest of its handles' deadlines.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio

from kepler_async._exceptions import DeadlineExceeded, JobNotDone, PollingCancelled
from kepler_async._policies import check_seconds

if TYPE_CHECKING:
    from ._channel import Channel
    from ._protocol import Request

__all__ = ["Job", "JobHandle", "State"]

logger = logging.getLogger("kepler_async")

R = TypeVar("R")
H = TypeVar("H", bound="JobHandle[Any]")
State = Literal["pending", "done", "failed", "cancelled"]


class Job(Generic[R]):
    """One job as the engine tracks it (see the module docstring)."""

    __slots__ = (
        "attempt",
        "callbacks",
        "channel",
        "deadline",
        "due",
        "error",
        "event",
        "fetch",
        "job_id",
        "key",
        "last_error",
        "pending_age",
        "result",
        "resumed",
        "state",
        "subject",
        "submitted_at",
    )

    def __init__(
        self, job_id: str | None, subject: str | None, channel: Channel[R] | None = None
    ) -> None:
        #: The API's id for the job; None when the answer came inline (a cached result).
        self.job_id = job_id
        #: What the job is about (the domain, for Kepler); None until the API says.
        self.subject = subject
        self.channel = channel
        self.key: object = None  # the submission key it answers, if submitted here
        self.state: State = "pending"
        self.result: R | None = None
        self.error: BaseException | None = None
        self.event: anyio.Event | None = None
        self.callbacks: list[Callable[[], object]] | None = None
        # Scheduling state, owned by the scheduler.
        self.attempt = 0
        self.due = math.inf
        self.deadline = math.inf
        self.submitted_at = 0.0
        self.fetch: Request | None = None
        self.last_error: BaseException | None = None
        self.pending_age = 0.0  # age at the last poll that found the job pending
        self.resumed = False  # resumed jobs have an unknown start: not for learning

    @classmethod
    def finished(
        cls,
        job_id: str | None,
        subject: str | None,
        *,
        result: R | None = None,
        error: BaseException | None = None,
    ) -> Job[R]:
        """A job that is over already (an inline answer, or one the journal knew)."""
        job: Job[R] = cls(job_id, subject)
        if error is None:
            job.finish("done", result, None)
        else:
            job.finish("failed", None, error)
        return job

    def __lt__(self, other: Job[Any]) -> bool:  # breaks exact ties in the heap
        return self.due < other.due

    def done(self) -> bool:
        return self.state != "pending"

    def finish(self, state: State, result: R | None, error: BaseException | None) -> None:
        """End the job once; wake every waiter and run every done-callback."""
        if self.state != "pending":
            return
        self.state = state
        self.result = result
        self.error = error
        self.fetch = None
        self.last_error = None
        if self.event is not None:
            self.event.set()
        callbacks, self.callbacks = self.callbacks, None
        for callback in callbacks or ():
            try:
                callback()
            except Exception:  # user code: log it, and let every other job go on
                logger.exception("a done-callback of job %s raised", self.job_id)

    def on_done(self, callback: Callable[[], object]) -> None:
        if self.done():
            callback()
        else:
            if self.callbacks is None:
                self.callbacks = []
            self.callbacks.append(callback)

    async def wait(self) -> None:
        """Wait until the job finishes or its deadline moves (then look again)."""
        if self.state == "pending":
            if self.event is None:
                self.event = anyio.Event()
            await self.event.wait()

    def extend(self, deadline: float) -> None:
        """Poll until at least ``deadline`` (loop time); wake waiters to look again."""
        if deadline > self.deadline and self.state == "pending":
            self.deadline = deadline
            event, self.event = self.event, None
            if event is not None:
                event.set()

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # done and no error: a result


class JobHandle(Generic[R]):
    """A job being watched: ``await handle`` gives its result or raises its failure.

    The same class serves every API (``ScoreJob`` only adds ``domain``). Awaiting is
    bounded by the deadline of the call that made the handle; ``result_nowait()``
    reads a finished job without waiting.
    """

    __slots__ = ("_deadline", "_job")

    def __init__(self, job: Job[R], deadline: float = math.inf) -> None:
        self._job = job
        self._deadline = deadline

    def __eq__(self, other: object) -> bool:
        """Handles are equal when they watch the same job (whatever their deadlines)."""
        if isinstance(other, JobHandle):
            return self._job is other._job
        return NotImplemented

    def __hash__(self) -> int:
        return id(self._job)

    # --- what it is -----------------------------------------------------------------

    @property
    def job_id(self) -> str | None:
        """The API's id for the job; None when the answer came inline (cached)."""
        return self._job.job_id

    @property
    def subject(self) -> str | None:
        """What the job is about, in the API's terms (None until known)."""
        return self._job.subject

    @property
    def status(self) -> State:
        """``pending``, ``done``, ``failed`` or ``cancelled`` (local polling stopped)."""
        return self._job.state

    def done(self) -> bool:
        """True once the job has a result or an error."""
        return self._job.state != "pending"

    def exception(self) -> BaseException | None:
        """The failure of a finished job (None if it succeeded or is still pending)."""
        return self._job.error

    def result_nowait(self) -> R:
        """The result of a finished job, or its failure raised; ``JobNotDone`` if the
        job is still pending (this never waits)."""
        if not self.done():
            raise JobNotDone(f"job {self.job_id} is still pending", job_id=self.job_id)
        return self._job.outcome()

    def add_done_callback(self: H, callback: Callable[[H], object]) -> None:
        """Call ``callback(handle)`` when the job finishes (at once if it has).

        A callback that raises is logged with the job id; other jobs are unaffected.
        """
        self._job.on_done(lambda: callback(self))

    def cancel(self) -> bool:
        """Stop polling this job here; it goes on server-side and ``resume`` re-attaches.

        Every handle on the job gets ``PollingCancelled``. False if it was done already.
        """
        job = self._job
        if job.done():
            return False
        error = PollingCancelled(
            "local polling was cancelled; the job goes on server-side", job_id=job.job_id
        )
        if job.channel is not None:
            job.channel.forget(job)
        job.finish("cancelled", None, error)
        return True

    # --- waiting --------------------------------------------------------------------

    async def _wait(self) -> R:
        job = self._job
        if not job.done():
            if job.channel is not None:
                job.channel.engine.ensure_running()
            while not job.done():
                if self._deadline >= job.deadline:
                    # The job's own deadline is this call's: it fails itself then,
                    # after its last poll (unless another caller extends it meanwhile).
                    await job.wait()
                    continue
                # Another caller waits longer on the same job: this wait ends at its
                # own deadline and the job goes on for the other.
                with anyio.move_on_after(max(0.0, self._deadline - anyio.current_time())):
                    await job.wait()
                if not job.done() and anyio.current_time() >= self._deadline:
                    raise DeadlineExceeded(
                        f"job {job.job_id} ({job.subject}) was still pending at this "
                        "call's deadline; it goes on server-side and for other callers",
                        job_id=job.job_id,
                        subject=job.subject,
                    )
        return job.outcome()

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait().__await__()

    async def result(self, timeout: float | None = None) -> R:  # noqa: ASYNC109 (futures API)
        """Wait for the result, at most ``timeout`` seconds (``TimeoutError`` after that).

        A timeout here only stops this wait; the job is still polled.
        """
        if timeout is None:
            return await self
        timeout = check_seconds("timeout", timeout)
        with anyio.move_on_after(timeout):
            return await self
        raise TimeoutError(f"job {self.job_id} did not finish within {timeout:g}s")

    # --- display --------------------------------------------------------------------

    def __repr__(self) -> str:
        job = self._job
        text = f"<{type(self).__name__} {job.job_id or 'inline'} {job.subject or '?'} {job.state}"
        if job.state == "pending":
            text += f", {job.attempt} polls"
            try:
                due_in = job.due - anyio.current_time()
            except RuntimeError:  # no event loop here
                due_in = math.nan
            if math.isfinite(due_in):
                text += f", next poll in {max(0.0, due_in):.1f}s"
        elif job.error is not None:
            text += f", {type(job.error).__name__}"
        return text + ">"
