"""A channel: one client's place on an engine, and the one submit path of every API.

A channel joins a dialect (what the API's requests and answers mean), an HTTP
boundary (the key and base URL) and optionally a journal to a ``JobEngine``. Every
client submits through ``Channel.submit``:

- the billed request runs in the engine's task group, so a caller that is cancelled
  never loses a job id (the job is watched, and journaled, all the same);
- concurrent submits with the same ``submission_key`` share one request and one job,
  and each caller's handle keeps that caller's own deadline;
- with a journal, a key the journal knows is served from it (its result, its failure,
  its pending job resumed with the caller's deadline) instead of being sent again; a
  job id is written before the job is acted on, and a submit whose answer was lost,
  or that was cut off by ``aclose()``, is written down as uncertain;
- a 429 stops what the dialect says it limits (new submits, or every request of the
  channel), and a 401 fails every job of the channel.

A journal that is down fails one input, never the channel ("never pay twice" decides
each operation): a claim, or the write before the billed request, that fails means
the request is not sent (``JournalUnavailable``, nothing billed); a write after it
(the job id, the outcome, the end of a claim) that fails still lets the caller have
its result, and waits in a ``JournalBacklog`` until the journal is back. Waits on
another process's claim, or on a submit in doubt, end at the caller's deadline.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import attrs

from kepler_async._exceptions import (
    APIError,
    AuthenticationError,
    ClientClosed,
    DeadlineExceeded,
    JobFailed,
    KeplerError,
    ProtocolError,
    RateLimited,
    SubmitHeldElsewhere,
    SubmitUncertain,
    TransportError,
)
from kepler_async._policies import PollPolicy

from ._backlog import WRITE_BOUND as JOURNAL_WRITE_BOUND
from ._backlog import JournalBacklog
from ._handle import Job, JobHandle
from ._http import HttpBoundary, Redirected
from ._journal import JobStore, JournalEntry, JournalUnavailable
from ._protocol import Accepted, Done, JobApi, Request

if TYPE_CHECKING:
    from ._engine import JobEngine

__all__ = ["Channel", "Counters", "EngineStatistics"]

logger = logging.getLogger("kepler_async")

R = TypeVar("R")

#: How long a claim to submit a key holds without an answer (seconds): past it, other
#: processes treat that submit as in doubt.
CLAIM_LEASE = 120.0
#: How often a caller waiting on another's claim looks at the journal again (seconds).
CLAIM_POLL = 0.5
#: ``_replay``: another task or process is submitting the key; look again.
_WAIT = object()

#: How long a 429 that names no ``Retry-After`` holds what it throttles (seconds).
DEFAULT_THROTTLE_PAUSE = 5.0

#: ``in_doubt(journal_key, subject, submitted_at)``: the result of a submit whose
#: answer was lost, if the API can still tell it (None: submit again).
InDoubt = Callable[[str, "str | None", float], Awaitable[Any]]


class Counters:
    """What one channel has done (the engine adds up its channels)."""

    __slots__ = (
        "jobs_failed",
        "jobs_started",
        "jobs_succeeded",
        "polls_sent",
        "polls_unchanged",
        "results_fetched",
        "submits_inline",
        "throttle_pauses",
        "transient_errors",
    )

    def __init__(self) -> None:
        self.jobs_started = 0
        self.submits_inline = 0
        self.jobs_succeeded = 0
        self.jobs_failed = 0
        self.polls_sent = 0
        self.polls_unchanged = 0
        self.results_fetched = 0
        self.transient_errors = 0
        self.throttle_pauses = 0

    def add(self, other: Counters) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@attrs.frozen(kw_only=True)
class EngineStatistics:
    """A snapshot of what a client (or a whole engine) has done."""

    jobs_started: int
    submits_inline: int
    jobs_pending: int
    jobs_succeeded: int
    jobs_failed: int
    polls_sent: int
    polls_unchanged: int
    results_fetched: int
    transient_errors: int
    throttle_pauses: int
    in_flight: int
    max_in_flight: int
    paused_for: float
    next_poll_in: float | None

    @property
    def polls_per_finished_job(self) -> float:
        """Polls sent per job that has finished (succeeded or failed)."""
        finished = self.jobs_succeeded + self.jobs_failed
        return self.polls_sent / finished if finished else 0.0


class _Flight:
    """One submit in progress, shared by every caller with the same submission key."""

    __slots__ = ("_done", "error", "job", "request", "sent")

    def __init__(self, request: Request) -> None:
        self._done = anyio.Event()
        self.request = request
        self.job: Job[Any] | None = None
        self.error: BaseException | None = None
        #: True once the request may be on its way to the API.
        self.sent = False

    def finish(self, job: Job[Any] | None, error: BaseException | None) -> None:
        """End the flight for its callers; the first end counts (closing may come
        before the submit's own task ends it, or instead of it)."""
        if self._done.is_set():
            return
        self.job, self.error = job, error
        self._done.set()

    async def wait(self) -> Job[Any]:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.job is not None
        return self.job


def _unreadable(request: Request, error: Exception) -> KeplerError:
    """The error for a submit answer that cannot be read: a request that may start
    paid work may have started it, so it is ``SubmitUncertain`` (and journaled so)."""
    text = str(error) if isinstance(error, KeplerError) else type(error).__name__
    if not request.billed:
        return error if isinstance(error, KeplerError) else ProtocolError(text)
    return SubmitUncertain(
        f"the answer to {request.method} {request.path} could not be read ({text}); it may "
        "have started a job, so it was not sent again",
        method=request.method,
        path=request.path,
        request_sent=True,
    )


def _cut_off_in_flight(request: Request) -> SubmitUncertain:
    """The error of a submit that the client's closing cut off after it was sent."""
    return SubmitUncertain(
        "the client closed while the submit was in flight; it may have started a job",
        method=request.method,
        path=request.path,
        request_sent=True,
    )


class Channel(Generic[R]):
    """One client's binding to an engine (see the module docstring)."""

    def __init__(
        self,
        *,
        engine: JobEngine,
        dialect: JobApi[R],
        http: HttpBoundary,
        policy: PollPolicy,
        handle_class: type[JobHandle[R]] = JobHandle,
        journal: JobStore | None = None,
        fingerprint: str = "",
        in_doubt: InDoubt | None = None,
    ) -> None:
        self.engine = engine
        self.dialect = dialect
        self.http = http
        self.policy = policy
        self.handle_class = handle_class
        self.journal = journal
        self.fingerprint = fingerprint
        self.in_doubt = in_doubt
        self.counters = Counters()
        self.paused_until = -math.inf  # a request-scoped 429: no request before this
        self.submits_paused_until = -math.inf  # a submit-scoped 429
        self._jobs: dict[str, Job[R]] = {}  # pending jobs by job id
        self._by_key: dict[Hashable, Job[R]] = {}  # pending jobs by submission key
        self._flights: dict[Hashable, _Flight] = {}
        self._on_close: list[Callable[[], None]] = []
        self._sharing = False  # said once that the journal is shared
        #: Journal writes that wait for the journal to come back (an outage).
        self._backlog = JournalBacklog(engine.scheduler.start_soon)
        self.closed = False
        engine._attach(self)

    # --- handles ------------------------------------------------------------------------

    def handle(self, job: Job[R], deadline: float | None) -> JobHandle[R]:
        """A handle on ``job`` for a caller whose deadline is ``deadline`` seconds from
        now (None: none); the job is polled at least that long."""
        if deadline is None or job.done():
            until = math.inf
        else:
            until = anyio.current_time() + deadline
        job.extend(until)
        return self.handle_class(job, until)

    def find(self, job_id: str) -> Job[R] | None:
        return self._jobs.get(job_id)

    def pending(self) -> int:
        return len(self._jobs)

    # --- the submit path ----------------------------------------------------------------

    async def submit(
        self,
        request: Request,
        *,
        subject: str | None,
        deadline: float | None,
        journal_key: str | None = None,
        inline: bool = False,
    ) -> JobHandle[R]:
        """Submit ``request`` once for every concurrent caller (see the module).

        ``inline``: the caller is a task of the engine already (a batch), so the
        request may run in it.
        """
        self._check_open()
        await self.engine.started()
        until = math.inf if deadline is None else anyio.current_time() + deadline
        key = self.dialect.submission_key(request)
        while True:
            job = self._by_key.get(key)
            if job is not None and not job.done():
                return self.handle(job, deadline)
            flight = self._flights.get(key)
            if flight is not None:
                break
            if self.journal is not None and journal_key is not None:
                known = await self._replay(journal_key, subject, deadline, until)
                if known is _WAIT:
                    self._check_open()
                    continue  # another task or process is submitting it: look again
                if isinstance(known, JobHandle):
                    return known
            flight = _Flight(request)
            self._flights[key] = flight
            args = (request, key, subject, deadline, journal_key, flight)
            if inline:
                await self._post(*args)
            else:
                try:
                    self.engine.scheduler.start_soon(self._post, *args)
                except ClientClosed as exc:  # the engine stopped meanwhile
                    self._flights.pop(key, None)
                    flight.finish(None, exc)
                    raise
            break
        return self.handle(await flight.wait(), deadline)

    async def _post(
        self,
        request: Request,
        key: Hashable,
        subject: str | None,
        deadline: float | None,
        journal_key: str | None,
        flight: _Flight,
    ) -> None:
        job: Job[R] | None = None
        error: BaseException | None = None
        sent = False
        try:
            token = object()
            await self.engine.scheduler.acquire(token)
            try:
                if self.journal is not None and journal_key is not None:
                    # Write-ahead: from here on a crash leaves the submit in doubt,
                    # never unknown (the claim, in ``_replay``, sent nothing yet). A
                    # journal that cannot take it now means: not sent.
                    await self._mark_sending(journal_key)
                sent = flight.sent = True
                reply = await self.http.request(
                    request.method,
                    request.path,
                    params=request.params,
                    json=request.json,
                    headers=request.headers,
                    billed=request.billed,
                )
            except Redirected:  # refused before anything was read: nothing to doubt
                raise
            except ProtocolError as exc:  # answered, but not in a way we can read
                raise _unreadable(request, exc) from exc
            finally:
                self.engine.scheduler.limiter.release_on_behalf_of(token)
            try:
                state = self.dialect.classify_submit(reply.status, reply.body)
                if not isinstance(state, (Done, Accepted)):
                    raise ProtocolError(
                        f"the {self.dialect.name} dialect classified a submit answer as "
                        f"{type(state).__name__}, which the engine does not know"
                    )
            except Exception as exc:  # whatever the bytes did to the dialect
                raise _unreadable(request, exc) from exc
            if isinstance(state, Done):
                job = Job.finished(None, subject, result=state.result)
                job.channel = self
                self.counters.submits_inline += 1
                self._journal_outcome(journal_key, job)
            else:
                existing = self._jobs.get(state.job_id)
                if existing is not None:  # an idempotent replay of a job we watch
                    job = existing
                else:
                    if self.journal is not None and journal_key is not None:
                        # Written before acted on; if the journal is away now, the job
                        # is watched all the same (its id is not lost) and the write
                        # waits in the backlog (the key stays in doubt meanwhile).
                        await self._record_submitted(journal_key, state.job_id, subject)
                    job = Job(state.job_id, state.subject or subject, self)
                    job.key = key
                    self.counters.jobs_started += 1
                    self._watch(job, deadline, first_poll_now=False)
                    self._by_key[key] = job
                    self._journal_outcome(journal_key, job)
        except RateLimited as exc:
            self.throttled(exc, submitting=True)
            await self._forget_intent(journal_key)
            error = exc
        except AuthenticationError as exc:
            self.fail_all(exc)
            await self._forget_intent(journal_key)
            error = exc
        except TransportError as exc:
            if exc.request_sent:  # it may have reached the API: a job may exist
                await self._record_uncertain(journal_key, subject)
            else:
                await self._forget_intent(journal_key)
            error = exc
        except APIError as exc:
            if exc.status < 500 or self.http.never_started(exc):
                await self._forget_intent(journal_key)  # refused: nothing started
            else:  # a 5xx after the request arrived: it may have started a job
                await self._record_uncertain(journal_key, subject)
            error = exc
        except KeplerError as exc:
            if isinstance(exc, Redirected):
                await self._forget_intent(journal_key)
            error = exc
        except BaseException:
            if not sent:  # cut off while it waited for a slot: nothing was sent
                error = ClientClosed("the client closed before the submit was sent")
                await self._forget_intent(journal_key)
                raise
            error = _cut_off_in_flight(request)
            await self._record_uncertain(journal_key, subject)
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.finish(job, error)

    # --- journal writes (each bounded; one that fails waits in the backlog) -----------

    async def _mark_sending(self, journal_key: str) -> None:
        """Record that the claimed submit goes out now, or raise ``JournalUnavailable``
        (and send nothing): a submit the journal does not know of could be paid twice."""
        journal = self.journal
        assert journal is not None
        try:
            with anyio.fail_after(JOURNAL_WRITE_BOUND, shield=True):
                await journal.record_sending(self.dialect.name, journal_key)
        except Exception as exc:
            await self._forget_intent(journal_key)  # the claim: now or once it is back
            if isinstance(exc, JournalUnavailable):
                raise
            raise JournalUnavailable(
                f"journal {journal!r}: the submit of {journal_key} could not be recorded "
                f"({type(exc).__name__}), so it was not sent"
            ) from exc

    async def _record_submitted(self, journal_key: str, job_id: str, subject: str | None) -> None:
        assert self.journal is not None
        write = functools.partial(
            self.journal.record_submitted, self.dialect.name, journal_key, job_id, subject=subject
        )
        await self._backlog.write(journal_key, f"the job id {job_id}", write)

    async def _forget_intent(self, journal_key: str | None) -> None:
        if self.journal is None or journal_key is None:
            return
        write = functools.partial(self.journal.forget_intent, self.dialect.name, journal_key)
        await self._backlog.write(journal_key, "the end of a claim", write)

    async def _record_uncertain(self, journal_key: str | None, subject: str | None) -> None:
        if self.journal is None or journal_key is None:
            return
        write = functools.partial(
            self.journal.record_uncertain, self.dialect.name, journal_key, subject=subject
        )
        await self._backlog.write(journal_key, "a submit in doubt", write)

    # --- resuming and the journal -------------------------------------------------------

    def resume(self, job_id: str, *, subject: str | None, deadline: float | None) -> JobHandle[R]:
        """Watch a job submitted earlier; the same job if it is watched already."""
        self._check_open()
        canonical = self.dialect.check_job_id(job_id)
        job = self._jobs.get(canonical)
        if job is None:
            self.engine.ensure_running()
            job = Job(canonical, subject, self)
            self._watch(job, deadline, first_poll_now=True)
        return self.handle(job, deadline)

    async def _replay(
        self, journal_key: str, subject: str | None, deadline: float | None, until: float
    ) -> JobHandle[R] | object | None:
        """What the journal says of ``journal_key``: a handle (its result, its failure,
        its pending job resumed), None once this process holds the claim to submit it
        (the intent written), or ``_WAIT`` while another task or process does.

        The waits for another's claim and for an earlier submit in doubt end at the
        caller's deadline (``until``, loop time) with ``DeadlineExceeded``; whoever
        can settle the key still does. A journal that cannot be read or written now
        raises ``JournalUnavailable`` and nothing is sent.
        """
        journal = self.journal
        assert journal is not None
        await journal.bind(base_url=self.http.base_url, fingerprint=self.fingerprint)
        api = self.dialect.name
        await self._backlog.flush(journal_key)  # nothing older may overtake the claim
        claimed, entry = await self._claim(journal_key, subject, take_over=False)
        if claimed:
            return None
        assert entry is not None
        subject = entry.subject or subject
        if entry.state == "done":
            result = self.dialect.load_result(entry.result)
            return self.handle(Job.finished(entry.job_id, subject, result=result), None)
        if entry.state == "pending" and entry.job_id is not None:
            handle = self.resume(entry.job_id, subject=subject, deadline=deadline)
            self._journal_outcome(journal_key, handle._job)
            return handle
        if entry.state == "failed" and entry.job_id is not None and not entry.retryable:
            error = self.dialect.failure(
                entry.job_id, subject, entry.failure_reason, entry.error_message
            )
            return self.handle(Job.finished(entry.job_id, subject, error=error), None)
        if entry.state in ("claimed", "uncertain") and entry.claim_is_live(time.time()):
            if entry.owner != journal.owner and not self._sharing:
                self._sharing = True
                logger.warning(
                    "the journal %s is shared with another process (%s): this one waits "
                    "for its submits instead of sending them again",
                    journal,
                    entry.owner,
                )
            left = until - anyio.current_time()
            if left <= 0:
                raise SubmitHeldElsewhere(
                    f"{api}: {journal_key} was still being submitted by "
                    f"{'this process' if entry.owner == journal.owner else entry.owner} "
                    "at this call's deadline (its claim in the journal holds until "
                    f"{time.strftime('%H:%M:%S UTC', time.gmtime(entry.lease_until or 0))}); "
                    "nothing was sent here, and its outcome will be in the journal",
                    subject=subject,
                    owner=entry.owner,
                    journal_key=journal_key,
                )
            await anyio.sleep(min(CLAIM_POLL, left))  # its answer (or its end) will show
            return _WAIT
        if entry.state == "uncertain":
            known = await self._after_uncertain(journal_key, subject, entry, until)
            if known is not None:
                return known
        claimed, _ = await self._claim(journal_key, subject, take_over=True)
        return None if claimed else _WAIT

    async def _claim(
        self, journal_key: str, subject: str | None, *, take_over: bool
    ) -> tuple[bool, JournalEntry | None]:
        """The journal's claim; one that fails leaves a claim it may have written to
        be dropped (now, or once the journal is back, before this key is claimed again)."""
        journal = self.journal
        assert journal is not None
        try:
            return await journal.claim(
                self.dialect.name,
                journal_key,
                subject=subject,
                lease=CLAIM_LEASE,
                take_over=take_over,
            )
        except Exception:
            await self._forget_intent(journal_key)
            raise

    async def _after_uncertain(
        self, journal_key: str, subject: str | None, entry: JournalEntry, until: float
    ) -> JobHandle[R] | None:
        """An earlier submit of this key is in doubt: the client's rule decides (look
        for its result, wait out the longest run, replay, or report it), within the
        caller's deadline."""
        if self.in_doubt is None or entry.submitted_at is None:
            return None
        with anyio.move_on_after(until - anyio.current_time()) as waited:
            result = await self.in_doubt(journal_key, subject, entry.submitted_at)
        if waited.cancelled_caught:
            raise DeadlineExceeded(
                f"{self.dialect.name}: an earlier submit of {journal_key} is in doubt (its "
                "answer never came) and its outcome was not known by this call's deadline; "
                "nothing was sent again. A later call looks again",
                job_id=None,
                subject=subject,
            )
        if result is None:
            return None
        job: Job[R] = Job.finished(None, subject, result=result)
        self._journal_outcome(journal_key, job)
        return self.handle(job, None)

    def _journal_outcome(self, journal_key: str | None, job: Job[R]) -> None:
        """Write the job's end to the journal when it comes (results and job failures).

        Anything else (deadline, close, cancel) leaves the job pending in the journal:
        the next run resumes it.
        """
        journal = self.journal
        if journal is None or journal_key is None:
            return
        api = self.dialect.name

        async def write() -> None:
            error = job.error
            if error is None:
                data = self.dialect.dump_result(job.result)  # type: ignore[arg-type]
                await journal.record_done(api, journal_key, job.job_id, data)
            elif isinstance(error, JobFailed):
                await journal.record_failed(api, journal_key, job.job_id, error)

        async def write_outcome() -> None:
            # The caller has its outcome already; a journal that is away gets it later.
            await self._backlog.write(journal_key, f"the outcome of job {job.job_id}", write)

        def on_done() -> None:
            if job.error is None or isinstance(job.error, JobFailed):
                try:
                    self.engine.scheduler.start_soon(write_outcome)
                except ClientClosed:
                    logger.warning("journal: the outcome of job %s was not written", job.job_id)

        job.on_done(on_done)

    # --- the scheduler's side -----------------------------------------------------------

    def _watch(self, job: Job[R], deadline: float | None, *, first_poll_now: bool) -> None:
        assert job.job_id is not None
        if self.closed:  # an answer that came in as the client closed: nobody polls now
            job.finish("failed", None, ClientClosed("the client was closed", job_id=job.job_id))
            return
        self._jobs[job.job_id] = job
        self.engine.scheduler.watch(job, deadline, first_poll_now=first_poll_now)

    def settle(
        self, job: Job[R], *, result: Any = None, error: BaseException | None = None
    ) -> None:
        """End a pending job of this channel with its result or its error."""
        if job.done():
            return
        self.forget(job)
        if error is None:
            self.counters.jobs_succeeded += 1
            job.finish("done", result, None)
        else:
            self.counters.jobs_failed += 1
            logger.debug("job %s failed: %s", job.job_id, error)
            job.finish("failed", None, error)

    def forget(self, job: Job[R]) -> None:
        """Stop tracking ``job`` (its heap slot is dropped lazily once it is done)."""
        if job.job_id is not None and self._jobs.get(job.job_id) is job:
            del self._jobs[job.job_id]
        if job.key is not None and self._by_key.get(job.key) is job:
            del self._by_key[job.key]

    def fail_all(self, error: BaseException | Callable[[Job[R]], BaseException]) -> None:
        """Fail every pending job of this channel (a 401 said the key is bad; close)."""
        for job in list(self._jobs.values()):
            self.settle(job, error=error(job) if callable(error) else error)

    def throttled(self, error: RateLimited, *, submitting: bool) -> None:
        """A 429: hold what the dialect says it limits until its ``Retry-After``."""
        seconds = DEFAULT_THROTTLE_PAUSE if error.retry_after is None else error.retry_after
        until = anyio.current_time() + seconds
        scope = self.dialect.throttle_scope(error) if submitting else "requests"
        if scope == "submits":
            self.submits_paused_until = max(self.submits_paused_until, until)
            logger.debug("%s: submits throttled for %.1fs", self.dialect.name, seconds)
        elif until > self.paused_until:
            self.paused_until = until
            self.counters.throttle_pauses += 1
            logger.debug("%s: every request throttled for %.1fs", self.dialect.name, seconds)

    # --- lifecycle ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosed("this client is closed; create a new one")

    def close(self) -> None:
        """Fail this channel's unfinished jobs with ``ClientClosed`` (their ids kept),
        then tell whoever asked (``on_close``)."""
        self.closed = True
        self.fail_all(lambda job: ClientClosed("the client was closed", job_id=job.job_id))
        # Callers of a submit whose task may never run again (cancelled with the
        # engine, even before its first step) are answered now.
        flights, self._flights = self._flights, {}
        for flight in flights.values():
            if flight.sent:
                flight.finish(None, _cut_off_in_flight(flight.request))
            else:
                flight.finish(None, ClientClosed("the client closed before the submit was sent"))
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one listener's trouble is its own
                logger.exception("a close callback of the %s client raised", self.dialect.name)

    def on_close(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` when the channel closes; returns a function that cancels
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
        return self.engine._statistics([self])
