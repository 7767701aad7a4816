"""The implementation behind ``kepler_async.parsetx`` (see there)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from datetime import datetime

import attrs

from kepler_async import _exceptions as exc
from kepler_async._constants import DEFAULT_MAX_OUTSTANDING
from kepler_async._engine._client import ApiClient
from kepler_async._engine._dialect import Done, Failed, Pending, PollState, Request, ThrottleScope
from kepler_async._engine._fanout import FanOut
from kepler_async._engine._fanout_plan import Outcome, RequestFanOut
from kepler_async._engine._handle import JobHandle
from kepler_async._engine._kit import (
    DialectDefaults,
    check_uuid_id,
    content_key,
    make_error_mapper,
)
from kepler_async._engine._kit import path_segment as _segment
from kepler_async._engine._spec import ApiSpec
from kepler_async._engine._traced import traced
from kepler_async._exceptions import InvalidInput, JobFailed, KeplerError, ProtocolError
from kepler_async._policies import DEFAULT, PollPolicy, UseDefault
from kepler_async._serde import OpenEnum as _OpenEnum
from kepler_async._serde import decode

__all__ = [
    "MAX_BATCH",
    "AsyncParseTx",
    "EnrichItem",
    "EnrichJob",
    "EnrichResult",
    "ItemStatus",
    "ParseTxDialect",
    "ParseTxJobFailed",
    "QuotaExceeded",
    "TokenBudgetExceeded",
]

DEFAULT_BASE_URL = "https://api.parsetx.com"
API_KEY_ENV = "PARSETX_API_KEY"
JOB_PATH = "/v1/enrich/jobs/"
MAX_BATCH = 500

#: The vendor recommends its SDK's exponential backoff (defaults unpublished).
PARSETX_POLICY = PollPolicy(
    first_delay=1.0, interval=1.0, multiplier=2.0, cap=15.0, jitter=0.2, deadline=300.0
)


class ItemStatus(_OpenEnum):
    COMPLETE = "complete"
    RETRY = "retry"  # a per-item failure worth retrying
    REJECTED = "rejected"  # failed the entropy check: do not retry


class ParseTxJobFailed(JobFailed):
    """A ParseTx job ended ``failed`` (the API gives no reason: quote the job id to support)."""


class QuotaExceeded(exc.RateLimited):
    """429: the monthly transaction quota is used up (``usage``, ``limit``, ``plan``)."""

    usage: int | None = None
    limit: int | None = None
    plan: str | None = None


class TokenBudgetExceeded(exc.RateLimited):
    """429: the daily token budget is used up; it resets at midnight UTC."""

    token_usage: int | None = None
    token_limit: int | None = None
    plan: str | None = None


@attrs.frozen(kw_only=True)
class EnrichItem:
    """One input's enrichment; only ``complete`` items carry the merchant fields."""

    input: str
    status: ItemStatus | str
    source: str | None = None
    merchant: str | None = None
    domain: str | None = None
    category: str | None = None
    mcc_code: str | None = None
    is_subscription: bool | None = None
    confidence: float | None = None


