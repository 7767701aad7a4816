"""``AsyncKepler``: the client for the Kepler Insights API."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable

import anyio
import httpx
from anyio.abc import TaskGroup

from kepler_async._constants import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_OUTSTANDING, DEFAULT_TIMEOUT
from kepler_async._engine._engine import DriverHost, JobEngine, start_driver
from kepler_async._engine._handle import JobHandle, ScoreJob
from kepler_async._engine._http import HttpBoundary
from kepler_async._engine._journal import SQLiteJobStore, key_fingerprint
from kepler_async._engine._protocol import Done
from kepler_async._engine._scheduler import Scheduler, SchedulerStatistics
from kepler_async._exceptions import (
    AuthenticationError,
    ClientClosed,
    ConfigurationError,
    JobFailed,
    KeplerError,
    NotFound,
    RateLimited,
    SubmitUncertain,
)
from kepler_async._policies import DEFAULT, PollPolicy, RetryPolicy, UseDefault, policy_for

from ._batch import ScoreOutcome, score_many
from ._config import resolve_api_key, resolve_base_url
from ._dialect import KeplerDialect, failure_for
from ._domains import normalize_domain, validate_job_id
from ._endpoints import KeplerEndpoints
from ._errors import kepler_error, kepler_submit_never_started
from ._models import Score

__all__ = ["AsyncKepler"]


#: How far the API's clock may be behind ours when comparing ``scored_at`` (seconds).
_CLOCK_SKEW = 300.0


class _Flight:
    """One submit in progress, shared by every caller asking for the same domain."""

    __slots__ = ("_done", "error", "job")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self.job: ScoreJob | None = None
        self.error: BaseException | None = None

    def finish(self, job: ScoreJob | None, error: BaseException | None) -> None:
        self.job, self.error = job, error
        self._done.set()

    async def wait(self) -> ScoreJob:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.job is not None
        return self.job


class AsyncKepler(DriverHost, KeplerEndpoints):
    """An async client for the Kepler Insights API.

    Use it as an async context manager, or (in a notebook, or for the life of a web
    app) create it once and ``await client.aclose()`` when done::

        async with AsyncKepler() as kepler:       # key from KEPLER_API_KEY
            score = await kepler.score("stripe.com")

    ``base_url`` defaults to ``KEPLER_BASE_URL`` or the production API. An
    ``http_client`` you pass is used as it is and left open for you to close; a
    ``transport`` (such as the simulator's) goes into an httpx client this one owns.
    ``poll_policy`` sets how jobs are polled (and their default deadline);
    ``max_in_flight`` bounds concurrent requests, polls and submits together. With a
    ``journal`` (``SQLiteJobStore``), job ids are recorded before they are acted on and
    outcomes when they end: a later run serves scored domains from it, resumes pending
    jobs, and never POSTs a domain twice.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll_policy: PollPolicy | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        journal: SQLiteJobStore | None = None,
        engine: JobEngine | None = None,
    ) -> None:
        key = resolve_api_key(api_key)
        url = resolve_base_url(base_url)
        if http_client is not None and transport is not None:
            raise ConfigurationError("pass http_client or transport, not both")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        if poll_policy is not None and not isinstance(poll_policy, PollPolicy):
            raise ConfigurationError("poll_policy must be a PollPolicy")
        if journal is not None and not isinstance(journal, SQLiteJobStore):
            raise ConfigurationError("journal must be a SQLiteJobStore")
        self._journal = journal
        self._fingerprint = key_fingerprint(key)
        self._sandbox = key.startswith("ki_test_")
        self._http = HttpBoundary.create(
            api_key=key,
            base_url=url,
            auth_header="X-API-Key",
            map_error=kepler_error,
            never_started=kepler_submit_never_started,
            http_client=http_client,
            transport=transport,
            timeout=float(timeout),
            retry=retry,
        )
        self._owns_engine = engine is None
        try:
            self._scheduler = (
                engine if engine is not None else Scheduler(max_in_flight=max_in_flight)
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        self._dialect = KeplerDialect(base_url=url)
        self._policy = poll_policy or self._dialect.default_policy
        self._tg: TaskGroup | None = None
        self._submitting: dict[str, _Flight] = {}
        self._by_domain: dict[str, ScoreJob] = {}

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> AsyncKepler:
        self._check_open()
        if self._journal is not None:  # refuse a journal of another API or key now
            await self._journal.bind(base_url=self.base_url, fingerprint=self._fingerprint)
        if self._owns_engine and self._tg is None and not self._scheduler.running:
            self._tg = await start_driver(self._scheduler)
        return self

    async def aclose(self) -> None:
        """Stop polling, fail unfinished jobs with ``ClientClosed``, close. Idempotent.

        The jobs go on server-side; their ids are on the ``ClientClosed`` errors.
        """
        if self._owns_engine:
            await self._scheduler.close()
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.closed or (self._owns_engine and self._scheduler.closed)

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def sandbox(self) -> bool:
        """True for a ``ki_test_`` key: canned data for the four ``.test`` domains."""
        return self._sandbox

    @property
    def poll_policy(self) -> PollPolicy:
        return self._policy

    def __repr__(self) -> str:
        key = "ki_test_***" if self._sandbox else "ki_live_***"
        if self.closed:
            return f"<AsyncKepler base_url={self.base_url!r} key={key} closed>"
        stats = self._scheduler.statistics()
        return (
            f"<AsyncKepler base_url={self.base_url!r} key={key} open, "
            f"{stats.jobs_pending} jobs pending>"
        )

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosed("this AsyncKepler is closed; create a new one")

    def _policy_for(self, deadline: float | UseDefault | None) -> PollPolicy:
        return policy_for(self._policy, deadline)

    def statistics(self) -> SchedulerStatistics:
        """A snapshot of the poll scheduler's counters."""
        return self._scheduler.statistics()

    # --- scoring ------------------------------------------------------------------------

    async def score(
        self,
        domain: str,
        *,
        force_fresh: bool = False,
        deadline: float | UseDefault | None = DEFAULT,
    ) -> Score:
        """The score of ``domain``: inline when cached, else after its cold job finishes.

        Raises ``JobFailed`` (a subclass per failure reason), ``DeadlineExceeded``
        (the job keeps running; ``resume`` it), or an ``APIError``.
        """
        job = await self.submit(domain, force_fresh=force_fresh, deadline=deadline)
        return await job

    async def submit(
        self,
        domain: str,
        *,
        force_fresh: bool = False,
        deadline: float | UseDefault | None = DEFAULT,
    ) -> ScoreJob:
        """Ask for a score and return its handle once the API has answered the POST.

        The handle is already done for a cached score. Concurrent calls for the same
        domain share one POST and one job. ``deadline`` (seconds, None for none)
        bounds the polling; it defaults to the poll policy's.
        """
        self._check_open()
        name = normalize_domain(domain)
        policy = self._policy_for(deadline)
        await self._scheduler.wait_running()
        return await self._submit_normalized(name, bool(force_fresh), policy, in_driver=False)

    async def _submit_normalized(
        self, name: str, force_fresh: bool, policy: PollPolicy, *, in_driver: bool
    ) -> ScoreJob:
        """``submit`` for a checked domain. ``in_driver``: the caller is a task of the
        driver's task group already (``score_many``), so the POST may run in it."""
        job = self._by_domain.get(name)
        if job is not None and not job.done():
            return job
        if self._journal is not None:
            known = await self._from_journal(name, policy)
            if known is not None:
                return known
        flight = self._submitting.get(name)
        if flight is None:
            flight = _Flight()
            self._submitting[name] = flight
            if in_driver:
                await self._run_submit(name, force_fresh, policy, flight)
            else:
                # The POST runs in the driver's task group, not in the caller's task:
                # if the caller is cancelled, the answer (and its job id) is still kept.
                self._scheduler.start_soon(self._run_submit, name, force_fresh, policy, flight)
        return await flight.wait()

    async def _run_submit(
        self, domain: str, force_fresh: bool, policy: PollPolicy, flight: _Flight
    ) -> None:
        request = self._dialect.submit_request(domain, force_fresh=force_fresh)
        job: ScoreJob | None = None
        error: BaseException | None = None
        try:
            await self._scheduler.acquire(flight)
            try:
                reply = await self._http.request(
                    request.method, request.path, json=request.json, billed=True
                )
            finally:
                self._scheduler.release(flight)
            state = self._dialect.classify_submit(reply.status, reply.body)
            if isinstance(state, Done):
                job = ScoreJob(None, domain)
                job._resolve(state.result)
                self._scheduler.record_submit(started=False)
                self._journal_outcome(domain, job)
            else:
                if self._journal is not None:
                    with anyio.CancelScope(shield=True):  # written before acted on
                        await self._journal.record_submitted(domain, state.job_id)
                job = ScoreJob(
                    state.job_id,
                    state.subject or domain,
                    api=self._dialect,
                    policy=policy,
                    scheduler=self._scheduler,
                    http=self._http,
                )
                self._scheduler.record_submit(started=True)
                self._scheduler.watch(job)
                self._track(domain, job)
                self._journal_outcome(domain, job)
        except RateLimited as exc:
            self._scheduler.pause(exc.retry_after)
            error = exc
        except AuthenticationError as exc:
            self._scheduler.fail_all(exc)
            error = exc
        except SubmitUncertain as exc:
            if self._journal is not None:  # the next run looks before it POSTs again
                with anyio.CancelScope(shield=True):
                    await self._journal.record_uncertain(domain)
            error = exc
        except KeplerError as exc:
            error = exc
        except BaseException:
            error = SubmitUncertain(
                "the client closed while the score request was in flight",
                method="POST",
                path="/v1/score",
                request_sent=True,
            )
            raise
        finally:
            self._submitting.pop(domain, None)
            flight.finish(job, error)

    async def _from_journal(self, domain: str, policy: PollPolicy) -> ScoreJob | None:
        """A handle for ``domain`` from the journal, or None if it must be submitted."""
        assert self._journal is not None
        await self._journal.bind(base_url=self.base_url, fingerprint=self._fingerprint)
        entry = await self._journal.get(domain)
        if entry is None:
            return None
        if entry.state == "scored" and entry.score is not None:
            job = ScoreJob(entry.job_id, domain)
            job._resolve(entry.score)
            return job
        if entry.state == "pending" and entry.job_id is not None:
            job = self.resume(entry.job_id, domain=domain, deadline=policy.deadline)
            self._track(domain, job)
            self._journal_outcome(domain, job)
            return job
        if entry.state == "failed" and not entry.retryable and entry.job_id is not None:
            job = ScoreJob(entry.job_id, domain)
            job._fail(failure_for(entry.job_id, domain, entry.failure_reason))
            return job
        if entry.state == "uncertain" and entry.submitted_at is not None:
            return await self._after_uncertain(domain, entry.submitted_at)
        return None  # a retryable failure: submit again

    async def _after_uncertain(self, domain: str, submitted_at: float) -> ScoreJob | None:
        """A submit whose answer was lost may have started a run: if a score newer than
        that submit is on file, it is the run's, and nothing is sent again."""
        try:
            score = await self.get_score(domain)
        except NotFound:
            return None
        if score.scored_at.timestamp() < submitted_at - _CLOCK_SKEW:
            return None  # older than the lost submit: that run is unknown; submit again
        job = ScoreJob(None, domain)
        job._resolve(score)
        self._journal_outcome(domain, job)
        return job

    def _journal_outcome(self, domain: str, job: ScoreJob) -> None:
        """Write the job's end to the journal when it comes (scores and job failures)."""
        journal = self._journal
        if journal is None:
            return

        async def write(finished: ScoreJob) -> None:
            with anyio.CancelScope(shield=True):  # let the write finish, even on close
                error = finished.exception()
                if error is None and finished._result is not None:
                    await journal.record_scored(domain, finished.job_id, finished._result)
                elif isinstance(error, JobFailed):
                    await journal.record_failed(domain, finished.job_id, error)
                # Anything else (deadline, close, cancel) leaves the job pending: the
                # next run resumes it.

        def on_done(finished: JobHandle[Score]) -> None:
            assert isinstance(finished, ScoreJob)
            if self._scheduler.running:
                self._scheduler.start_soon(write, finished)

        job.add_done_callback(on_done)

    def _track(self, domain: str, job: ScoreJob) -> None:
        self._by_domain[domain] = job

        def untrack(finished: object) -> None:
            if self._by_domain.get(domain) is finished:
                del self._by_domain[domain]

        job.add_done_callback(untrack)

    def resume(
        self,
        job_id: str,
        *,
        domain: str | None = None,
        deadline: float | UseDefault | None = DEFAULT,
    ) -> ScoreJob:
        """Attach to a job submitted earlier (by this or another process).

        Returns the same handle if this client already watches the job. The first
        poll goes out at once. Call it from async code (it needs the event loop).
        """
        self._check_open()
        canonical = validate_job_id(job_id)
        name = normalize_domain(domain) if domain is not None else None
        policy = self._policy_for(deadline)
        existing = self._scheduler.find(self._dialect.name, canonical)
        if existing is not None:
            assert isinstance(existing, ScoreJob)
            return existing
        self._scheduler.ensure_running()
        job = ScoreJob(
            canonical,
            name,
            api=self._dialect,
            policy=policy,
            scheduler=self._scheduler,
            http=self._http,
        )
        self._scheduler.watch(job, first_poll_now=True)
        return job

    def score_many(
        self,
        domains: Iterable[str] | AsyncIterable[str],
        *,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        force_fresh: bool = False,
        deadline: float | UseDefault | None = DEFAULT,
    ) -> AsyncIterator[ScoreOutcome]:
        """Score many domains; yield one ``ScoreOutcome`` per input as they finish.

        Inputs that normalise to the same domain share one job. At most
        ``max_outstanding`` jobs are submitted and unfinished at a time. After
        ``ColdBudgetExhausted`` nothing more is submitted and the remaining inputs
        come out ``not_attempted``. Bad domains come out as ``InvalidDomain`` failures.
        """
        self._check_open()
        policy = self._policy_for(deadline)
        if isinstance(max_outstanding, bool) or not isinstance(max_outstanding, int):
            raise ConfigurationError("max_outstanding must be an integer")
        if max_outstanding < 1:
            raise ConfigurationError(f"max_outstanding must be >= 1, got {max_outstanding}")
        return score_many(
            self,
            domains,
            max_outstanding=max_outstanding,
            force_fresh=bool(force_fresh),
            policy=policy,
        )
