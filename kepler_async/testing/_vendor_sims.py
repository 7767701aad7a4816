"""Simulators of the deepidv, MidLyr and ParseTx job APIs (Starlette apps).

Each keeps keys, jobs and counters, runs ``1 / time_scale`` times faster than real time
(``clock`` may be a fake), decides every job's length and outcome from ``seed`` and the
job's number, serves the documented states and bodies, and takes the same ``Fault``
rules as the Kepler simulator. Options reproduce the documented contradictions (for
example deepidv's upper-case statuses and millisecond ``createdAt``).
"""

from __future__ import annotations

import abc
import json
import math
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kepler_async.deepidv._client import DEFAULT_BASE_URL as DEEPIDV_URL
from kepler_async.midlyr._client import DEFAULT_BASE_URL as MIDLYR_URL
from kepler_async.parsetx._client import DEFAULT_BASE_URL as PARSETX_URL

from ._faults import FaultPlan, FaultsMixin, answer_with_faults
from ._sim_data import stable_rng
from ._virtual import sim_time

__all__ = [
    "DEEPIDV_KEY",
    "MIDLYR_KEY",
    "PARSETX_KEY",
    "DeepidvSimulator",
    "MidLyrSimulator",
    "ParseTxSimulator",
    "VendorCounters",
]

DEEPIDV_KEY = "deepidv_sim_key"
MIDLYR_KEY = "mlyr_test_simulator"
PARSETX_KEY = "pt_live_simulator"

Handler = Callable[[Request], Awaitable[Response]]


@attrs.define
class VendorCounters:
    """What tests assert on."""

    jobs_created: int = 0
    polls_served: int = 0
    requests: Counter[str] = attrs.field(factory=Counter)


@attrs.define
class _Job:
    job_id: str
    owner: str
    number: int
    created: float
    finishes: float
    failed: bool
    payload: Any


