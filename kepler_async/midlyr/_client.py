"""The implementation behind ``kepler_async.midlyr`` (see there)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from datetime import datetime
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
    camel_to_snake,
    check_opaque_id,
    content_key,
    make_error_mapper,
)
from kepler_async._engine._kit import path_segment as _segment
from kepler_async._engine._spec import ApiSpec
from kepler_async._engine._traced import traced
from kepler_async._exceptions import InvalidInput, JobFailed, ProtocolError
from kepler_async._policies import DEFAULT, PollPolicy, UseDefault
from kepler_async._serde import decode

__all__ = [
    "SCENARIOS",
    "AsyncMidLyr",
    "Chunk",
    "Citation",
    "MidLyrDialect",
    "MidLyrJob",
    "MidLyrJobFailed",
    "Regulation",
    "RiskResult",
    "ScreenFinding",
    "ScreenResult",
    "UnknownResult",
]

DEFAULT_BASE_URL = "https://api.midlyr.com"
API_KEY_ENV = "MIDLYR_API_KEY"
JOB_PATH = "/api/v1/jobs/"
SCENARIOS = ("marketing_asset", "dispute", "debt_collection", "complaint", "generic")

#: The vendor's CLI sleeps 2 s before each poll and stops after 300 s.
MIDLYR_POLICY = PollPolicy(
    first_delay=2.0, interval=2.0, multiplier=1.2, cap=5.0, jitter=0.1, deadline=300.0
)


class MidLyrJobFailed(JobFailed):
    """A MidLyr job ended ``failed``; ``failure_reason`` is its ``error.code``."""


@attrs.frozen(kw_only=True)
class Regulation:
    id: str
    title: str = ""
    category: str | None = None
    authorities: tuple[str, ...] = ()
    jurisdictions: tuple[str, ...] = ()
    description: str | None = None
    updated_at: datetime | None = None
    source_url: str | None = None


@attrs.frozen(kw_only=True)
class Chunk:
    text: str
    start_offset: int | None = None
    end_offset: int | None = None
    section_path: str | None = None


@attrs.frozen(kw_only=True)
class Citation:
    regulation: Regulation
    chunks: tuple[Chunk, ...] = ()


@attrs.frozen(kw_only=True)
class ScreenFinding:
    priority: str  # p1 blocking, p2 material, p3 advisory
    title: str
    details: str = ""
    citations: tuple[Citation, ...] = ()


@attrs.frozen(kw_only=True)
class ScreenResult:
    """``analysis.screen.result``: findings sorted by severity, and a 0-100 risk score."""

    risk_score: int
    findings: tuple[ScreenFinding, ...] = ()
    type: str = "analysis.screen.result"


@attrs.frozen(kw_only=True)
class RiskResult:
    """``analysis.risk.result``."""

    risk_score: int
    type: str = "analysis.risk.result"


@attrs.frozen(kw_only=True)
class UnknownResult:
    """A result of a ``type`` this client does not know, kept as the API sent it."""

    type: str
    raw: dict[str, Any]


MidLyrResult = ScreenResult | RiskResult | UnknownResult

_RESULT_TYPES: dict[str, type[ScreenResult] | type[RiskResult]] = {
    "analysis.screen.result": ScreenResult,
    "analysis.risk.result": RiskResult,
}


@attrs.frozen(kw_only=True)
class _JobFields:
    """The envelope without ``result`` and ``error``, which are read by hand."""

    id: str
    status: str
    type: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class MidLyrJob(_JobFields):
    """A job as ``GET /api/v1/jobs/{id}`` reports it (``result`` typed by ``type``)."""

    result: MidLyrResult | None = None
    error_code: str | None = None
    error_message: str | None = None


def _read_error(body: object) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code, message = error.get("code"), error.get("message")
        return (code if isinstance(code, str) else None), (
            message if isinstance(message, str) else None
        )
    return None, None


_map_error = make_error_mapper("midlyr", job_path=JOB_PATH, read=_read_error)

MIDLYR = ApiSpec(
    name="midlyr",
    key_env=API_KEY_ENV,
    default_base_url=DEFAULT_BASE_URL,
    auth_header="x-api-key",
    map_error=_map_error,
)


def _result(raw: object) -> MidLyrResult | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError("midlyr: a result must be an object with a type")
    cls = _RESULT_TYPES.get(raw["type"])
    if cls is None:
        return UnknownResult(type=raw["type"], raw=raw)
    return decode(cls, camel_to_snake(raw), what=f"midlyr {raw['type']}")


@attrs.frozen
class MidLyrDialect(DialectDefaults):
    """MidLyr's job API for the engine. Pure."""

    name: str = "midlyr"
    id_field: str = "id"
    default_policy: PollPolicy = MIDLYR_POLICY
    failed_class: type[JobFailed] = MidLyrJobFailed

    def load_result(self, data: object) -> MidLyrResult:
        if isinstance(data, dict) and set(data) == {"type", "raw"}:
            return decode(UnknownResult, data, what="midlyr journal result")
        restored = _result(data)
        if restored is None:
            raise ProtocolError("midlyr: the journal holds no result")
        return restored

    def check_job_id(self, job_id: str) -> str:
        return check_opaque_id("midlyr", job_id)

    def poll_request(self, job_id: str) -> Request:
        return Request(
            method="GET", path=JOB_PATH + _segment(job_id), template=JOB_PATH + "{job_id}"
        )

    def decode_job(self, body: object) -> MidLyrJob:
        if not isinstance(body, dict):
            raise ProtocolError(f"midlyr: a job body must be an object, got {type(body).__name__}")
        raw = dict(body)
        result, error = raw.pop("result", None), raw.pop("error", None)
        fields = decode(_JobFields, camel_to_snake(raw), what="midlyr job")
        code = message = None
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
        return MidLyrJob(
            **attrs.asdict(fields, recurse=False),
            result=_result(result),
            error_code=code if isinstance(code, str) else None,
            error_message=message if isinstance(message, str) else None,
        )

    def classify_poll(self, job_id: str, subject: str | None, body: object) -> PollState:
        job = self.decode_job(body)
        if job.status == "running":
            return Pending()
        if job.status == "succeeded":
            if job.result is None:
                raise ProtocolError(f"midlyr: job {job_id} succeeded without a result")
            return Done(job.result)
        if job.status == "failed":
            message = job.error_message or "the analysis failed and the API gave no reason"
            return Failed(
                MidLyrJobFailed(
                    message, job_id=job_id, subject=subject, failure_reason=job.error_code
                )
            )
        raise ProtocolError(f"midlyr: job {job_id} has an unknown status {job.status!r}")


