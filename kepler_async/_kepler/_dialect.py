"""The Kepler dialect of the job engine: requests and answers of the scoring API."""

from __future__ import annotations

import urllib.parse
from collections.abc import Hashable

import attrs

from kepler_async._engine._dialect import (
    Accepted,
    Done,
    Failed,
    Fetch,
    Pending,
    PollState,
    Request,
    ThrottleScope,
)
from kepler_async._engine._kit import path_segment
from kepler_async._exceptions import (
    ColdBudgetExhausted,
    InvalidJobId,
    JobFailed,
    KeplerError,
    NoScoreRecord,
    NotFound,
    PipelineAborted,
    PipelineFailed,
    PipelineTimedOut,
    ProtocolError,
    RateLimited,
)
from kepler_async._policies import PollPolicy
from kepler_async._serde import converter, decode

from ._domains import validate_job_id
from ._models import JobAccepted, JobStatus, KeplerJob, Score

__all__ = [
    "FAILURE_CLASSES",
    "IN_DOUBT_MARGIN",
    "LONGEST_COLD_RUN",
    "KeplerDialect",
    "failure_for",
]

FAILURE_CLASSES: dict[str, type[JobFailed]] = {
    "sfn_failed": PipelineFailed,
    "sfn_timed_out": PipelineTimedOut,
    "sfn_aborted": PipelineAborted,
    "scoring_completed_no_record": NoScoreRecord,
}

_FAILURE_TEXT = {
    "sfn_failed": "the scoring pipeline raised an exception",
    "sfn_timed_out": "the scoring pipeline timed out (usually transient: try again)",
    "sfn_aborted": "an operator aborted the run",
    "scoring_completed_no_record": (
        "the run finished but wrote no score (thin data?); see confidence()"
    ),
}

#: Kepler's default poll policy: ``PollPolicy()`` itself (see its docstring for why).
KEPLER_POLICY = PollPolicy()


_PENDING = Pending()


def failure_for(job_id: str, domain: str | None, reason: str | None) -> JobFailed:
    """The exception for a ``failed`` job; unknown reasons give the base ``JobFailed``."""
    cls = FAILURE_CLASSES.get(reason or "", JobFailed)
    text = _FAILURE_TEXT.get(reason or "", "the job failed for a reason this client does not know")
    return cls(text, job_id=job_id, subject=domain, failure_reason=reason)


#: The longest a cold run takes, per the docs (25-90 s), and the margin past it after
#: which a POST whose answer was lost can no longer have a run going.
LONGEST_COLD_RUN = 90.0
IN_DOUBT_MARGIN = 30.0

#: The reasons of a 429 that limit cold runs (paid work), not requests.
COLD_LIMITS = frozenset({"per_key_cold_1h", "account_cold_24h", "cold_budget_exhausted"})


