"""``score_many``: many domains through one client, one outcome per input.

Every input ends as exactly one ``ScoreOutcome``: ``scored``, ``failed`` (with a typed
error, ``InvalidDomain`` included) or ``not_attempted`` (with the reason). Inputs that
normalise to the same domain share one job.

The caller's iterable is read in the caller's task, as the caller iterates (an error
it raises reaches the caller; breaking out stops reading it). Submits run in the
engine's task group; a job costs no task while it waits, only a done-callback. A
cold-run limit (a submit-scoped 429) ends the inputs not yet submitted as
``not_attempted``, with the time the limit lifts, unless ``wait_for_budget`` asks to
wait for it. Closing the client ends the batch at once: unfinished inputs come out
``failed`` with ``ClientClosed`` (carrying the job id where there is one).
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.lowlevel
import attrs

from kepler_async._exceptions import (
    AuthenticationError,
    ClientClosed,
    ColdBudgetExhausted,
    InvalidDomain,
    KeplerError,
    RateLimited,
)

from ._domains import normalize_domain
from ._models import Score

if TYPE_CHECKING:
    from kepler_async._engine._engine import JobEngine

    from ._job import ScoreJob

#: ``submit(domain, force_fresh, deadline)``: one domain's job, submitted from a task
#: of the engine (``AsyncKepler._submit_domain``).
Submit = Callable[[str, bool, "float | None"], Awaitable["ScoreJob"]]

__all__ = ["ScoreBatch", "ScoreOutcome"]

Status = Literal["scored", "failed", "not_attempted"]

#: Longest wait for a request-rate 429 (or, with ``wait_for_budget``, a cold-run
#: limit) before an input is given up as ``not_attempted``.
MAX_BREAKER_WAIT = 3600.0


@attrs.frozen(kw_only=True)
class ScoreOutcome:
    """What became of one input of ``score_many``."""

    index: int
    input: str
    domain: str | None
    status: Status
    score: Score | None = None
    error: KeplerError | None = None
    job_id: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "scored"


@attrs.define(eq=False)
class _Group:
    """All the inputs that normalise to one domain; they share one job."""

    domain: str
    members: list[tuple[int, str]]
    outcome_template: ScoreOutcome | None = None
    job_id: str | None = None


def _clock_time(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))


class _Batch:
    """The state of one ``score_many``: groups in flight, outcomes ready to yield."""

    def __init__(
        self,
        engine: JobEngine,
        submit: Submit,
        *,
        throttle: Callable[[RateLimited], str],
        max_outstanding: int,
        force_fresh: bool,
        deadline: float | None,
        wait_for_budget: bool,
    ) -> None:
        self._engine = engine
        self._submit_one = submit
        self._throttle = throttle
        self._force_fresh = force_fresh
        self._deadline = deadline
        self._wait_for_budget = wait_for_budget
        self._room = max_outstanding
        self._ready: collections.deque[ScoreOutcome] = collections.deque()
        self._wake: anyio.Event | None = None
        self._groups: dict[str, _Group] = {}
        self.open_groups = 0
        self._stop_reason: str | None = None
        self.closed = False
        #: While submits wait for a cold-run limit to lift: when it lifts (wall clock).
        self.waiting_until: float | None = None

    # --- outcomes -----------------------------------------------------------------------

    def _emit(self, outcome: ScoreOutcome) -> None:
        self._ready.append(outcome)
        if self._wake is not None:
            self._wake.set()

    def pop(self) -> ScoreOutcome | None:
        return self._ready.popleft() if self._ready else None

    async def wait(self) -> None:
        """Until an outcome is ready (or the client closes)."""
        if not self._ready and not self.closed:
            self._wake = anyio.Event()
            try:
                await self._wake.wait()
            finally:
                self._wake = None

    def _finish_group(self, group: _Group, template: ScoreOutcome) -> None:
        if group.outcome_template is not None:
            return
        group.outcome_template = template
        for index, raw in group.members:
            self._emit(attrs.evolve(template, index=index, input=raw))
        self.open_groups -= 1
        self._room += 1

    def has_room(self) -> bool:
        return self._room > 0

    # --- inputs -------------------------------------------------------------------------

    def take(self, index: int, raw: object) -> None:
        """One input, read by the caller's task: an outcome now, or a group submitted."""
        shown = raw if isinstance(raw, str) else repr(raw)
        try:
            domain = normalize_domain(raw)
        except InvalidDomain as error:
            self._emit(
                ScoreOutcome(index=index, input=shown, domain=None, status="failed", error=error)
            )
            return
        group = self._groups.get(domain)
        if group is not None:  # a duplicate: it shares the first one's job
            if group.outcome_template is not None:
                self._emit(attrs.evolve(group.outcome_template, index=index, input=shown))
            else:
                group.members.append((index, shown))
            return
        if self.closed:
            closed = ClientClosed("the client was closed before this input was submitted")
            self._emit(
                ScoreOutcome(index=index, input=shown, domain=domain, status="failed", error=closed)
            )
            return
        if self._stop_reason is not None:
            self._emit(
                ScoreOutcome(
                    index=index,
                    input=shown,
                    domain=domain,
                    status="not_attempted",
                    reason=self._stop_reason,
                )
            )
            return
        group = _Group(domain, [(index, shown)])
        self._groups[domain] = group
        self.open_groups += 1
        self._room -= 1
        self._engine.scheduler.start_soon(self._submit, group)

    # --- submitting (in the engine's task group) ----------------------------------------

    async def _submit(self, group: _Group) -> None:
        base = ScoreOutcome(index=-1, input="", domain=group.domain, status="failed")
        waited = 0.0
        while True:
            if self._stop_reason is not None:
                not_attempted = attrs.evolve(base, status="not_attempted")
                self._finish_group(group, attrs.evolve(not_attempted, reason=self._stop_reason))
                return
            try:
                job = await self._submit_one(group.domain, self._force_fresh, self._deadline)
            except ColdBudgetExhausted as error:  # lifts next month: never waited for
                self._stop(f"not submitted: the cold budget is exhausted ({error.message})")
                self._finish_group(group, attrs.evolve(base, error=error))
                return
            except AuthenticationError as error:
                self._stop(f"not submitted: the API key was refused ({error.message})")
                self._finish_group(group, attrs.evolve(base, error=error))
                return
            except RateLimited as error:
                # Nothing was started or billed. A cold-run limit stops the batch's
                # submits unless told to wait; a request rate is waited out.
                pause = error.retry_after if error.retry_after is not None else 5.0
                lifts = time.time() + pause
                cold = self._throttle(error) == "submits"
                if (cold and not self._wait_for_budget) or waited + pause > MAX_BREAKER_WAIT:
                    if cold:
                        self._stop(
                            f"not submitted: {error.reason or 'a cold-run limit'} was reached; "
                            f"it lifts at {_clock_time(lifts)}"
                        )
                    reason = self._stop_reason or f"not submitted: {error.message}"
                    outcome = attrs.evolve(base, status="not_attempted", reason=reason)
                    self._finish_group(group, attrs.evolve(outcome, error=error))
                    return
                waited += pause
                if cold:
                    self.waiting_until = lifts
                await anyio.sleep(pause)
                self.waiting_until = None
                continue
            except KeplerError as error:
                self._finish_group(group, attrs.evolve(base, error=error))
                return
            break
        group.job_id = job.job_id

        def done(handle: ScoreJob) -> None:
            error = handle.exception()
            if error is None:
                template = attrs.evolve(
                    base, status="scored", score=handle.result_nowait(), job_id=handle.job_id
                )
            elif isinstance(error, KeplerError):
                template = attrs.evolve(base, error=error, job_id=handle.job_id)
            else:  # pragma: no cover - handles only fail with KeplerError
                template = attrs.evolve(base, error=ClientClosed(str(error), job_id=handle.job_id))
            self._finish_group(group, template)

        job.add_done_callback(done)

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def close(self) -> None:
        """The client closed: every unfinished input fails with ``ClientClosed`` now."""
        self.closed = True
        for group in self._groups.values():
            if group.outcome_template is None:
                error = ClientClosed(
                    "the client was closed before this job finished", job_id=group.job_id
                )
                self._finish_group(
                    group,
                    ScoreOutcome(
                        index=-1,
                        input="",
                        domain=group.domain,
                        status="failed",
                        error=error,
                        job_id=group.job_id,
                    ),
                )
        if self._wake is not None:
            self._wake.set()

    def stop(self, reason: str) -> None:
        self._stop(reason)