def _screen_request(text: object, scenario: object) -> Request:
    """The POST of one screen analysis, or ``InvalidInput``."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("the content to screen is empty", value=repr(text)[:100])
    if scenario not in SCENARIOS:
        raise InvalidInput(f"scenario must be one of {SCENARIOS}", value=repr(scenario))
    return Request(
        method="POST",
        path="/api/v1/analysis/screen",
        json={"content": {"type": "text", "text": text}, "scenario": scenario},
        billed=True,
    )


class AsyncMidLyr(ApiClient[MidLyrResult]):
    """A client for MidLyr's screen analysis jobs, on the kepler_async engine."""

    _spec = MIDLYR

    def _make_dialect(self, base_url: str) -> MidLyrDialect:
        return MidLyrDialect()

    @traced("submit_screen")
    async def submit_screen(
        self,
        text: str,
        *,
        scenario: str = "generic",
        deadline: float | UseDefault | None = DEFAULT,
        journal_key: str | None = None,
    ) -> JobHandle[MidLyrResult]:
        """Queue a screen analysis of ``text``; never sent twice (no idempotency).

        With a journal, ``journal_key`` (your own id for this text) is recorded with the
        job, so a later run with the same key resumes or reuses it instead of paying again.
        """
        request = _screen_request(text, scenario)
        handle: JobHandle[MidLyrResult] = await self._submit(
            request, subject=None, deadline=deadline, journal_key=journal_key
        )
        return handle

    @traced("screen")
    async def screen(
        self,
        text: str,
        *,
        scenario: str = "generic",
        deadline: float | UseDefault | None = DEFAULT,
        journal_key: str | None = None,
    ) -> MidLyrResult:
        """``submit_screen`` and wait for the result."""
        handle = await self.submit_screen(
            text, scenario=scenario, deadline=deadline, journal_key=journal_key
        )
        return await handle

    def screen_many(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        scenario: str = "generic",
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        deadline: float | UseDefault | None = DEFAULT,
        wait_for_budget: bool = False,
    ) -> FanOut[Outcome[MidLyrResult]]:
        """Screen many texts; yield one ``Outcome`` per input as they finish.

        Identical texts share one job; an input's ``key`` is a hash of what it sends,
        and with a journal that hash is its journal key, so a rerun resumes or reuses
        its job instead of paying again. At most ``max_outstanding`` jobs are submitted
        and unfinished at a time; ``texts`` is read in the caller's task, as the caller
        iterates. A 429 is waited out (up to an hour); an empty text comes out as an
        ``InvalidInput`` failure. Closing the client ends the batch: unfinished inputs
        fail with ``ClientClosed`` (with their job ids).
        """
        if scenario not in SCENARIOS:
            raise InvalidInput(f"scenario must be one of {SCENARIOS}", value=repr(scenario))

        def identify(raw: object) -> tuple[str, Request]:
            request = _screen_request(raw, scenario)
            return content_key(request.json), request

        return self._fan_out(
            FanOut,
            RequestFanOut(identify, self._submit, limit_name="a limit on analyses"),
            texts,
            verb="screen_many",
            noun="texts",
            max_outstanding=max_outstanding,
            deadline=deadline,
            wait_for_budget=wait_for_budget,
        )

    @traced("get_job")
    async def get_job(self, job_id: str) -> MidLyrJob:
        return MidLyrDialect().decode_job(await self._job_body(job_id))
