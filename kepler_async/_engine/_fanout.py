"""Fan-out: many inputs through one client, one outcome per input (every ``*_many``).

Every input ends as exactly one ``Outcome``: ``done`` (with its result), ``failed``
(with a typed error, a bad input's included) or ``not_attempted`` (with the reason).
Inputs with the same *key* (what an API's ``FanOutPlan`` says identifies them: a
normalised domain, a content hash, an idempotency key) share one job.

The caller's iterable is read in the caller's task, as the caller iterates (an error
it raises reaches the caller; breaking out stops reading it); at most
``max_outstanding`` keys are submitted and unfinished at a time. Submits run in the
engine's task group; a job costs no task while it waits, only a done-callback. A
submit-scoped 429 (a quota of paid work) ends the inputs not yet submitted as
``not_attempted``, with the time it lifts, unless ``wait_for_budget`` asks to wait for
it; a request-rate 429 is waited out. A refused key, or an error the plan says ends
the budget, stops the batch. Closing the client ends the batch at once: unfinished
inputs come out ``failed`` with ``ClientClosed`` (carrying the job id where there is
one). Each API turns the generic ``Outcome`` into its own type (``ScoreOutcome``).
"""

from __future__ import annotations

import collections
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sized,
)
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import attrs

from kepler_async._exceptions import (
    AuthenticationError,
    ClientClosed,
    KeplerError,
    RateLimited,
    SubmitUncertain,
)

from ._binding import Binding
from ._cap import ColdCap
from ._fanout_plan import FanOutPlan, Outcome
from ._handle import JobHandle
from ._progress import BatchProgress, progress_bar

__all__ = ["MAX_THROTTLE_WAIT", "FanOut"]

R = TypeVar("R")
I = TypeVar("I")  # noqa: E741 - an input, as the plan checked it
O = TypeVar("O")  # noqa: E741 - the outcome type an API hands out

#: Longest wait for a request-rate 429 (or, with ``wait_for_budget``, a limit on paid
#: work) before an input is given up as ``not_attempted``.
MAX_THROTTLE_WAIT = 3600.0
#: How many outcomes are handed over before more inputs are read.
_HAND_OVER_AT = 64


@attrs.define(eq=False)
class _Group(Generic[I]):
    """All the inputs with one key; they share one job."""

    key: str
    item: I
    members: list[tuple[int, object]]
    template: Outcome[Any] | None = None
    job_id: str | None = None
    #: Its span, when traced (``Telemetry.start_item``).
    span: Any = None


def _clock_time(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))


