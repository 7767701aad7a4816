"""The implementation behind ``kepler_async.deepidv`` (see there)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, Hashable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

import attrs

from kepler_async._constants import DEFAULT_MAX_OUTSTANDING
from kepler_async._engine._client import ApiClient
from kepler_async._engine._dialect import Done, Failed, Pending, PollState, Request
from kepler_async._engine._fanout import FanOut
from kepler_async._engine._fanout_plan import Outcome, RequestFanOut
from kepler_async._engine._handle import JobHandle
from kepler_async._engine._kit import (
    DialectDefaults,
    body_key,
    camel_to_snake,
    check_opaque_id,
    content_key,
    epoch_to_datetime,
    make_error_mapper,
)
from kepler_async._engine._kit import path_segment as _segment
from kepler_async._engine._spec import ApiSpec
from kepler_async._engine._traced import traced
from kepler_async._exceptions import InvalidInput, JobFailed, ProtocolError
from kepler_async._policies import DEFAULT, PollPolicy, UseDefault
from kepler_async._serde import OpenEnum as _OpenEnum
from kepler_async._serde import decode

__all__ = [
    "AdverseMediaResult",
    "Article",
    "AsyncDeepidv",
    "DeepidvDialect",
    "DeepidvJob",
    "DeepidvJobFailed",
    "Exposure",
    "Finding",
    "RiskLevel",
]

DEFAULT_BASE_URL = "https://api.deepidv.com"
API_KEY_ENV = "DEEPIDV_API_KEY"
JOB_PATH = "/v1/async-jobs/"

#: The vendor's guidance: poll every 2-5 s with backoff; its SDK gives up at 180 s.
DEEPIDV_POLICY = PollPolicy(
    first_delay=2.0, interval=2.0, multiplier=1.3, cap=5.0, jitter=0.1, deadline=180.0
)


class RiskLevel(_OpenEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class DeepidvJobFailed(JobFailed):
    """A deepidv job ended ``failed``; ``message`` is the API's ``error`` string."""


@attrs.frozen(kw_only=True)
class Finding:
    finding_id: str
    severity: str
    category: str
    title: str
    detail: str = ""
    source_url: str | None = None
    source_name: str | None = None
    article_date: str | None = None
    confidence: float | None = None
    confirmed_by: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Article:
    headline: str
    timestamp: str | None = None
    source_link: str | None = None
    source: str | None = None


@attrs.frozen(kw_only=True)
class Exposure:
    hits: int
    articles: tuple[Article, ...] = ()


@attrs.frozen(kw_only=True)
class AdverseMediaResult:
    """What an adverse-media screening found."""

    total_hits: int
    risk_level: RiskLevel | str
    risk_score: int
    summary: str = ""
    findings: tuple[Finding, ...] = ()
    exposures_by_category: dict[str, Exposure] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class DeepidvJob:
    """A job as ``GET /v1/async-jobs/{jobId}`` reports it."""

    job_id: str
    status: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    result: AdverseMediaResult | None = None
    error: str | None = None


def _read_error(body: object) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body.get("message") or body["error"]
    return None, None


_map_error = make_error_mapper("deepidv", job_path=JOB_PATH, read=_read_error)

DEEPIDV = ApiSpec(
    name="deepidv",
    key_env=API_KEY_ENV,
    default_base_url=DEFAULT_BASE_URL,
    auth_header="x-api-key",
    map_error=_map_error,
)


