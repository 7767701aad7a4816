"""What one poll does: send, classify, and decide when (or whether) to poll again.

``Poller.step`` polls one job (and fetches its result when the poll says it is done);
the scheduler (``_scheduler``) decides which job and on which in-flight slot. A
transient failure (a timeout, a 5xx, an answer that could not be read) is tried
again on the job's schedule until its deadline; a 429 pauses the job's owner; a 401
fails every job of the owner; anything else fails this job. The next poll comes
after the poll policy's delay, or, with an adaptive policy, when the API's jobs
usually end (``_adaptive``, learned from the polls that bracket each job's end).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import anyio

from kepler_async._exceptions import (
    AuthenticationError,
    DeadlineExceeded,
    KeplerError,
    ProtocolError,
    RateLimited,
    ServerError,
    TransportError,
)
from kepler_async._policies import RetryPolicy

from ._adaptive import DurationModel
from ._dialect import Done, Failed, Fetch, Pending, Request
from ._progress import JobEvent, emit
from ._record import JobOwner, JobRecord

__all__ = ["DEADLINE_GRACE", "EARLY", "Poller", "deadline_exceeded"]

logger = logging.getLogger("kepler_async")

#: uvloop and friends wake timers up to ~1 ms early; anything due that soon is due now.
EARLY = 0.001
#: How long after its deadline a job's last poll may still answer (seconds): a poll in
#: flight then is abandoned, and a job that waited that long for a free slot fails
#: without it, so ``DeadlineExceeded`` comes at most about 0.2 s late
#: (benchmarks/deadlines.py).
DEADLINE_GRACE = 0.15
#: The engine does its own retrying (on each job's schedule), so requests it sends are
#: tried once by the HTTP layer.
_ONCE = RetryPolicy(attempts=1)


def _unreadable(error: BaseException) -> ProtocolError:
    """A ``ProtocolError`` for an answer that could not be read at all."""
    wrapped = ProtocolError(f"the answer could not be read ({type(error).__name__})")
    wrapped.__cause__ = error
    return wrapped


def deadline_exceeded(record: JobRecord[Any], now: float, why: str | None = None) -> None:
    """Fail a job that is still pending at its deadline (the last error as its cause)."""
    waited = now - record.submitted_at
    error = DeadlineExceeded(
        f"job {record.job_id} ({record.subject}) was still pending at its deadline, "
        f"{waited:.1f}s after it was watched{f' ({why})' if why else ''}; it goes on "
        "server-side and can be resumed by its job id",
        job_id=record.job_id,
        subject=record.subject,
    )
    error.__cause__ = record.last_error
    settle(record, error=error)


def settle(
    record: JobRecord[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    """End a pending job through its owner (which counts and untracks it)."""
    owner = record.owner
    if record.done() or owner is None:
        return
    owner.settle(record, result=result, error=error)


class Poller:
    """Polls one job at a time for the scheduler (see the module docstring)."""

    def __init__(
        self,
        push: Callable[[JobRecord[Any], float], None],
        rand: Callable[[], float],
    ) -> None:
        self._push = push  # the scheduler's: poll ``job`` next at loop time ``due``
        self._rand = rand
        self._models: dict[str, DurationModel] = {}
        self.clock: Callable[[], float] = anyio.current_time

    async def step(self, job: JobRecord[Any]) -> None:
        """One poll of ``job`` (and the result fetch, if the poll says it is done)."""
        owner = job.owner
        job_id = job.job_id
        assert owner is not None
        assert job_id is not None
        api = owner.dialect
        counters = owner.counters
        while not job.done():
            fetching = job.fetch is not None
            request = job.fetch or api.poll_request(job_id)
            now = self.clock()
            if now >= job.deadline + DEADLINE_GRACE:  # it waited past its deadline
                deadline_exceeded(job, self.clock(), "no request slot was free at its deadline")
                return
            try:
                if job.deadline == math.inf:
                    body = await self._send(owner, job, request, poll=not fetching)
                else:
                    # A hard stop: an answer that has not come by the deadline (and
                    # its grace), body included, is not waited for.
                    with anyio.move_on_after(job.deadline + DEADLINE_GRACE - now) as scope:
                        body = await self._send(owner, job, request, poll=not fetching)
                    if scope.cancelled_caught:
                        deadline_exceeded(
                            job,
                            self.clock(),
                            "the poll in flight at its deadline had no answer yet",
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
                    self.reschedule(job, error)
                elif isinstance(error, RateLimited):
                    owner.throttled(error, submitting=False)
                    self.reschedule(job, error)
                elif isinstance(error, AuthenticationError):
                    owner.fail_all(error)
                else:
                    if fetching:
                        error = api.result_missing(job_id, job.subject, error)
                    settle(job, error=error)
                return
            if fetching:
                counters.results_fetched += 1
                self._apply(job, api.classify_result, body, polled=False)
                return
            counters.polls_sent += 1
            if not self._apply(job, api.classify_poll, body, polled=True):
                return

    def _apply(
        self, job: JobRecord[Any], classify: Callable[..., Any], body: Any, *, polled: bool
    ) -> bool:
        """Apply a classified answer; True when the step should go on to a fetch."""
        try:
            state = classify(job.job_id, job.subject, body)
        except KeplerError as error:  # a ProtocolError: the answer cannot be read
            settle(job, error=error)
            return False
        except Exception as error:  # a dialect tripped on the bytes: this job only
            settle(job, error=_unreadable(error))
            return False
        if isinstance(state, Pending):
            assert job.owner is not None
            job.owner.counters.polls_unchanged += 1
            job.pending_age = self.clock() - job.submitted_at
            if job.subject is None:
                job.subject = state.subject
            self.reschedule(job, None)
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
            settle(job, result=state.result)
            return False
        if isinstance(state, Failed):
            self._learn(job)
            settle(job, error=state.error)
            return False
        unknown = ProtocolError(
            f"the {job.owner.dialect.name if job.owner else ''} dialect classified an "
            f"answer as {type(state).__name__}, which the engine does not know"
        )
        settle(job, error=unknown)
        return False

    async def _send(
        self, owner: JobOwner, job: JobRecord[Any], request: Request, *, poll: bool
    ) -> object:
        http = owner.http
        reply = await http.request(
            request.method,
            request.path,
            params=request.params,
            json=request.json,
            billed=request.billed,
            retry=_ONCE,
            max_body=http.max_poll_body if poll else http.max_body,
            template=request.template,
            trace=job.trace,
        )
        return reply.body

    def reschedule(self, job: JobRecord[Any], error: KeplerError | None) -> None:
        if job.done():
            return
        if error is not None:
            job.last_error = error
        now = self.clock()
        if now >= job.deadline - EARLY:
            deadline_exceeded(job, now)
            return
        job.attempt += 1
        delay = self.next_delay(job, now, error)
        assert job.owner is not None
        due = max(now + delay, job.owner.paused_until)
        self._push(job, min(due, job.deadline))
        telemetry = job.owner.http.telemetry
        if telemetry.on_event is not None:
            status = "pending" if error is None else "unreadable"
            event = JobEvent(
                kind="polled",
                api=telemetry.api,
                job_id=job.job_id,
                subject=job.subject,
                status=status,
                error=error,
                next_poll_in=due - now,
            )
            emit(telemetry.on_event, lambda: event)
        if logger.isEnabledFor(logging.DEBUG):
            why = "pending" if error is None else f"not read ({type(error).__name__})"
            logger.debug("job %s %s; next poll in %.3gs", job.job_id, why, due - now)

    def next_delay(self, job: JobRecord[Any], now: float, error: KeplerError | None) -> float:
        owner = job.owner
        assert owner is not None
        policy = owner.policy
        if policy.adaptive and error is None:
            model = self._models.get(owner.dialect.name)
            age = now - job.submitted_at
            target = None if model is None else model.next_age(age, min_gap=policy.interval / 2)
            if target is not None:
                return (target - age) * (1.0 - policy.jitter * self._rand())
        return policy.delay(job.attempt, self._rand)

    def _learn(self, job: JobRecord[Any]) -> None:
        """Note how long a job took, from the polls that bracket its end.

        Measured locally, so it needs nothing from the API and is on this clock.
        """
        if job.resumed or job.owner is None:
            return
        name = job.owner.dialect.name
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = DurationModel()
        age = self.clock() - job.submitted_at
        # Seen pending before: it ended between that poll and this one (take the
        # middle). Done at the first poll: all we know is that it took at most this.
        model.observe((job.pending_age + age) / 2 if job.pending_age else age)
