"""``JobHandle[T]``: what a caller holds on a job, built on ``_record`` alone.

A handle is what a caller holds: the job plus the caller's own deadline.
Callers who share one job (concurrent identical submits) hold one handle each, so
each keeps its own deadline while the job goes on for the others. The job is polled
until the latest of its handles' deadlines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import anyio

from kepler_async._exceptions import DeadlineExceeded, JobNotDone, PollingCancelled
from kepler_async._policies import check_seconds

from ._record import JobRecord, State

__all__ = ["JobHandle"]

R = TypeVar("R")
H = TypeVar("H", bound="JobHandle[Any]")


class JobHandle(Generic[R]):
    """A job being watched: ``await handle`` gives its result or raises its failure.

    The same class serves every API (``ScoreJob`` only adds ``domain``). Awaiting is
    bounded by the deadline of the call that made the handle; ``result_nowait()``
    reads a finished job without waiting.
    """

    __slots__ = ("_deadline", "_record")

    def __init__(self, record: JobRecord[R], deadline: float = math.inf) -> None:
        self._record = record
        self._deadline = deadline

    def __eq__(self, other: object) -> bool:
        """Handles are equal when they watch the same job (whatever their deadlines)."""
        if isinstance(other, JobHandle):
            return self._record is other._record
        return NotImplemented

    def __hash__(self) -> int:
        return id(self._record)

    # --- what it is -----------------------------------------------------------------

    @property
    def job_id(self) -> str | None:
        """The API's id for the job; None when the answer came inline (cached)."""
        return self._record.job_id

    @property
    def subject(self) -> str | None:
        """What the job is about, in the API's terms (None until known)."""
        return self._record.subject

    @property
    def status(self) -> State:
        """``pending``, ``done``, ``failed`` or ``cancelled`` (local polling stopped)."""
        return self._record.state

    def done(self) -> bool:
        """True once the job has a result or an error."""
        return self._record.state != "pending"

    def exception(self) -> BaseException | None:
        """The failure of a finished job (None if it succeeded or is still pending)."""
        return self._record.error

    def result_nowait(self) -> R:
        """The result of a finished job, or its failure raised; ``JobNotDone`` if the
        job is still pending (this never waits)."""
        if not self.done():
            raise JobNotDone(f"job {self.job_id} is still pending", job_id=self.job_id)
        return self._record.outcome()

    def add_done_callback(self: H, callback: Callable[[H], object]) -> None:
        """Call ``callback(handle)`` when the job finishes (at once if it has).

        A callback that raises is logged with the job id; other jobs are unaffected.
        """
        self._record.on_done(lambda: callback(self))

    def cancel(self) -> bool:
        """Stop polling this job here; it goes on server-side and ``resume`` re-attaches.

        Every handle on the job gets ``PollingCancelled``. False if it was done already.
        """
        job = self._record
        if job.done():
            return False
        error = PollingCancelled(
            "local polling was cancelled; the job goes on server-side", job_id=job.job_id
        )
        if job.owner is not None:
            job.owner.untrack(job)
        job.settle("cancelled", None, error)
        return True

    # --- waiting --------------------------------------------------------------------

    async def _wait(self) -> R:
        job = self._record
        if not job.done():
            if job.owner is not None:
                job.owner.ensure_running()
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
        job = self._record
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