@attrs.frozen(kw_only=True)
class EnrichJob:
    id: str
    status: str
    item_count: int | None = None
    results: tuple[EnrichItem, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class EnrichResult:
    """A finished job's items, in the order the strings were submitted."""

    job_id: str
    items: tuple[EnrichItem, ...]

    @property
    def to_retry(self) -> tuple[str, ...]:
        """The inputs worth sending again (status ``retry``)."""
        return tuple(item.input for item in self.items if item.status == ItemStatus.RETRY)


def _read_error(body: object) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body["error"]
    return None, None


def _quota(status: int, body: object, error: exc.APIError) -> exc.APIError:
    if status != 429 or not isinstance(body, dict):
        return error
    fields = {
        "status": error.status,
        "code": error.code,
        "method": error.method,
        "path": error.path,
        "retry_after": error.retry_after,
    }
    if "token_limit" in body or "token_usage" in body:
        budget = TokenBudgetExceeded(error.message, **fields)  # type: ignore[arg-type]
        budget.token_usage, budget.token_limit = body.get("token_usage"), body.get("token_limit")
        budget.plan = body.get("plan")
        return budget
    if "limit" in body or "usage" in body:
        quota = QuotaExceeded(error.message, **fields)  # type: ignore[arg-type]
        quota.usage, quota.limit, quota.plan = (
            body.get("usage"),
            body.get("limit"),
            body.get("plan"),
        )
        return quota
    return error


_map_error = make_error_mapper("parsetx", job_path=JOB_PATH, read=_read_error, special=_quota)

PARSETX = ApiSpec(
    name="parsetx",
    key_env=API_KEY_ENV,
    key_prefixes=("pt_",),  # pt_live_... (the vendor's docs)
    default_base_url=DEFAULT_BASE_URL,
    auth_header="X-API-Key",
    map_error=_map_error,
)


@attrs.frozen
class ParseTxDialect(DialectDefaults):
    """ParseTx's job API for the engine. Pure."""

    name: str = "parsetx"
    id_field: str = "job_id"
    default_policy: PollPolicy = PARSETX_POLICY
    result_type: type[EnrichResult] = EnrichResult
    failed_class: type[JobFailed] = ParseTxJobFailed

    def throttle_scope(self, error: exc.RateLimited) -> ThrottleScope:
        """The monthly quota and the daily token budget limit paid work only."""
        if isinstance(error, (QuotaExceeded, TokenBudgetExceeded)):
            return "submits"
        return "requests"

    def check_job_id(self, job_id: str) -> str:
        return check_uuid_id(job_id, vendor="parsetx")

    def poll_request(self, job_id: str) -> Request:
        return Request(
            method="GET", path=JOB_PATH + _segment(job_id), template=JOB_PATH + "{job_id}"
        )

    def decode_job(self, body: object) -> EnrichJob:
        return decode(EnrichJob, body, what="parsetx job")

    def classify_poll(self, job_id: str, subject: str | None, body: object) -> PollState:
        job = self.decode_job(body)
        if job.status in ("queued", "processing"):
            return Pending()
        if job.status == "complete":
            return Done(EnrichResult(job_id=job_id, items=job.results))
        if job.status == "failed":
            return Failed(
                ParseTxJobFailed(
                    "the enrichment job failed; ParseTx asks to contact support with its job_id",
                    job_id=job_id,
                    subject=subject,
                    failure_reason=None,
                )
            )
        raise ProtocolError(f"parsetx: job {job_id} has an unknown status {job.status!r}")

    def poll_error(self, job_id: str, error: KeplerError) -> KeplerError:
        # A job read with a key other than the one that created it answers 401. The
        # submit already proved the key, so this is about the job, not the client.
        if isinstance(error, exc.AuthenticationError):
            forbidden = exc.JobForbidden(
                f"{error.message} (job {job_id} belongs to another key)",
                status=error.status,
                code=error.code,
                method=error.method,
                path=error.path,
            )
            forbidden.__cause__ = error
            return forbidden
        return error


def _enrich_request(transactions: object) -> Request:
    """The POST of one enrichment batch, or ``InvalidInput``."""
    if isinstance(transactions, str) or not isinstance(transactions, Sequence):
        raise InvalidInput("transactions must be a list of strings", value=repr(transactions)[:100])
    if not 1 <= len(transactions) <= MAX_BATCH:
        raise InvalidInput(
            f"a batch holds 1 to {MAX_BATCH} strings, not {len(transactions)}",
            value=f"{len(transactions)} strings",
        )
    bad = [i for i, t in enumerate(transactions) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise InvalidInput(f"transactions {bad[:5]} are empty or not strings", value=str(bad[:5]))
    return Request(
        method="POST",
        path="/v1/enrich/async",
        json={"transactions": list(transactions)},
        billed=True,
    )


def _identify_batch(raw: object) -> tuple[str, Request]:
    """``enrich_many``: a batch is keyed by a hash of what it sends."""
    request = _enrich_request(raw)
    return content_key(request.json), request


class AsyncParseTx(ApiClient[EnrichResult]):
    """A client for ParseTx's asynchronous enrichment, on the kepler_async engine."""

    _spec = PARSETX

    def _make_dialect(self, base_url: str) -> ParseTxDialect:
        return ParseTxDialect()

    @traced("submit_enrich")
    async def submit_enrich(
        self,
        transactions: Sequence[str],
        *,
        deadline: float | UseDefault | None = DEFAULT,
        journal_key: str | None = None,
    ) -> JobHandle[EnrichResult]:
        """Queue up to 500 strings; never sent twice (no idempotency).

        With a journal, ``journal_key`` (your own id for this batch) is recorded with the
        job, so a later run with the same key resumes or reuses it instead of paying again.
        """
        request = _enrich_request(transactions)
        handle: JobHandle[EnrichResult] = await self._submit(
            request, subject=None, deadline=deadline, journal_key=journal_key
        )
        return handle

    @traced("enrich")
    async def enrich(
        self,
        transactions: Sequence[str],
        *,
        deadline: float | UseDefault | None = DEFAULT,
        journal_key: str | None = None,
    ) -> EnrichResult:
        """``submit_enrich`` and wait for the result."""
        handle = await self.submit_enrich(transactions, deadline=deadline, journal_key=journal_key)
        return await handle

    def enrich_many(
        self,
        batches: Iterable[Sequence[str]] | AsyncIterable[Sequence[str]],
        *,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        deadline: float | UseDefault | None = DEFAULT,
        wait_for_budget: bool = False,
    ) -> FanOut[Outcome[EnrichResult]]:
        """Enrich many batches of strings (up to 500 each); yield one ``Outcome`` per
        batch as they finish.

        Identical batches share one job; a batch's ``key`` is a hash of what it sends,
        and with a journal that hash is its journal key, so a rerun resumes or reuses
        its job instead of paying again. At most ``max_outstanding`` jobs are submitted
        and unfinished at a time; ``batches`` is read in the caller's task, as the caller
        iterates. The monthly quota (``QuotaExceeded``) ends the batches not yet
        submitted as ``not_attempted``, naming it; the daily token budget does too, with
        the time it lifts, unless ``wait_for_budget=True``; a request-rate 429 is
        waited out. A malformed batch
        comes out as an ``InvalidInput`` failure. Closing the client ends the fan-out:
        unfinished batches fail with ``ClientClosed`` (with their job ids).
        """
        return self._fan_out(
            FanOut,
            RequestFanOut(
                _identify_batch,
                self._submit,
                limit_name="the daily token budget",
                stops_on=(QuotaExceeded,),  # monthly: never waited for
            ),
            batches,
            verb="enrich_many",
            noun="batches of strings",
            max_outstanding=max_outstanding,
            deadline=deadline,
            wait_for_budget=wait_for_budget,
        )

    @traced("get_job")
    async def get_job(self, job_id: str) -> EnrichJob:
        return ParseTxDialect().decode_job(await self._job_body(job_id))
