"""The bottom layer: ``JobRecord``, the engine's record of one job, and ``JobOwner``,
the contract its owner (the binding of one client to an engine) fulfils.

A record is one small ``__slots__`` object, ordered by its next due time so that it
sits in the scheduler's heap directly. Its state, result and waiters live here; the
``anyio.Event`` that wakes waiters is made only when someone waits, so a job nobody
awaits yet costs no event.

``JobOwner`` names exactly what the scheduler and the handles ask of whoever owns a
record, so that both are built on this module alone and never on the binding itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

import anyio

from kepler_async._exceptions import KeplerError, RateLimited
from kepler_async._policies import PollPolicy

from ._dialect import Dialect, Request
from ._http import HttpBoundary
from ._stats import Counters

__all__ = ["JobOwner", "JobRecord", "State"]

logger = logging.getLogger("kepler_async")

R = TypeVar("R")


#: Where a job stands, as ``JobHandle.status`` says it (``cancelled``: local polling
#: stopped; the job goes on server-side).
State = Literal["pending", "done", "failed", "cancelled"]


class JobOwner(Protocol):
    """What the scheduler and the handles need from a record's owner."""

    dialect: Dialect[Any]
    http: HttpBoundary
    policy: PollPolicy
    counters: Counters
    #: A request-scoped 429: no request of this owner before this loop time.
    paused_until: float

    def settle(
        self, record: JobRecord[Any], *, result: Any = None, error: BaseException | None = None
    ) -> None:
        """End a pending record with its result or its error (counted, untracked)."""

    def untrack(self, record: JobRecord[Any]) -> None:
        """Stop tracking a record that ends otherwise (a cancelled handle)."""

    def throttled(self, error: RateLimited, *, submitting: bool) -> None:
        """A 429: hold what the dialect says it limits."""

    def fail_all(self, error: KeplerError) -> None:
        """Fail every pending record of this owner (a 401: the key is bad)."""

    def ensure_running(self) -> None:
        """Make sure something polls (a notebook's first await starts the engine)."""


class JobRecord(Generic[R]):
    """One job as the engine tracks it (see the module docstring)."""

    __slots__ = (
        "attempt",
        "billed",
        "callbacks",
        "deadline",
        "due",
        "error",
        "event",
        "fetch",
        "job_id",
        "key",
        "last_error",
        "owner",
        "pending_age",
        "result",
        "resumed",
        "state",
        "subject",
        "submitted_at",
        "trace",
    )

    def __init__(
        self, job_id: str | None, subject: str | None, owner: JobOwner | None = None
    ) -> None:
        #: The API's id for the job; None when the answer came inline (a cached result).
        self.job_id = job_id
        #: What the job is about (the domain, for Kepler); None until the API says.
        self.subject = subject
        self.owner = owner
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
        #: The context of the call that submitted or resumed it: its requests are
        #: recorded in that call's trace (``_telemetry``).
        self.trace: object = None
        #: True when the API accepted this job's submit here (a 202: a run that is
        #: paid for); False for a result at once, and a job resumed or replayed.
        self.billed = False

    @classmethod
    def finished(
        cls,
        job_id: str | None,
        subject: str | None,
        *,
        result: R | None = None,
        error: BaseException | None = None,
    ) -> JobRecord[R]:
        """A job that is over already (an inline answer, or one the journal knew)."""
        record: JobRecord[R] = cls(job_id, subject)
        if error is None:
            record.settle("done", result, None)
        else:
            record.settle("failed", None, error)
        return record

    def __lt__(self, other: JobRecord[Any]) -> bool:  # breaks exact ties in the heap
        return self.due < other.due

    def done(self) -> bool:
        return self.state != "pending"

    def settle(self, state: State, result: R | None, error: BaseException | None) -> None:
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