@attrs.frozen
class DeepidvDialect(DialectDefaults):
    """deepidv's job API for the engine. Pure."""

    name: str = "deepidv"
    id_field: str = "jobId"
    default_policy: PollPolicy = DEEPIDV_POLICY
    result_type: type[AdverseMediaResult] = AdverseMediaResult
    failed_class: type[JobFailed] = DeepidvJobFailed

    def submission_key(self, request: Request) -> Hashable:
        """A submission is its ``Idempotency-Key``: the API makes one job of it."""
        return (request.headers or {}).get("Idempotency-Key") or body_key(request)

    def check_job_id(self, job_id: str) -> str:
        return check_opaque_id("deepidv", job_id)

    def poll_request(self, job_id: str) -> Request:
        return Request(
            method="GET", path=JOB_PATH + _segment(job_id), template=JOB_PATH + "{job_id}"
        )

    def decode_job(self, body: object) -> DeepidvJob:
        if not isinstance(body, dict):
            raise ProtocolError(f"deepidv: a job body must be an object, got {type(body).__name__}")
        raw = dict(body)
        created = raw.pop("createdAt", None)
        shaped: dict[str, Any] = camel_to_snake(raw)  # type: ignore[assignment]
        shaped["status"] = str(shaped.get("status", "")).lower()
        job = decode(DeepidvJob, shaped, what="deepidv job")
        return attrs.evolve(job, created_at=epoch_to_datetime(created))

    def classify_poll(self, job_id: str, subject: str | None, body: object) -> PollState:
        job = self.decode_job(body)
        if job.status in ("pending", "processing", "queued"):
            return Pending()
        if job.status in ("ready", "completed"):  # COMPLETED: the older, uppercase contract
            if job.result is None:
                raise ProtocolError(f"deepidv: job {job_id} is ready but has no result")
            return Done(job.result)
        if job.status == "failed":
            message = job.error or "the job failed and the API gave no reason"
            return Failed(
                DeepidvJobFailed(message, job_id=job_id, subject=subject, failure_reason=job.error)
            )
        raise ProtocolError(f"deepidv: job {job_id} has an unknown status {job.status!r}")


def _check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 255:
        raise InvalidInput(f"{field} must be 1 to 255 characters", value=repr(value)[:100])
    return value.strip()


def _person(
    first_name: object,
    last_name: object,
    date_of_birth: object,
    email: object = None,
    country: object = None,
) -> dict[str, str]:
    """The body of one adverse-media screening, or ``InvalidInput``."""
    born = date_of_birth.isoformat() if isinstance(date_of_birth, date) else date_of_birth
    try:
        date.fromisoformat(str(born))
    except ValueError:
        raise InvalidInput(
            "date_of_birth must be YYYY-MM-DD", value=repr(date_of_birth)[:100]
        ) from None
    body: dict[str, str] = {
        "firstName": _check_name("first_name", first_name),
        "lastName": _check_name("last_name", last_name),
        "dateOfBirth": str(born),
    }
    if email is not None:
        if not isinstance(email, str):
            raise InvalidInput("email must be a string", value=repr(email)[:100])
        body["email"] = email
    if country is not None:
        if not (isinstance(country, str) and len(country.strip()) == 2):
            raise InvalidInput("country must be an ISO 3166-1 alpha-2 code", value=repr(country))
        body["country"] = country.strip().upper()
    return body


def _screening_request(body: dict[str, str], idempotency_key: str) -> Request:
    return Request(
        method="POST",
        path="/v1/screening/adverse-media",
        json=body,
        headers={"Idempotency-Key": idempotency_key},
        billed=False,  # idempotent: the same key cannot start a second job
    )


#: The fields a person given to ``screen_adverse_media_many`` may have.
_PERSON_FIELDS = frozenset(
    {"first_name", "last_name", "date_of_birth", "email", "country", "idempotency_key"}
)


