"""A binding: one client's place on an engine, and the one submit path of every API.

A binding joins a dialect (what the API's requests and answers mean), an HTTP boundary
(the key and base URL) and optionally a journal to an engine's scheduler. Every client
submits through ``Binding.submit``:

- the billed request runs in the engine's task group, so a caller that is cancelled
  never loses a job id (the job is watched, and journaled, all the same);
- concurrent submits with the same ``submission_key`` share one request and one job
  (``_submit.Flight``), and each caller's handle keeps that caller's own deadline;
- with a journal, a key the journal knows is served from it (``_replay``) instead of
  being sent again; a job id is written before the job is acted on, and a submit whose
  answer was lost, or that was cut off by ``aclose()``, is written down as in doubt;
- a 429 stops what the dialect says it limits (new submits, or every request of the
  binding), and a 401 fails every job of the binding.

A journal that is down fails one input, never the binding (see ``_writer``). Waits on
another process's claim, or on a submit in doubt, end at the caller's deadline.

The binding is the ``JobOwner`` of its records: the scheduler and the handles reach it
through that contract only. It knows its engine as a ``Host`` (start, and the
scheduler), never as the engine class, which sits above it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

import anyio

from kepler_async._exceptions import (
    AuthenticationError,
    ClientClosed,
    KeplerError,
    RateLimited,
)
from kepler_async._policies import PollPolicy

from ._dialect import Dialect, Done, Request, SubmitState
from ._handle import JobHandle
from ._http import HttpBoundary, Reply
from ._progress import JobEvent, emit
from ._record import JobRecord
from ._replay import WAIT, InDoubt, JournalReplay
from ._scheduler import Scheduler
from ._stats import Counters, EngineStatistics, snapshot
from ._submit import Flight, JournalAction, classify, cut_off_in_flight, journal_action, send
from ._traced import job_ended, submit_outcome
from ._writer import JournalWriter
from .stores import JobStore

__all__ = ["Binding", "Host"]

logger = logging.getLogger("kepler_async")

R = TypeVar("R")

#: How long a 429 that names no ``Retry-After`` holds what it throttles (seconds).
DEFAULT_THROTTLE_PAUSE = 5.0


class Host(Protocol):
    """What a binding needs of its engine."""

    @property
    def scheduler(self) -> Scheduler: ...

    def ensure_running(self) -> None:
        """Start polling in the background if nobody did (asyncio only)."""

    async def started(self) -> None:
        """Start polling if needed; return once the scheduler accepts work."""


class Binding(Generic[R]):
    """One client's binding to an engine (see the module docstring)."""

    def __init__(
        self,
        *,
        host: Host,
        dialect: Dialect[R],
        http: HttpBoundary,
        policy: PollPolicy,
        handle_class: type[JobHandle[R]] = JobHandle,
        journal: JobStore | None = None,
        fingerprint: str = "",
        in_doubt: InDoubt | None = None,
    ) -> None:
        self.host = host
        self.scheduler = host.scheduler
        self.dialect = dialect
        self.http = http
        self.policy = policy
        self.handle_class = handle_class
        self.counters = Counters()
        self.paused_until = -math.inf  # a request-scoped 429: no request before this
        self._records: dict[str, JobRecord[R]] = {}  # pending jobs by job id
        self._by_key: dict[Hashable, JobRecord[R]] = {}  # pending jobs by submission key
        self._flights: dict[Hashable, Flight] = {}
        self._on_close: list[Callable[[], None]] = []
        self._writer: JournalWriter | None = None
        self._replay: JournalReplay | None = None
        if journal is not None:
            self._writer = JournalWriter(
                journal,
                dialect,
                base_url=http.base_url,
                fingerprint=fingerprint,
                start_soon=self.scheduler.start_soon,
            )
            self._replay = JournalReplay(self._writer, dialect, in_doubt)
        self.closed = False

    async def journal_result(self, key: str) -> R | None:
        """The result the journal holds for ``key`` (done there), or None; a read only."""
        return None if self._replay is None else await self._replay.result_of(key)

    async def bind_journal(self) -> None:
        """Refuse, now, a journal made for another API origin or key (``JournalError``)."""
        if self._writer is not None:
            await self._writer.bind()

    # --- handles ------------------------------------------------------------------------

    def handle(self, record: JobRecord[R], deadline: float | None) -> JobHandle[R]:
        """A handle on ``record`` for a caller whose deadline is ``deadline`` seconds
        from now (None: none); the job is polled at least that long."""
        if deadline is None or record.done():
            until = math.inf
        else:
            until = anyio.current_time() + deadline
        record.extend(until)
        return self.handle_class(record, until)

    def find(self, job_id: str) -> JobRecord[R] | None:
        return self._records.get(job_id)

    def pending(self) -> int:
        return len(self._records)

    # --- the submit path ----------------------------------------------------------------

    async def submit(
        self,
        request: Request,
        *,
        subject: str | None,
        deadline: float | None,
        journal_key: str | None = None,
        inline: bool = False,
        max_age: float | None = None,
    ) -> JobHandle[R]:
        """Submit ``request`` once for every concurrent caller (see the module).

        ``inline``: the caller is a task of the engine already (a batch), so the
        request may run in it.
        """
        self._check_open()
        await self.host.started()
        until = math.inf if deadline is None else anyio.current_time() + deadline
        key = self.dialect.submission_key(request)
        while True:
            record = self._by_key.get(key)
            if record is not None and not record.done():
                self.http.telemetry.link_to(record.trace)  # joined a job in flight
                return self.handle(record, deadline)
            flight = self._flights.get(key)
            if flight is not None:
                self.http.telemetry.link_to(flight.trace)
                break
            if self._replay is not None and journal_key is not None:
                known = await self._replay.lookup(
                    journal_key, subject, deadline, until, self._resume_record, max_age
                )
                if known is WAIT:
                    self._check_open()
                    continue  # another task or process is submitting it: look again
                if isinstance(known, JobRecord):
                    if known.done():
                        self.counters.from_journal += 1
                        self.http.telemetry.submitted("journal")
                    else:
                        self.counters.resumed_from_journal += 1
                    return self.handle(known, deadline)
            flight = self._fly(request, key, subject, deadline, journal_key, inline=inline)
            if inline:
                await self._post(flight, subject, deadline, journal_key)
            break
        return self.handle(await flight.wait(), deadline)

    def _fly(
        self,
        request: Request,
        key: Hashable,
        subject: str | None,
        deadline: float | None,
        journal_key: str | None,
        *,
        inline: bool,
    ) -> Flight:
        """A new flight for ``key``, its request started in the engine (unless inline)."""
        flight = Flight(request, key, self.http.telemetry.capture())
        self._flights[key] = flight
        if not inline:
            try:
                self.scheduler.start_soon(self._post, flight, subject, deadline, journal_key)
            except ClientClosed as exc:  # the engine stopped meanwhile
                self._flights.pop(key, None)
                flight.finish(None, exc)
                raise
        return flight

    async def _post(
        self,
        flight: Flight,
        subject: str | None,
        deadline: float | None,
        journal_key: str | None,
    ) -> None:
        """Send -> classify -> record one flight; its callers get the record or the
        error, and the journal what the error leaves (``_submit.AFTER_FAILURE``)."""
        record: JobRecord[R] | None = None
        error: BaseException | None = None
        try:
            reply: Reply = await send(self.scheduler, self.http, flight, self._writer, journal_key)
            state = classify(self.dialect, flight.request, reply)
            record = await self._record(state, flight, subject, deadline, journal_key)
        except KeplerError as exc:
            error = exc
            await self._after_failure(exc, flight, subject, journal_key)
        except BaseException:
            if flight.sent:  # cut off in flight (closing, or a bug): it may have started
                error = cut_off_in_flight(flight.request)
                await self._journal(JournalAction.IN_DOUBT, journal_key, subject)
            else:  # cut off while it waited for a slot: nothing was sent
                error = ClientClosed("the client closed before the submit was sent")
                await self._journal(JournalAction.FORGET, journal_key, subject)
            raise
        finally:
            if self._flights.get(flight.key) is flight:
                del self._flights[flight.key]
            flight.finish(record, error)

    async def _record(
        self,
        state: SubmitState,
        flight: Flight,
        subject: str | None,
        deadline: float | None,
        journal_key: str | None,
    ) -> JobRecord[R]:
        """The record of a classified answer: a result at once, or a job to watch (its
        id written ahead of the first poll)."""
        writer = self._writer if journal_key is not None else None
        key = flight.key
        telemetry = self.http.telemetry
        if isinstance(state, Done):
            record: JobRecord[R] = JobRecord.finished(None, subject, result=state.result)
            record.owner = self
            self.counters.submits_inline += 1
            telemetry.submitted("inline")
        else:
            existing = self._records.get(state.job_id)
            if existing is not None:  # an idempotent replay of a job we watch
                return existing
            if writer is not None and journal_key is not None:
                # If the journal is away now, the job is watched all the same (its id
                # is not lost); the write waits in the backlog, the key in doubt.
                await writer.record_submitted(journal_key, state.job_id, subject)
            record = JobRecord(state.job_id, state.subject or subject, self)
            record.key = key
            record.trace = flight.trace
            record.billed = True
            self.counters.jobs_started += 1
            telemetry.job_started(state.job_id, record.subject, flight.trace)
            self._watch(record, deadline, first_poll_now=False)
            self._by_key[key] = record
        if writer is not None and journal_key is not None:
            writer.record_outcome(journal_key, record)
        return record

    async def _after_failure(
        self, error: KeplerError, flight: Flight, subject: str | None, journal_key: str | None
    ) -> None:
        """What a failed submit means beyond its callers: a 429 throttles, a 401 fails
        every job, and the journal holds what ``journal_action`` says."""
        self.http.telemetry.submitted(submit_outcome(error))
        if isinstance(error, RateLimited):
            self.throttled(error, submitting=True)
        elif isinstance(error, AuthenticationError):
            self.fail_all(error)
        action = journal_action(error, self.http.never_started)
        await self._journal(action, journal_key, subject)

    async def _journal(
        self, action: JournalAction, journal_key: str | None, subject: str | None
    ) -> None:
        writer = self._writer
        if writer is None or journal_key is None:
            return
        if action is JournalAction.FORGET:
            await writer.forget_intent(journal_key)
        elif action is JournalAction.IN_DOUBT:
            await writer.record_uncertain(journal_key, subject)

    # --- resuming -----------------------------------------------------------------------

    def resume(self, job_id: str, *, subject: str | None, deadline: float | None) -> JobHandle[R]:
        """Watch a job submitted earlier; the same job if it is watched already."""
        return self.handle(self._resume_record(job_id, subject, deadline), deadline)

    def _resume_record(
        self, job_id: str, subject: str | None, deadline: float | None
    ) -> JobRecord[R]:
        self._check_open()
        canonical = self.dialect.check_job_id(job_id)
        record = self._records.get(canonical)
        if record is None:
            self.host.ensure_running()
            record = JobRecord(canonical, subject, self)
            record.trace = self.http.telemetry.capture()
            self._watch(record, deadline, first_poll_now=True)
        else:
            self.http.telemetry.link_to(record.trace)
        return record

    # --- the owner of its records (``JobOwner``) ----------------------------------------

    def _watch(self, record: JobRecord[R], deadline: float | None, *, first_poll_now: bool) -> None:
        assert record.job_id is not None
        if self.closed:  # an answer that came in as the client closed: nobody polls now
            error = ClientClosed("the client was closed", job_id=record.job_id)
            record.settle("failed", None, error)
            return
        self._records[record.job_id] = record
        self.http.telemetry.watching(+1)
        self.scheduler.watch(record, deadline, first_poll_now=first_poll_now)

    def settle(
        self, record: JobRecord[R], *, result: Any = None, error: BaseException | None = None
    ) -> None:
        """End a pending job of this binding with its result or its error."""
        if record.done():
            return
        self.untrack(record)
        job_ended(self.http.telemetry, record, error)
        if error is None:
            self.counters.jobs_succeeded += 1
            record.settle("done", result, None)
        else:
            self.counters.jobs_failed += 1
            record.settle("failed", None, error)

    def untrack(self, record: JobRecord[R]) -> None:
        """Stop tracking ``record`` (its heap slot is dropped lazily once it is done)."""
        if record.job_id is not None and self._records.get(record.job_id) is record:
            del self._records[record.job_id]
        if record.key is not None and self._by_key.get(record.key) is record:
            del self._by_key[record.key]

    def fail_all(self, error: BaseException | Callable[[JobRecord[R]], BaseException]) -> None:
        """Fail every pending job of this binding (a 401 said the key is bad; close)."""
        for record in list(self._records.values()):
            self.settle(record, error=error(record) if callable(error) else error)

    def throttled(self, error: RateLimited, *, submitting: bool) -> None:
        """A 429: hold what the dialect says it limits until its ``Retry-After``.

        A submit-scoped 429 (a quota of paid work) holds nothing here: the batch that
        submits reads it from its error; polls of accepted jobs go on.
        """
        seconds = DEFAULT_THROTTLE_PAUSE if error.retry_after is None else error.retry_after
        scope = self.dialect.throttle_scope(error) if submitting else "requests"
        if scope == "submits":
            logger.debug("%s: submits throttled for %.1fs", self.dialect.name, seconds)
            return
        telemetry = self.http.telemetry
        if telemetry.on_event is not None:
            event = JobEvent(kind="throttled", api=self.dialect.name, retry_after=seconds)
            emit(telemetry.on_event, lambda: event)
        until = anyio.current_time() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.counters.throttle_pauses += 1
            logger.debug("%s: every request throttled for %.1fs", self.dialect.name, seconds)

    def ensure_running(self) -> None:
        self.host.ensure_running()

    # --- lifecycle ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosed("this client is closed; create a new one")

    def close(self) -> None:
        """Fail this binding's unfinished jobs with ``ClientClosed`` (their ids kept),
        then tell whoever asked (``on_close``)."""
        self.closed = True
        self.fail_all(lambda record: ClientClosed("the client was closed", job_id=record.job_id))
        # Callers of a submit whose task may never run again (cancelled with the
        # engine, even before its first step) are answered now.
        flights, self._flights = self._flights, {}
        for flight in flights.values():
            if flight.sent:
                flight.finish(None, cut_off_in_flight(flight.request))
            else:
                flight.finish(None, ClientClosed("the client closed before the submit was sent"))
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one listener's trouble is its own
                logger.exception("a close callback of the %s client raised", self.dialect.name)

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` when the binding closes; returns a function that cancels
        the call (a batch that ends first unsubscribes)."""
        if self.closed:
            callback()
            return lambda: None
        self._on_close.append(callback)

        def unsubscribe() -> None:
            if callback in self._on_close:
                self._on_close.remove(callback)

        return unsubscribe

    def statistics(self) -> EngineStatistics:
        """This binding's statistics (O(1): counts kept as it goes)."""
        try:
            now = anyio.current_time()
        except RuntimeError:  # no event loop here (a repr in a sync context)
            now = math.nan
        scheduler = self.scheduler
        return snapshot(
            self.counters,
            now=now,
            jobs_pending=len(self._records),
            in_flight=scheduler.in_flight,
            max_in_flight=scheduler.max_in_flight,
            paused_until=self.paused_until,
            next_due=scheduler.next_due() if scheduler.running else None,
        )