class _JobSimulator(FaultsMixin, abc.ABC):
    """Keys, jobs, time and faults shared by the three simulators."""

    vendor = "vendor"
    prefix = "job"
    #: Where the real API lives: what ``mock()`` routes by default.
    api_base_url: ClassVar[str]

    def __init__(
        self,
        *,
        seed: int | str = 0,
        time_scale: float = 1.0,
        clock: Callable[[], float] = sim_time,
        duration: tuple[float, float] = (5.0, 30.0),
        failure_rate: float = 0.05,
        keys: dict[str, str] | None = None,
    ) -> None:
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError("time_scale must be a positive number")
        if not 0 <= failure_rate <= 1:
            raise ValueError("failure_rate must be between 0 and 1")
        self.seed = seed
        self.time_scale = time_scale
        self._clock = clock
        self._t0 = clock()
        self.epoch = datetime.now(timezone.utc).replace(microsecond=0)
        self.duration = duration
        self.failure_rate = failure_rate
        self.keys = dict(keys or {})
        self.jobs: dict[str, _Job] = {}
        self.counters = VendorCounters()
        self.faults = FaultPlan()

    # --- time and jobs ------------------------------------------------------------------

    def now(self) -> float:
        return (self._clock() - self._t0) / self.time_scale

    def at_dt(self, at: float) -> datetime:
        return self.epoch + timedelta(seconds=at)

    def add_key(self, key: str, owner: str) -> str:
        self.keys[key] = owner
        return key

    def _new_job(self, owner: str, payload: Any) -> _Job:
        number = self.counters.jobs_created
        self.counters.jobs_created += 1
        rng = stable_rng(self.seed, self.vendor, number)
        low, high = self.duration
        now = self.now()
        job_id = self._job_id(rng.getrandbits(128))
        job = _Job(
            job_id,
            owner,
            number,
            now,
            now + rng.uniform(low, high),
            rng.random() < self.failure_rate,
            payload,
        )
        self.jobs[job_id] = job
        return job

    def _job_id(self, bits: int) -> str:
        return str(uuid.UUID(int=bits, version=4))

    def _phase(self, job: _Job) -> str:
        """``waiting`` (first fifth), ``working``, then ``done`` or ``failed``."""
        now = self.now()
        if now >= job.finishes:
            return "failed" if job.failed else "done"
        return "waiting" if now < job.created + (job.finishes - job.created) / 5 else "working"

    # --- the app ------------------------------------------------------------------------

    @abc.abstractmethod
    def _owner(self, request: Request) -> str | None:
        """The owner (organisation, team or key) of the request's key; None: refused."""

    @abc.abstractmethod
    def _routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) for each endpoint."""

    def create_app(self) -> Starlette:
        """The simulator as an ASGI app (in-process via httpx.ASGITransport, or uvicorn)."""

        def wrap(name: str, handler: Handler) -> Handler:
            async def serve(request: Request) -> Response:
                self.counters.requests[name] += 1
                return await answer_with_faults(
                    self.faults, request.method, request.url.path, lambda: handler(request)
                )

            return serve

        routes = [
            Route(path, wrap(f"{method} {path}", handler), methods=[method])
            for method, path, handler in self._routes()
        ]
        return Starlette(routes=routes)

    def mock(self, router: Any, *, base_url: str | None = None) -> Any:
        """Answer from this simulator every request a respx router (such as the
        ``respx_mock`` fixture) catches under ``base_url``, by default the real API's.
        Returns the respx route."""
        from ._respx import route_to_app

        return route_to_app(router, self.create_app(), base_url or self.api_base_url)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        return None


# --- deepidv ----------------------------------------------------------------------------


class DeepidvSimulator(_JobSimulator):
    """deepidv adverse-media screening: ``pending`` -> ``processing`` -> ``ready``/``failed``.

    ``uppercase=True`` answers as the API did in May 2026 (``PENDING``, ``COMPLETED``...);
    ``created_at_ms`` chooses milliseconds (the docs' example) or seconds (the SDK's);
    ``foreign_job_status`` is what another organisation's job answers (403 or 404: the
    sources disagree). An ``Idempotency-Key`` seen in the last 24 h replays its job (200).
    """

    vendor = "deepidv"
    api_base_url = DEEPIDV_URL

    def __init__(
        self,
        *,
        uppercase: bool = False,
        created_at_ms: bool = True,
        foreign_job_status: int = 403,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("duration", (30.0, 60.0))
        super().__init__(**kwargs)
        self.uppercase = uppercase
        self.created_at_ms = created_at_ms
        self.foreign_job_status = foreign_job_status
        self._idempotency: dict[tuple[str, str], tuple[str, float]] = {}
        self.keys.setdefault(DEEPIDV_KEY, "org_sim")
        self.keys.setdefault("deepidv_other_org", "org_other")

    def _owner(self, request: Request) -> str | None:
        return self.keys.get(request.headers.get("x-api-key", ""))

    def _status(self, job: _Job) -> str:
        phase = self._phase(job)
        if self.uppercase:
            return {"waiting": "PENDING", "working": "PROCESSING", "done": "COMPLETED"}.get(
                phase, "FAILED"
            )
        return {"waiting": "pending", "working": "processing", "done": "ready"}.get(phase, "failed")

    def _result(self, job: _Job) -> dict[str, Any]:
        rng = stable_rng(self.seed, "deepidv-result", job.number)
        hits = rng.choice([0, 0, 1, 3])
        findings = [
            {
                "findingId": f"f-{job.number}-{i}",
                "severity": rng.choice(["MEDIUM", "HIGH", "CRITICAL"]),
                "category": "financial_crime",
                "title": f"Finding {i + 1}",
                "detail": "Mentioned in a news report.",
                "sourceUrl": None,
                "sourceName": "Example News",
                "articleDate": None,
                "confidence": round(rng.random(), 2),
                "confirmedBy": ["news"],
            }
            for i in range(hits)
        ]
        categories = [
            "financial_crime",
            "terrorism",
            "regulatory",
            "political",
            "organized_crime",
            "violent_crime",
            "criminal_legal",
            "reputational",
            "court_records",
        ]
        score = min(100, hits * 30)
        return {
            "totalHits": hits,
            "riskLevel": ["LOW", "MEDIUM", "HIGH", "CRITICAL"][min(3, hits)],
            "riskScore": score,
            "summary": f"{hits} adverse media hits.",
            "findings": findings,
            "exposuresByCategory": {
                c: {"hits": hits if c == "financial_crime" else 0, "articles": []}
                for c in categories
            },
        }

    def _body(self, job: _Job) -> dict[str, Any]:
        created = job.created * self.time_scale + self.epoch.timestamp()
        body: dict[str, Any] = {
            "jobId": job.job_id,
            "status": self._status(job),
            "createdAt": int(created * 1000) if self.created_at_ms else int(created),
            "updatedAt": self.at_dt(min(self.now(), job.finishes)).isoformat(),
        }
        phase = self._phase(job)
        if phase == "done":
            body["result"] = self._result(job)
        elif phase == "failed":
            body["error"] = "Screening provider timed out."
        return body

    def _routes(self) -> list[tuple[str, str, Handler]]:
        async def submit(request: Request) -> Response:
            owner = self._owner(request)
            if owner is None:
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            body = await _json(request)
            if not isinstance(body, dict) or not all(
                isinstance(body.get(f), str) and body[f]
                for f in ("firstName", "lastName", "dateOfBirth")
            ):
                return JSONResponse(
                    {"error": "firstName, lastName and dateOfBirth are required"}, status_code=400
                )
            key = request.headers.get("idempotency-key")
            if key and (owner, key) in self._idempotency:
                job_id, at = self._idempotency[(owner, key)]
                if self.now() - at < 86400:
                    job = self.jobs[job_id]
                    return JSONResponse(
                        {"jobId": job_id, "status": self._status(job), "message": "replayed"}
                    )
            job = self._new_job(owner, body)
            if key:
                self._idempotency[(owner, key)] = (job.job_id, self.now())
            return JSONResponse(
                {
                    "jobId": job.job_id,
                    "status": "PENDING" if self.uppercase else "pending",
                    "message": "Adverse media screening queued.",
                },
                status_code=202,
            )

        async def get_job(request: Request) -> Response:
            self.counters.polls_served += 1
            owner = self._owner(request)
            if owner is None:
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            job = self.jobs.get(request.path_params["job_id"])
            if job is None:
                return JSONResponse({"error": "Job not found"}, status_code=404)
            if job.owner != owner:
                return JSONResponse({"error": "Forbidden"}, status_code=self.foreign_job_status)
            return JSONResponse(self._body(job))

        return [
            ("POST", "/v1/screening/adverse-media", submit),
            ("GET", "/v1/async-jobs/{job_id}", get_job),
        ]


# --- MidLyr ------------------------------------------------------------------------------


class MidLyrSimulator(_JobSimulator):
    """MidLyr screen analysis: ``running`` -> ``succeeded``/``failed``.

    ``result_type`` lets a test serve a result ``type`` the client does not know.
    """

    vendor = "midlyr"
    api_base_url = MIDLYR_URL

    def __init__(self, *, result_type: str = "analysis.screen.result", **kwargs: Any) -> None:
        kwargs.setdefault("duration", (3.0, 20.0))
        super().__init__(**kwargs)
        self.result_type = result_type
        self.keys.setdefault(MIDLYR_KEY, "team_sim")
        self.keys.setdefault("mlyr_test_other_team", "team_other")

    def _job_id(self, bits: int) -> str:
        alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
        chars = []
        for _ in range(26):
            chars.append(alphabet[bits % 32])
            bits //= 32
        return "job_" + "".join(chars)

    def _owner(self, request: Request) -> str | None:
        return self.keys.get(request.headers.get("x-api-key", ""))

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)

    def _result(self, job: _Job) -> dict[str, Any]:
        rng = stable_rng(self.seed, "midlyr-result", job.number)
        score = rng.randrange(0, 101)
        if self.result_type != "analysis.screen.result":
            return {"type": self.result_type, "riskScore": score, "extra": {"x": 1}}
        findings = []
        if score > 40:
            findings.append(
                {
                    "priority": "p1" if score > 80 else "p2",
                    "title": "Unsubstantiated claim",
                    "details": "The text promises terms the lender cannot guarantee.",
                    "citations": [
                        {
                            "regulation": {
                                "id": "cmdoc_01HSIM",
                                "category": "regulation",
                                "title": "Regulation Z",
                                "authorities": ["CFPB"],
                                "jurisdictions": ["US"],
                                "description": "Truth in Lending",
                                "updatedAt": "2026-01-01T00:00:00Z",
                                "sourceUrl": "https://example.invalid/reg-z",
                            },
                            "chunks": [{"text": "§ 1026.24", "startOffset": 10, "endOffset": None}],
                        }
                    ],
                }
            )
        return {"type": "analysis.screen.result", "riskScore": score, "findings": findings}

    def _body(self, job: _Job) -> dict[str, Any]:
        phase = self._phase(job)
        status = {"done": "succeeded", "failed": "failed"}.get(phase, "running")
        return {
            "id": job.job_id,
            "type": "screen_analysis",
            "status": status,
            "createdAt": self.at_dt(job.created).isoformat(),
            "updatedAt": self.at_dt(min(self.now(), job.finishes)).isoformat(),
            "result": self._result(job) if status == "succeeded" else None,
            "error": (
                {"code": "analysis_failed", "message": "Screen analysis could not be completed."}
                if status == "failed"
                else None
            ),
        }

    def _routes(self) -> list[tuple[str, str, Handler]]:
        async def submit(request: Request) -> Response:
            owner = self._owner(request)
            if owner is None:
                return self._error(401, "unauthorized", "invalid API key")
            body = await _json(request)
            content = body.get("content") if isinstance(body, dict) else None
            ok = (
                isinstance(content, dict)
                and content.get("type") == "text"
                and isinstance(content.get("text"), str)
                and len(content["text"]) >= 1
                and body.get("scenario")
                in ("marketing_asset", "dispute", "debt_collection", "complaint", "generic")
            )
            if not ok:
                return self._error(400, "invalid_request", "content.text and scenario are required")
            job = self._new_job(owner, body)
            return JSONResponse({"id": job.job_id}, status_code=202)

        async def get_job(request: Request) -> Response:
            self.counters.polls_served += 1
            owner = self._owner(request)
            if owner is None:
                return self._error(401, "unauthorized", "invalid API key")
            job = self.jobs.get(request.path_params["job_id"])
            if job is None or job.owner != owner:
                return self._error(404, "job_not_found", "missing")
            return JSONResponse(self._body(job))

        return [
            ("POST", "/api/v1/analysis/screen", submit),
            ("GET", "/api/v1/jobs/{job_id}", get_job),
        ]


# --- ParseTx ----------------------------------------------------------------------------


class ParseTxSimulator(_JobSimulator):
    """ParseTx enrichment: ``queued`` -> ``processing`` -> ``complete``/``failed``.

    Jobs are bound to the key that made them (another key gets 401). ``monthly_quota``
    and ``daily_token_budget`` (strings) trip the two documented 429 bodies.
    """

    vendor = "parsetx"
    api_base_url = PARSETX_URL

    def __init__(
        self,
        *,
        monthly_quota: int | None = None,
        daily_token_budget: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("duration", (2.0, 15.0))
        super().__init__(**kwargs)
        self.monthly_quota = monthly_quota
        self.daily_token_budget = daily_token_budget
        self.used = 0
        self.keys.setdefault(PARSETX_KEY, PARSETX_KEY)
        self.keys.setdefault("pt_live_other_key", "pt_live_other_key")

    def _owner(self, request: Request) -> str | None:
        key = request.headers.get("x-api-key") or ""
        if not key:
            auth = request.headers.get("authorization", "")
            key = auth[7:] if auth.lower().startswith("bearer ") else ""
        return self.keys.get(key)

    @staticmethod
    def _item(text: str, number: int, seed: Any) -> dict[str, Any]:
        letters = [c for c in text if c.isalpha()]
        vowels = [c for c in letters if c.lower() in "aeiou"]
        if not letters or (" " not in text and len(vowels) / len(letters) < 0.08):
            return {"input": text, "status": "rejected"}
        if stable_rng(seed, "parsetx-item", text).random() < 0.05:
            return {"input": text, "status": "retry"}
        word = "".join(c for c in text.split()[0] if c.isalpha()).capitalize() or "Merchant"
        return {
            "input": text,
            "status": "complete",
            "source": "llm" if number % 2 else "cache",
            "merchant": word,
            "domain": f"{word.lower()}.com",
            "category": "Shopping",
            "mcc_code": "5999",
            "is_subscription": False,
            "confidence": 1 if number % 2 == 0 else 0.9,
        }

    def _body(self, job: _Job) -> dict[str, Any]:
        phase = self._phase(job)
        status = {"waiting": "queued", "working": "processing", "done": "complete"}.get(
            phase, "failed"
        )
        body: dict[str, Any] = {
            "id": job.job_id,
            "status": status,
            "results": [],
            "created_at": self.at_dt(job.created).isoformat(),
            "updated_at": self.at_dt(min(self.now(), job.finishes)).isoformat(),
        }
        if status != "queued":
            body["item_count"] = len(job.payload)
        if status == "complete":
            body["results"] = [self._item(t, job.number, self.seed) for t in job.payload]
        return body

    def _routes(self) -> list[tuple[str, str, Handler]]:
        async def submit(request: Request) -> Response:
            owner = self._owner(request)
            if owner is None:
                missing = not (
                    request.headers.get("x-api-key") or request.headers.get("authorization")
                )
                message = (
                    "Missing API key. Provide your key via the X-API-Key header."
                    if missing
                    else "Invalid or revoked API key."
                )
                return JSONResponse({"error": message}, status_code=401)
            body = await _json(request)
            items = body.get("transactions") if isinstance(body, dict) else None
            if (
                not isinstance(items, list)
                or not items
                or not all(isinstance(t, str) for t in items)
            ):
                return JSONResponse(
                    {"error": "transactions must be a non-empty list of strings"}, status_code=400
                )
            if len(items) > 500:
                return JSONResponse(
                    {"error": "At most 500 transactions per request."}, status_code=400
                )
            if self.monthly_quota is not None and self.used + len(items) > self.monthly_quota:
                return JSONResponse(
                    {
                        "error": "Monthly quota exceeded.",
                        "usage": self.used,
                        "limit": self.monthly_quota,
                        "plan": "starter",
                    },
                    status_code=429,
                )
            if (
                self.daily_token_budget is not None
                and self.used + len(items) > self.daily_token_budget
            ):
                return JSONResponse(
                    {
                        "error": "Daily token budget exceeded. Resets at midnight UTC.",
                        "token_usage": self.used,
                        "token_limit": self.daily_token_budget,
                        "plan": "starter",
                    },
                    status_code=429,
                )
            self.used += len(items)
            job = self._new_job(owner, items)
            return JSONResponse(
                {"results": [], "job_id": job.job_id, "status": "queued"}, status_code=202
            )

        async def get_job(request: Request) -> Response:
            self.counters.polls_served += 1
            owner = self._owner(request)
            if owner is None:
                return JSONResponse({"error": "Invalid or revoked API key."}, status_code=401)
            job = self.jobs.get(request.path_params["job_id"])
            if job is None:
                return JSONResponse({"error": "Job not found."}, status_code=404)
            if job.owner != owner:
                return JSONResponse({"error": "Invalid or revoked API key."}, status_code=401)
            return JSONResponse(self._body(job))

        return [
            ("POST", "/v1/enrich/async", submit),
            ("GET", "/v1/enrich/jobs/{job_id}", get_job),
        ]
