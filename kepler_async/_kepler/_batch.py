"""``score_many``: many domains through one client, one outcome per input.

Every input ends as exactly one ``ScoreOutcome``: ``scored``, ``failed`` (with a typed
error, ``InvalidDomain`` included) or ``not_attempted`` (with the reason). Inputs that
normalise to the same domain share one job. Submits run in the engine's task
group; a job costs no task while it waits, only a done-callback.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Literal

import anyio
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

#: Longest wait for a per-key or per-account breaker before giving up on a submit.
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


class _Batch:
    def __init__(
        self,
        engine: JobEngine,
        submit: Submit,
        *,
        max_outstanding: int,
        force_fresh: bool,
        deadline: float | None,
    ) -> None:
        self._engine = engine
        self._submit_one = submit
        self._force_fresh = force_fresh
        self._deadline = deadline
        self._slots = anyio.Semaphore(max_outstanding)
        self._send, self.receive = anyio.create_memory_object_stream[ScoreOutcome](math.inf)
        self._groups: dict[str, _Group] = {}
        self._open_groups = 0
        self._feeding = True
        self._stop_reason: str | None = None

    # --- emitting -----------------------------------------------------------------------

    def _emit(self, outcome: ScoreOutcome) -> None:
        # The consumer may have stopped iterating: then the outcome has nowhere to go.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(outcome)

    def _maybe_end(self) -> None:
        if not self._feeding and self._open_groups == 0:
            self._send.close()

    def _finish_group(self, group: _Group, template: ScoreOutcome) -> None:
        group.outcome_template = template
        for index, raw in group.members:
            self._emit(attrs.evolve(template, index=index, input=raw))
        self._open_groups -= 1
        self._slots.release()
        self._maybe_end()

    def _not_attempted(self, index: int, raw: str, domain: str | None) -> None:
        self._emit(
            ScoreOutcome(
                index=index,
                input=raw,
                domain=domain,
                status="not_attempted",
                reason=self._stop_reason,
            )
        )

    # --- feeding ------------------------------------------------------------------------

    async def feed(self, domains: Iterable[str] | AsyncIterable[str]) -> None:
        try:
            index = 0
            if isinstance(domains, AsyncIterable):
                async for raw in domains:
                    await self._take(index, raw)
                    index += 1
            else:
                for raw in domains:
                    await self._take(index, raw)
                    index += 1
        finally:
            self._feeding = False
            self._maybe_end()

    async def _take(self, index: int, raw: object) -> None:
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
        if self._stopped():
            self._not_attempted(index, shown, domain)
            return
        await self._slots.acquire()
        if self._stopped():  # it may have stopped while this input waited for a slot
            self._slots.release()
            self._not_attempted(index, shown, domain)
            return
        group = _Group(domain, [(index, shown)])
        self._groups[domain] = group
        self._open_groups += 1
        self._engine.scheduler.start_soon(self._submit, group)

    async def _submit(self, group: _Group) -> None:
        base = ScoreOutcome(index=-1, input="", domain=group.domain, status="failed")
        waited = 0.0
        while True:
            try:
                job = await self._submit_one(group.domain, self._force_fresh, self._deadline)
            except ColdBudgetExhausted as error:
                self._stop(f"not submitted: the cold budget is exhausted ({error.message})")
                self._finish_group(group, attrs.evolve(base, error=error))
                return
            except AuthenticationError as error:
                self._stop(f"not submitted: the API key was refused ({error.message})")
                self._finish_group(group, attrs.evolve(base, error=error))
                return
            except RateLimited as error:
                # A breaker started nothing and billed nothing: wait it out and retry.
                pause = error.retry_after
                if pause is None or waited + pause > MAX_BREAKER_WAIT:
                    self._finish_group(group, attrs.evolve(base, error=error))
                    return
                waited += pause
                await anyio.sleep(pause)
                continue
            except KeplerError as error:
                self._finish_group(group, attrs.evolve(base, error=error))
                return
            break

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

    def _stopped(self) -> bool:
        return self._stop_reason is not None

    def _stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason


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
        max_outstanding: int,
        force_fresh: bool,
        deadline: float | None,
    ) -> None:
        self._outcomes = _outcomes(
            engine,
            submit,
            domains,
            max_outstanding=max_outstanding,
            force_fresh=force_fresh,
            deadline=deadline,
        )

    def __aiter__(self) -> ScoreBatch:
        return self

    async def __anext__(self) -> ScoreOutcome:
        return await self._outcomes.__anext__()

    async def aclose(self) -> None:
        """Stop: nothing more is submitted; jobs already submitted go on."""
        await self._outcomes.aclose()

    async def __aenter__(self) -> ScoreBatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _outcomes(
    engine: JobEngine,
    submit: Submit,
    domains: Iterable[str] | AsyncIterable[str],
    *,
    max_outstanding: int,
    force_fresh: bool,
    deadline: float | None,
) -> AsyncGenerator[ScoreOutcome, None]:
    await engine.started()
    batch = _Batch(
        engine, submit, max_outstanding=max_outstanding, force_fresh=force_fresh, deadline=deadline
    )
    engine.scheduler.start_soon(batch.feed, domains)
    try:
        async with batch.receive:
            async for outcome in batch.receive:
                yield outcome
    finally:
        batch._stop("not submitted: the caller stopped iterating")