def _identify_person(raw: object) -> tuple[str, Request]:
    """``screen_adverse_media_many``: a person is keyed by its idempotency key."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            "each person is a mapping of first_name, last_name, date_of_birth (and "
            "optionally email, country, idempotency_key)",
            value=repr(raw)[:100],
        )
    unknown = sorted(str(name) for name in raw if name not in _PERSON_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown person fields {unknown}", value=repr(unknown)[:100])
    body = _person(
        raw.get("first_name"),
        raw.get("last_name"),
        raw.get("date_of_birth"),
        raw.get("email"),
        raw.get("country"),
    )
    given = raw.get("idempotency_key")
    if given is not None and not isinstance(given, str):
        raise InvalidInput("idempotency_key must be a string", value=repr(given)[:100])
    # Without a key of the caller's, one made from the person: the same person in
    # this batch, or in a rerun, is the same job.
    key = given or str(uuid.uuid5(uuid.NAMESPACE_URL, content_key(body)))
    return key, _screening_request(body, key)


class AsyncDeepidv(ApiClient[AdverseMediaResult]):
    """A client for deepidv's asynchronous screenings, on the kepler_async engine."""

    _spec = DEEPIDV

    def _make_dialect(self, base_url: str) -> DeepidvDialect:
        return DeepidvDialect()

    async def _in_doubt(
        self, key: str, subject: str | None, submitted_at: float
    ) -> AdverseMediaResult | None:
        """Submit again: the same idempotency key gives back the same job, if any."""
        return None

    @traced("submit_adverse_media")
    async def submit_adverse_media(
        self,
        *,
        first_name: str,
        last_name: str,
        date_of_birth: str | date,
        email: str | None = None,
        country: str | None = None,
        idempotency_key: str | None = None,
        deadline: float | UseDefault | None = DEFAULT,
        journal_key: str | None = None,
    ) -> JobHandle[AdverseMediaResult]:
        """Queue a screening; the handle resolves to an ``AdverseMediaResult``.

        The ``Idempotency-Key`` (a new UUID unless given) makes a retried submit safe, so
        transient failures of the POST are retried like reads. With a journal, the job is
        recorded under ``journal_key`` (by default the idempotency key, if you gave one).
        """
        body = _person(first_name, last_name, date_of_birth, email, country)
        request = _screening_request(body, idempotency_key or str(uuid.uuid4()))
        handle: JobHandle[AdverseMediaResult] = await self._submit(
            request, subject=None, deadline=deadline, journal_key=journal_key or idempotency_key
        )
        return handle

    @traced("screen_adverse_media")
    async def screen_adverse_media(
        self,
        *,
        first_name: str,
        last_name: str,
        date_of_birth: str | date,
        email: str | None = None,
        country: str | None = None,
        idempotency_key: str | None = None,
        deadline: float | UseDefault | None = DEFAULT,
        journal_key: str | None = None,
    ) -> AdverseMediaResult:
        """``submit_adverse_media`` and wait for the result."""
        handle = await self.submit_adverse_media(
            first_name=first_name,
            last_name=last_name,
            date_of_birth=date_of_birth,
            email=email,
            country=country,
            idempotency_key=idempotency_key,
            deadline=deadline,
            journal_key=journal_key,
        )
        return await handle

    def screen_adverse_media_many(
        self,
        people: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        deadline: float | UseDefault | None = DEFAULT,
        wait_for_budget: bool = False,
    ) -> FanOut[Outcome[AdverseMediaResult]]:
        """Screen many people; yield one ``Outcome`` per person as they finish.

        Each person is a mapping of ``submit_adverse_media``'s fields (``first_name``,
        ``last_name``, ``date_of_birth``, optionally ``email``, ``country`` and
        ``idempotency_key``). A person's ``key`` is its idempotency key: the one given,
        or one made from the person, so the same person twice, or in a rerun, is one
        job (and, with a journal, its journal key). At most ``max_outstanding`` jobs
        are submitted and unfinished at a time; ``people`` is read in the caller's
        task, as the caller iterates. A 429 is waited out (up to an hour); a person
        that cannot be screened comes out as an ``InvalidInput`` failure. Closing the
        client ends the batch: unfinished inputs fail with ``ClientClosed``.
        """
        return self._fan_out(
            FanOut,
            RequestFanOut(_identify_person, self._submit, limit_name="a rate limit"),
            people,
            verb="screen_adverse_media_many",
            noun="people",
            max_outstanding=max_outstanding,
            deadline=deadline,
            wait_for_budget=wait_for_budget,
        )

    @traced("get_job")
    async def get_job(self, job_id: str) -> DeepidvJob:
        """One look at a job."""
        return DeepidvDialect().decode_job(await self._job_body(job_id))