class _Batch(Generic[I, R]):
    """The state of one fan-out: groups in flight, outcomes ready to hand out."""

    def __init__(
        self,
        binding: Binding[Any],
        plan: FanOutPlan[I, R],
        *,
        max_outstanding: int,
        deadline: float | None,
        wait_for_budget: bool,
        max_cold_runs: int | None = None,
    ) -> None:
        self._binding = binding
        self._plan = plan
        self._deadline = deadline
        self._wait_for_budget = wait_for_budget
        self._room = max_outstanding
        self.cap = ColdCap(max_cold_runs)
        self.ready: collections.deque[Outcome[R]] = collections.deque()
        self._wake: anyio.Event | None = None
        self._groups: dict[str, _Group[I]] = {}
        self.open_groups = 0
        self._stop_reason: str | None = None
        self.closed = False
        #: While submits wait for a limit on paid work to lift: when (wall clock).
        self.waiting_until: float | None = None

    # --- outcomes -----------------------------------------------------------------------

    def _emit(self, outcome: Outcome[R]) -> None:
        self.ready.append(outcome)
        if self._wake is not None:
            self._wake.set()

    def pop(self) -> Outcome[R] | None:
        return self.ready.popleft() if self.ready else None

    async def wait(self) -> None:
        """Until an outcome is ready (or the client closes)."""
        if not self.ready and not self.closed:
            self._wake = anyio.Event()
            try:
                await self._wake.wait()
            finally:
                self._wake = None

    def _finish(self, group: _Group[I], template: Outcome[R]) -> None:
        if group.template is not None:
            return
        group.template = template
        self._binding.http.telemetry.end_item(
            group.span, template.status, template.error, template.job_id
        )
        for index, raw in group.members:
            self._emit(attrs.evolve(template, index=index, input=raw))
        self.open_groups -= 1
        self._room += 1

    def has_room(self) -> bool:
        return self._room > 0

    # --- inputs -------------------------------------------------------------------------

    def take(self, index: int, raw: object) -> None:
        """One input, read by the caller's task: an outcome now, or a group submitted."""
        try:
            key, item = self._plan.identify(raw)
        except KeplerError as error:
            self._emit(Outcome(index=index, input=raw, key=None, status="failed", error=error))
            return
        group = self._groups.get(key)
        if group is not None:  # a duplicate: it shares the first one's job
            if group.template is not None:
                self._emit(attrs.evolve(group.template, index=index, input=raw))
            else:
                group.members.append((index, raw))
            return
        if self.closed:
            closed = ClientClosed("the client was closed before this input was submitted")
            self._emit(Outcome(index=index, input=raw, key=key, status="failed", error=closed))
            return
        if self._stop_reason is not None:
            self._emit(
                Outcome(
                    index=index,
                    input=raw,
                    key=key,
                    status="not_attempted",
                    reason=self._stop_reason,
                )
            )
            return
        group = _Group(key, item, [(index, raw)])
        group.span = self._binding.http.telemetry.start_item(key)
        self._groups[key] = group
        self.open_groups += 1
        self._room -= 1
        self._binding.scheduler.start_soon(self._submit, group)

    # --- submitting (in the engine's task group) ----------------------------------------

    async def _submit(self, group: _Group[I]) -> None:
        base: Outcome[R] = Outcome(index=-1, input=None, key=group.key, status="failed")
        waited = 0.0
        while True:
            if self._stop_reason is not None:
                skipped = attrs.evolve(base, status="not_attempted", reason=self._stop_reason)
                self._finish(group, skipped)
                return
            if not await self.cap.take():
                reason = f"not submitted: {self.cap.reached}"
                self._finish(group, attrs.evolve(base, status="not_attempted", reason=reason))
                return
            try:
                with self._binding.http.telemetry.current(group.span):
                    handle = await self._plan.submit(group.key, group.item, self._deadline)
            except KeplerError as error:
                self.cap.answered(billed=isinstance(error, SubmitUncertain))  # in doubt: paid
                if isinstance(error, RateLimited) and self._plan.stops(error) is None:
                    pause = self._pause(error, waited)
                    if pause is not None:  # wait it out, then submit again
                        waited += pause
                        await anyio.sleep(pause)
                        self.waiting_until = None
                        continue
                    reason = self._stop_reason or f"not submitted: {error.message}"
                    outcome = attrs.evolve(base, status="not_attempted", reason=reason)
                    self._finish(group, attrs.evolve(outcome, error=error))
                    return
                self._stopped_by(error)
                self._finish(group, attrs.evolve(base, error=error))
                return
            self.cap.answered(billed=handle._record.billed)
            break
        group.job_id = handle.job_id
        handle.add_done_callback(lambda done: self._finish(group, self._ended(base, done)))

    def _pause(self, error: RateLimited, waited: float) -> float | None:
        """How long to wait out a 429 before submitting again, or None to give up (a
        limit on paid work stops the batch unless told to wait for it)."""
        pause = error.retry_after if error.retry_after is not None else 5.0
        lifts = time.time() + pause
        paid = self._binding.dialect.throttle_scope(error) == "submits"
        if (paid and not self._wait_for_budget) or waited + pause > MAX_THROTTLE_WAIT:
            if paid:
                self._stop(
                    f"not submitted: {error.reason or self._plan.limit_name} was reached; "
                    f"it lifts at {_clock_time(lifts)}"
                )
            return None
        if paid:
            self.waiting_until = lifts
        return pause

    def _stopped_by(self, error: KeplerError) -> None:
        """A refused key, or what the plan says ends the budget, stops the batch."""
        if isinstance(error, AuthenticationError):
            self._stop(f"not submitted: the API key was refused ({error.message})")
        elif (reason := self._plan.stops(error)) is not None:
            self._stop(f"not submitted: {reason}")

    @staticmethod
    def _ended(base: Outcome[R], handle: JobHandle[R]) -> Outcome[R]:
        error = handle.exception()
        if error is None:
            return attrs.evolve(
                base, status="done", result=handle.result_nowait(), job_id=handle.job_id
            )
        if not isinstance(error, KeplerError):  # pragma: no cover - handles fail with ours
            error = ClientClosed(str(error), job_id=handle.job_id)
        return attrs.evolve(base, error=error, job_id=handle.job_id)

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason

    def close(self) -> None:
        """The client closed: every unfinished input fails with ``ClientClosed`` now."""
        self.closed = True
        for group in self._groups.values():
            if group.template is None:
                error = ClientClosed(
                    "the client was closed before this job finished", job_id=group.job_id
                )
                self._finish(
                    group,
                    Outcome(
                        index=-1,
                        input=None,
                        key=group.key,
                        status="failed",
                        error=error,
                        job_id=group.job_id,
                    ),
                )
        if self._wake is not None:
            self._wake.set()

    def stop(self, reason: str) -> None:
        self._stop(reason)


_END = object()


