"""Awaitable job handles.

A handle is both the user's future and the scheduler's record of a pending job: one
small ``__slots__`` object per job, ordered by its next due time so that it can sit
in the scheduler's heap directly. The ``anyio.Event`` that wakes waiters is made only
when someone waits, so a job nobody awaits yet costs no event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio

from kepler_async._exceptions import PollingCancelled
from kepler_async._kepler._models import Score

if TYPE_CHECKING:
    from kepler_async._policies import PollPolicy

    from ._http import HttpBoundary
    from ._protocol import JobApi, Request
    from ._scheduler import Scheduler

__all__ = ["JobHandle", "ScoreJob"]

R = TypeVar("R")
State = Literal["pending", "done", "failed", "cancelled"]


class JobHandle(Generic[R]):
    """A job being watched: ``await handle`` gives its result or raises its failure."""

    __slots__ = (
        "_api",
        "_attempt",
        "_callbacks",
        "_deadline",
        "_due",
        "_error",
        "_event",
        "_fetch",
        "_http",
        "_last_error",
        "_pending_age",
        "_policy",
        "_result",
        "_resumed",
        "_scheduler",
        "_state",
        "_submitted_at",
        "job_id",
        "subject",
    )

    def __init__(
        self,
        job_id: str | None,
        subject: str | None,
        *,
        api: JobApi[R] | None = None,
        policy: PollPolicy | None = None,
        scheduler: Scheduler | None = None,
        http: HttpBoundary | None = None,
    ) -> None:
        #: The API's id for the job; None when the answer came inline (a cached score).
        self.job_id = job_id
        #: What the job is about (the domain, for Kepler); None until the API says.
        self.subject = subject
        self._api = api
        self._http = http  # the API this job belongs to (one engine serves several)
        self._policy = policy
        self._scheduler = scheduler
        self._state: State = "pending"
        self._result: R | None = None
        self._error: BaseException | None = None
        self._event: anyio.Event | None = None
        self._callbacks: list[Callable[[JobHandle[R]], object]] | None = None
        # Scheduling state, owned by the scheduler.
        self._attempt = 0
        self._due = math.inf
        self._deadline = math.inf
        self._submitted_at = 0.0
        self._fetch: Request | None = None
        self._last_error: BaseException | None = None
        self._pending_age = 0.0  # age at the last poll that found the job pending
        self._resumed = False  # resumed jobs have an unknown start: not for learning

    # --- the scheduler's heap orders handles by due time --------------------------------

    def __lt__(self, other: JobHandle[Any]) -> bool:
        return self._due < other._due

    # --- state --------------------------------------------------------------------------

    @property
    def status(self) -> State:
        """``pending``, ``done``, ``failed`` or ``cancelled`` (local polling stopped)."""
        return self._state

    def done(self) -> bool:
        """True once the handle has a result or an error."""
        return self._state != "pending"

    def exception(self) -> BaseException | None:
        """The failure of a finished handle (None if it succeeded or is pending)."""
        return self._error

    def add_done_callback(self, callback: Callable[[JobHandle[R]], object]) -> None:
        """Call ``callback(handle)`` when the handle finishes (at once if it has)."""
        if self.done():
            callback(self)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    def cancel(self) -> bool:
        """Stop polling this job here. The job runs on server-side; ``resume`` re-attaches.

        Waiters get ``PollingCancelled``. Returns False if the handle was already done.
        """
        if self.done():
            return False
        error = PollingCancelled(
            "local polling was cancelled; the job goes on server-side", job_id=self.job_id
        )
        self._finish("cancelled", None, error)
        if self._scheduler is not None:
            self._scheduler.forget(self)
        return True

    # --- waiting ------------------------------------------------------------------------

    def _outcome(self) -> R:
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]  # done and no error: a result

    async def _wait(self) -> R:
        if not self.done():
            if self._scheduler is not None:
                self._scheduler.ensure_running()
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        return self._outcome()

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait().__await__()

    async def result(self, timeout: float | None = None) -> R:  # noqa: ASYNC109 (futures API)
        """Wait for the result, at most ``timeout`` seconds (``TimeoutError`` after that).

        A timeout here only stops this wait; the job is still polled.
        """
        if timeout is None:
            return await self
        with anyio.move_on_after(timeout):
            return await self
        raise TimeoutError(f"job {self.job_id} did not finish within {timeout:g}s")

    # --- resolution (the scheduler calls these) ---------------------------------------------

    def _finish(self, state: State, result: R | None, error: BaseException | None) -> None:
        if self.done():
            return
        self._state = state
        self._result = result
        self._error = error
        self._fetch = None
        self._last_error = None
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            callback(self)

    def _resolve(self, result: R) -> None:
        self._finish("done", result, None)

    def _fail(self, error: BaseException) -> None:
        self._finish("failed", None, error)

    # --- display ------------------------------------------------------------------------

    def _describe(self) -> str:
        parts = [self.job_id or "inline", self.subject or "?", self._state]
        if self._state == "pending" and self._scheduler is not None:
            parts.append(f"{self._attempt} polls")
            due_in = self._due - self._scheduler.now()
            if math.isfinite(due_in) and math.isfinite(self._scheduler.now()):
                parts.append(f"next poll in {max(0.0, due_in):.1f}s")
        elif self._error is not None:
            parts.append(type(self._error).__name__)
        return " ".join(parts[:3]) + (", " + ", ".join(parts[3:]) if parts[3:] else "")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._describe()}>"


class ScoreJob(JobHandle[Score]):
    """A Kepler score on its way: ``await job`` gives the ``Score``."""

    __slots__ = ()

    @property
    def domain(self) -> str | None:
        """The domain being scored."""
        return self.subject
