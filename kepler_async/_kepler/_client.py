"""``AsyncKepler``: the client for the Kepler Insights API."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Iterable

import anyio

from kepler_async._constants import DEFAULT_MAX_OUTSTANDING
from kepler_async._engine._client import ApiClient
from kepler_async._engine._http import HttpBoundary
from kepler_async._engine._traced import traced, traced_sync
from kepler_async._exceptions import NotFound
from kepler_async._policies import DEFAULT, UseDefault

from ._batch import KeplerFanOut, ScoreBatch, score_outcome
from ._config import KEPLER
from ._dialect import IN_DOUBT_MARGIN, LONGEST_COLD_RUN, KeplerDialect
from ._domains import normalize_domain
from ._endpoints import KeplerEndpoints
from ._job import ScoreJob
from ._models import Score
from ._plan import BatchPlan, make_plan

__all__ = ["AsyncKepler"]

logger = logging.getLogger("kepler_async")


#: How far the API's clock may be behind ours when comparing ``scored_at`` (seconds).
_CLOCK_SKEW = 300.0


class AsyncKepler(ApiClient[Score], KeplerEndpoints):
    """An async client for the Kepler Insights API.

    Use it as an async context manager, or (in a notebook, or for the life of a web
    app) create it once and ``await client.aclose()`` when done::

        async with AsyncKepler() as kepler:       # key from KEPLER_API_KEY
            score = await kepler.score("stripe.com")

    ``base_url`` defaults to ``KEPLER_BASE_URL`` or the production API. An
    ``http_client`` you pass is used as it is and left open for you to close; a
    ``transport`` (such as the simulator's) goes into an httpx client this one owns.
    ``poll_policy`` sets how jobs are polled (and their default deadline);
    ``max_in_flight`` bounds concurrent requests, polls and submits together; an
    ``engine`` (``JobEngine``) is shared with other clients. With a ``journal``
    (``SQLiteJobStore``), job ids are recorded before they are acted on and outcomes
    when they end: a later run serves scored domains from it, resumes pending jobs,
    and never POSTs a domain twice.
    """

    _spec = KEPLER
    _handle_class = ScoreJob

    # --- what Kepler says ---------------------------------------------------------------

    def _make_dialect(self, base_url: str) -> KeplerDialect:
        self._kepler_dialect = KeplerDialect(base_url=base_url)
        return self._kepler_dialect

    async def _in_doubt(self, key: str, subject: str | None, submitted_at: float) -> Score | None:
        """A POST of ``key`` whose answer never came may have started a cold run: a
        score newer than that POST is the run's, and nothing is sent again. Until the
        longest documented run (plus a margin) has passed since the POST, look again
        every few seconds; only then may it be submitted again."""
        wait = submitted_at + LONGEST_COLD_RUN + IN_DOUBT_MARGIN - time.time()
        end = anyio.current_time() + max(0.0, wait)
        while True:
            try:
                score = await self.get_score(key)
            except NotFound:
                score = None
            if score is not None and score.scored_at.timestamp() >= submitted_at - _CLOCK_SKEW:
                return score
            left = end - anyio.current_time()
            if left <= 0:
                return None  # no run can still be going: submit again
            logger.debug("%s is in doubt: looking again in %.0fs", key, min(5.0, left))
            await anyio.sleep(min(5.0, left))

    @property
    def _http(self) -> HttpBoundary:
        return self._binding.http

    @property
    def sandbox(self) -> bool:
        """True for a ``ki_test_`` key: canned data for the four ``.test`` domains."""
        return self._key_hint.startswith("ki_test_")

    # --- scoring ------------------------------------------------------------------------

    @traced("score", subject="domain")
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

    @traced("submit", subject="domain")
    async def submit(
        self,
        domain: str,
        *,
        force_fresh: bool = False,
        deadline: float | UseDefault | None = DEFAULT,
    ) -> ScoreJob:
        """Ask for a score and return its handle once the API has answered the POST.

        The handle is already done for a cached score. Concurrent calls for the same
        domain (and the same ``force_fresh``) share one POST and one job; each call's
        ``deadline`` (seconds, None for none; the poll policy's by default) bounds its
        own wait.
        """
        self._check_open()
        name = normalize_domain(domain)
        return await self._submit_domain(name, bool(force_fresh), deadline)

    async def _submit_domain(
        self,
        name: str,
        force_fresh: bool,
        deadline: float | UseDefault | None,
        *,
        inline: bool = False,
    ) -> ScoreJob:
        """``submit`` for a checked domain (``score_many`` runs it in the engine)."""
        request = self._kepler_dialect.submit_request(name, force_fresh=force_fresh)
        job: ScoreJob = await self._submit(
            request,
            subject=name,
            deadline=deadline,
            journal_key=name,
            inline=inline,
            fresh=force_fresh,
        )
        return job

    async def _submit_in_engine(
        self, name: str, force_fresh: bool, deadline: float | None
    ) -> ScoreJob:
        """``score_many``'s submit: it runs in a task of the engine already."""
        return await self._submit_domain(name, force_fresh, deadline, inline=True)

    @traced_sync("resume", subject="domain")
    def resume(
        self,
        job_id: str,
        *,
        domain: str | None = None,
        deadline: float | UseDefault | None = DEFAULT,
    ) -> ScoreJob:
        """Attach to a job submitted earlier (by this or another process).

        Returns a handle on the same job if this client already watches it. The first
        poll goes out at once. Call it from async code (it needs the event loop).
        """
        self._check_open()
        name = normalize_domain(domain) if domain is not None else None
        job = self._binding.resume(job_id, subject=name, deadline=self._deadline(deadline))
        assert isinstance(job, ScoreJob)
        return job

    @traced("plan")
    async def plan(self, domains: Iterable[str], *, check_server: bool = False) -> BatchPlan:
        """What scoring ``domains`` would take, with nothing billed sent: the inputs
        normalised and deduplicated, the invalid ones, the scores the journal already
        holds (and their age), how many cold runs could start at most, what
        ``GET /v1/usage`` (free) says is left this month and the plan's freshness
        window, and how many hours the per-key limit makes it take.

        ``check_server=True`` also asks ``GET /v1/score/{domain}`` for each domain the
        journal does not hold, to count those the API would answer from its cache:
        each such read is a metered cached call.
        """
        self._check_open()
        return await make_plan(
            list(domains),
            journal_score=self._binding.journal_result,
            usage=self.usage,
            server_score=self.get_score if check_server else None,
        )

    def score_many(
        self,
        domains: Iterable[str] | AsyncIterable[str],
        *,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        force_fresh: bool = False,
        deadline: float | UseDefault | None = DEFAULT,
        wait_for_budget: bool = False,
        max_cold_runs: int | None = None,
    ) -> ScoreBatch:
        """Score many domains; yield one ``ScoreOutcome`` per input as they finish.

        Inputs that normalise to the same domain share one job. At most
        ``max_outstanding`` jobs are submitted and unfinished at a time; ``domains``
        is read in the caller's task, as the caller iterates. A cold-run limit (429
        ``per_key_cold_1h``, ``account_cold_24h``) ends the inputs not yet submitted
        as ``not_attempted``, with the time it lifts; ``wait_for_budget=True`` waits
        for it instead (up to an hour at a time). After ``ColdBudgetExhausted``
        nothing more is submitted. Bad domains come out as ``InvalidDomain`` failures.
        Closing the client ends the batch: unfinished inputs fail with
        ``ClientClosed`` (with their job ids).

        ``max_cold_runs=N`` starts at most N billed cold runs (202 answers) in this
        batch: inputs past the cap end ``not_attempted``, with a reason that names
        it. Cached answers (200) do not count; a submit in flight counts until its
        answer says it was cached, and one in doubt (``SubmitUncertain``) counts as
        billed, so the cap holds however many submits run at once. The cap is per
        batch: two batches (or two processes) each have their own.
        ``batch.progress().cold_runs_started`` says how many it started.
        """
        return self._fan_out(
            ScoreBatch,
            KeplerFanOut(self._submit_in_engine, bool(force_fresh)),
            domains,
            verb="score_many",
            noun="domains",
            convert=score_outcome,
            max_outstanding=max_outstanding,
            deadline=deadline,
            wait_for_budget=wait_for_budget,
            max_cold_runs=max_cold_runs,
        )