def _now() -> float:
    """The event loop's clock (virtual in tests on virtual time), or, read from code
    outside the loop (a notebook cell with no ``await``), the monotonic clock the loop
    reads outside tests."""
    try:
        return anyio.current_time()
    except RuntimeError:
        return time.monotonic()


class FanOut(Generic[O]):
    """What a ``*_many`` verb returns: an async iterator of outcomes, one per input as
    each finishes, and an async context manager (``aclose()`` stops it, as
    ``contextlib.aclosing`` expects). See the module docstring."""

    def __init__(
        self,
        binding: Binding[Any],
        plan: FanOutPlan[Any, Any],
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        convert: Callable[[Outcome[Any]], O],
        max_outstanding: int,
        deadline: float | None,
        wait_for_budget: bool = False,
        max_cold_runs: int | None = None,
    ) -> None:
        self._binding = binding
        self._convert = convert
        self._batch: _Batch[Any, Any] = _Batch(
            binding,
            plan,
            max_outstanding=max_outstanding,
            deadline=deadline,
            wait_for_budget=wait_for_budget,
            max_cold_runs=max_cold_runs,
        )
        self._unsubscribe = binding.on_close(self._batch.close)
        if isinstance(inputs, AsyncIterable):
            self._aiter: AsyncIterator[object] | None = aiter(inputs)
            self._iter: Iterator[object] | None = None
        else:
            self._aiter = None
            self._iter = iter(inputs)
        self._index = 0
        self._exhausted = False
        self._started = False
        self._done = False
        self._total: int | None = len(inputs) if isinstance(inputs, Sized) else None
        self._counts = {"done": 0, "failed": 0, "not_attempted": 0}
        self._began: float | None = None

    def progress(self) -> BatchProgress:
        """Where the batch stands: outcomes handed out by status, inputs read, billed
        runs started, time so far and left. Costs the same whatever the batch's size;
        a progress line or a health endpoint may read it as often as it likes."""
        counts = self._counts
        return BatchProgress(
            total=self._index if self._exhausted else self._total,
            read=self._index,
            done=counts["done"],
            failed=counts["failed"],
            not_attempted=counts["not_attempted"],
            cold_runs_started=self._batch.cap.billed,
            max_cold_runs=self._batch.cap.limit,
            elapsed=0.0 if self._began is None else _now() - self._began,
            waiting_until=self._batch.waiting_until,
        )

    async def collect(self, *, progress: bool = False) -> list[O]:
        """Every outcome, in the order they finished; with ``progress=True`` a progress
        bar (tqdm's, notebook-aware: the ``progress`` extra) shows the batch as it goes."""
        bar = progress_bar(self._total) if progress else None
        outcomes: list[O] = []
        try:
            async for outcome in self:
                outcomes.append(outcome)
                if bar is not None:
                    now = self.progress()
                    bar.update(1)
                    bar.set_postfix(failed=now.failed, cold_runs=now.cold_runs_started)
        finally:
            if bar is not None:
                bar.close()
        return outcomes

    @property
    def waiting_until(self) -> float | None:
        """While submits wait for a limit on paid work to lift (``wait_for_budget``):
        the wall-clock time (``time.time()``) it lifts; otherwise None."""
        return self._batch.waiting_until

    def __aiter__(self) -> FanOut[O]:
        return self

    async def _next_input(self) -> object:
        """The next input, or ``_END`` (a coroutine may not let ``StopIteration`` out)."""
        if self._aiter is not None:
            try:
                return await anext(self._aiter)
            except StopAsyncIteration:
                return _END
        assert self._iter is not None
        return next(self._iter, _END)

    async def __anext__(self) -> O:
        if self._done:
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            await self._binding.host.started()
        if self._began is None:
            self._began = _now()
        batch = self._batch
        while True:
            outcome = batch.pop()
            if outcome is None:
                await self._read_inputs()
                outcome = batch.pop()
            if outcome is not None:
                self._counts[outcome.status] += 1
                return self._convert(outcome)
            if self._exhausted and batch.open_groups == 0:
                await self.aclose()
                raise StopAsyncIteration
            await batch.wait()

    async def _read_inputs(self) -> None:
        """Read inputs while there is room for them (in this, the caller's, task)."""
        batch = self._batch
        while not self._exhausted and (batch.has_room() or batch.closed):
            raw = await self._next_input()
            if raw is _END:
                self._exhausted = True
                return
            batch.take(self._index, raw)
            self._index += 1
            if batch.closed:
                return  # one input at a time once closed: the caller may stop
            if len(batch.ready) >= _HAND_OVER_AT:
                return  # hand over what is ready before reading on

    async def aclose(self) -> None:
        """Stop: nothing more is read or submitted; jobs already submitted go on."""
        if not self._done:
            self._done = True
            self._batch.stop("not submitted: the caller stopped iterating")
            self._unsubscribe()
            await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> FanOut[O]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