class ScoreBatch:
    """What ``AsyncKepler.score_many`` returns: an async iterator of ``ScoreOutcome``,
    one per input as each finishes, and an async context manager (``aclose()`` stops
    it, as ``contextlib.aclosing`` expects)."""

    def __init__(
        self,
        engine: JobEngine,
        submit: Submit,
        domains: Iterable[str] | AsyncIterable[str],
        *,
        throttle: Callable[[RateLimited], str],
        on_close: Callable[[Callable[[], None]], Callable[[], None]],
        max_outstanding: int,
        force_fresh: bool,
        deadline: float | None,
        wait_for_budget: bool = False,
    ) -> None:
        self._engine = engine
        self._batch = _Batch(
            engine,
            submit,
            throttle=throttle,
            max_outstanding=max_outstanding,
            force_fresh=force_fresh,
            deadline=deadline,
            wait_for_budget=wait_for_budget,
        )
        self._unsubscribe = on_close(self._batch.close)
        if isinstance(domains, AsyncIterable):
            self._aiter: AsyncIterator[object] | None = aiter(domains)
            self._iter: Iterator[object] | None = None
        else:
            self._aiter = None
            self._iter = iter(domains)
        self._index = 0
        self._exhausted = False
        self._started = False
        self._done = False

    @property
    def waiting_until(self) -> float | None:
        """While submits wait for a cold-run limit to lift (``wait_for_budget``): the
        wall-clock time (``time.time()``) it lifts; otherwise None."""
        return self._batch.waiting_until

    def __aiter__(self) -> ScoreBatch:
        return self

    _END = object()

    async def _next_input(self) -> object:
        """The next input, or ``_END`` (a coroutine may not let ``StopIteration`` out)."""
        if self._aiter is not None:
            try:
                return await anext(self._aiter)
            except StopAsyncIteration:
                return self._END
        assert self._iter is not None
        return next(self._iter, self._END)

    async def __anext__(self) -> ScoreOutcome:
        batch = self._batch
        if self._done:
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            await self._engine.started()
        while True:
            outcome = batch.pop()
            if outcome is not None:
                return outcome
            # Read inputs while there is room for them (in this, the caller's, task).
            while not self._exhausted and (batch.has_room() or batch.closed):
                raw = await self._next_input()
                if raw is self._END:
                    self._exhausted = True
                    break
                batch.take(self._index, raw)
                self._index += 1
                if batch.closed:
                    break  # one input at a time once closed: the caller may stop
                if len(batch._ready) >= 64:
                    break  # hand over what is ready before reading on
            outcome = batch.pop()
            if outcome is not None:
                return outcome
            if self._exhausted and batch.open_groups == 0:
                await self.aclose()
                raise StopAsyncIteration
            await batch.wait()

    async def aclose(self) -> None:
        """Stop: nothing more is read or submitted; jobs already submitted go on."""
        if not self._done:
            self._done = True
            self._batch.stop("not submitted: the caller stopped iterating")
            self._unsubscribe()
            await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> ScoreBatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