@attrs.frozen
class KeplerDialect:
    """Builds Kepler's requests and reads its answers. Pure: no I/O, no clock."""

    base_url: str
    name: str = "kepler"
    default_policy: PollPolicy = KEPLER_POLICY

    # --- what a submission is, and what a 429 limits --------------------------------

    def submission_key(self, request: Request) -> Hashable:
        """The domain; a forced-fresh run is another submission than a plain one."""
        body = request.json if isinstance(request.json, dict) else {}
        domain = str(body.get("domain"))
        return ("fresh", domain) if body.get("force_fresh") else domain

    def throttle_scope(self, error: RateLimited) -> ThrottleScope:
        """The cold-run limits stop new cold runs only; polls of accepted jobs go on."""
        if isinstance(error, ColdBudgetExhausted) or error.reason in COLD_LIMITS:
            return "submits"
        return "requests"

    # --- the journal ------------------------------------------------------------------

    def dump_result(self, result: Score) -> object:
        return converter.unstructure(result)

    def load_result(self, data: object) -> Score:
        return decode(Score, data, what="journal score")

    def failure(
        self, job_id: str, subject: str | None, failure_reason: str | None, message: str | None
    ) -> JobFailed:
        return failure_for(job_id, subject, failure_reason)

    # --- submit ---------------------------------------------------------------------

    def submit_request(self, domain: str, *, force_fresh: bool = False) -> Request:
        body: dict[str, object] = {"domain": domain}
        if force_fresh:
            body["force_fresh"] = True
        return Request(method="POST", path="/v1/score", json=body, billed=True)

    def classify_submit(self, status: int, body: object) -> Accepted | Done[Score]:
        """200 carries the score; 202 a job to poll."""
        if status == 202:
            accepted = decode(JobAccepted, body, what="POST /v1/score -> 202")
            try:
                job_id = validate_job_id(accepted.job_id)
            except InvalidJobId as exc:
                raise ProtocolError(f"POST /v1/score -> 202: {exc.message}") from None
            return Accepted(job_id=job_id, subject=accepted.domain)
        if status == 200:
            return Done(decode(Score, body, what="POST /v1/score -> 200"))
        raise ProtocolError(f"POST /v1/score: unexpected status {status}")

    def result_time(self, score: Score) -> float:
        """When the API made ``score`` (its ``scored_at``, seconds since the epoch): a
        journal's score is as old as that (``cache_max_age``)."""
        return score.scored_at.timestamp()

    # --- poll -----------------------------------------------------------------------

    def poll_request(self, job_id: str) -> Request:
        # Every id here passed validate_job_id (a bare UUID): nothing to escape.
        return Request(method="GET", path=f"/v1/jobs/{job_id}", template="/v1/jobs/{job_id}")

    def classify_poll(self, job_id: str, subject: str | None, body: object) -> PollState:
        if isinstance(body, dict) and body.get("status") == "pending":
            # The hot path: most polls find the job pending, and then only the status
            # matters. Decoding the whole body is left to the answers that end a job.
            if subject is not None:
                return _PENDING
            domain = body.get("domain")
            return Pending(domain if isinstance(domain, str) else None)
        job = decode(KeplerJob, body, what=f"GET /v1/jobs/{job_id}")
        domain = job.domain or subject
        if job.status is JobStatus.PENDING:
            return Pending(domain)
        if job.status is JobStatus.COMPLETE:
            ref_domain = job.result_ref.domain if job.result_ref else None
            fallback = ref_domain or domain
            if job.score_url:
                path = self.score_path(job.score_url)
            elif fallback:
                path = f"/v1/score/{path_segment(fallback)}"
            else:
                raise ProtocolError(f"job {job_id} is complete but names no domain or score_url")
            return Fetch(
                Request(method="GET", path=path, template="/v1/score/{domain}"), subject=domain
            )
        if job.status is JobStatus.FAILED:
            reason = None if job.failure_reason is None else str(job.failure_reason)
            return Failed(failure_for(job_id, domain, reason))
        raise ProtocolError(f"kepler: job {job_id} has an unknown status {str(job.status)!r}")

    def score_path(self, score_url: str) -> str:
        """``score_url`` as a path on the base URL; another host is a ``ProtocolError``."""
        parts = urllib.parse.urlsplit(score_url)
        if parts.scheme or parts.netloc:
            base = urllib.parse.urlsplit(self.base_url)
            same = (parts.scheme, parts.netloc.lower()) == (base.scheme, base.netloc.lower())
            if not same:
                raise ProtocolError(
                    f"score_url points to another host ({parts.netloc or parts.scheme!r}); "
                    "it was not followed, so the API key stayed here"
                )
        path = parts.path
        base_path = urllib.parse.urlsplit(self.base_url).path.rstrip("/")
        if base_path and path.startswith(base_path + "/"):
            path = path[len(base_path) :]
        if not path.startswith("/") or path.startswith("//") or "/../" in path + "/":
            raise ProtocolError(f"score_url {score_url[:100]!r} is not a path on the API")
        return path + (f"?{parts.query}" if parts.query else "")

    def classify_result(self, job_id: str, subject: str | None, body: object) -> Done[Score]:
        return Done(decode(Score, body, what=f"score for job {job_id}"))

    def check_job_id(self, job_id: str) -> str:
        return validate_job_id(job_id)

    def poll_error(self, job_id: str, error: KeplerError) -> KeplerError:
        return error

    def result_missing(self, job_id: str, subject: str | None, error: KeplerError) -> KeplerError:
        if isinstance(error, NotFound):
            failed = failure_for(job_id, subject, "scoring_completed_no_record")
            failed.__cause__ = error
            return failed
        return error
