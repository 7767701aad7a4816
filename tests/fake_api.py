"""A tiny job API that exists only here, to test the engine through its protocol.

``FakeServer`` answers ``POST /jobs`` with 202 and a job id, and ``GET /jobs/{id}``
with ``running`` until the job's duration (on the event loop's clock) has passed,
then ``done`` with its value (or ``failed``). A job asked with ``"status"`` set
answers that status once done: ``weird`` (a state the engine does not know) or
``boom`` (the dialect trips on the bytes). No vendor code is involved.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import attrs
import httpx

from kepler_async import JobFailed, JobHandle, PollPolicy
from kepler_async._engine._client import ApiClient
from kepler_async._engine._dialect import Done, Failed, Pending, PollState, Request
from kepler_async._engine._kit import DialectDefaults, make_error_mapper
from kepler_async._engine._spec import ApiSpec
from kepler_async._policies import DEFAULT, UseDefault

FAKE_KEY = "fake-key-123"
FAKE_POLICY = PollPolicy(
    first_delay=1.0, interval=1.0, multiplier=1.0, cap=1.0, jitter=0.0, deadline=60.0
)


class FakeServer:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.polls = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("X-Key") != FAKE_KEY:
            return httpx.Response(401, json={"error": "bad key"})
        now = anyio.current_time()
        if request.method == "POST" and request.url.path == "/jobs":
            self.posts += 1
            spec = json.loads(request.content)
            job_id = f"job-{len(self.jobs) + 1}"
            self.jobs[job_id] = {"ends": now + spec.get("duration", 5.0), **spec}
            return httpx.Response(202, json={"id": job_id})
        if request.method == "GET" and request.url.path.startswith("/jobs/"):
            self.polls += 1
            job = self.jobs.get(request.url.path.rsplit("/", 1)[1])
            if job is None:
                return httpx.Response(404, json={"error": "no such job"})
            if now < job["ends"]:
                return httpx.Response(200, json={"status": "running"})
            status = job.get("status", "done")
            return httpx.Response(200, json={"status": status, "value": job.get("value", 0)})
        return httpx.Response(404, json={"error": "no route"})


class UnknownState:
    """Not a state the engine knows."""


@attrs.frozen
class FakeDialect(DialectDefaults):
    name: str = "fake"
    id_field: str = "id"
    default_policy: PollPolicy = FAKE_POLICY
    result_type: type[int] = int

    def check_job_id(self, job_id: str) -> str:
        return job_id

    def poll_request(self, job_id: str) -> Request:
        return Request(method="GET", path=f"/jobs/{job_id}")

    def classify_poll(self, job_id: str, subject: str | None, body: object) -> PollState:
        assert isinstance(body, dict)
        status = body["status"]
        if status == "running":
            return Pending()
        if status == "done":
            return Done(body["value"])
        if status == "failed":
            return Failed(
                JobFailed("it failed", job_id=job_id, subject=subject, failure_reason="nope")
            )
        if status == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        return UnknownState()  # type: ignore[return-value]  # on purpose: a buggy dialect


def _read(body: object) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body["error"]
    return None, None


class FakeClient(ApiClient[int]):
    """A client of the fake API: all it adds to ``ApiClient`` is its verb."""

    _spec = ApiSpec(
        name="fake",
        key_env="FAKE_API_KEY",
        default_base_url="http://fake.test",
        auth_header="X-Key",
        map_error=make_error_mapper("fake", job_path="/jobs/", read=_read),
    )

    def _make_dialect(self, base_url: str) -> FakeDialect:
        return FakeDialect()

    async def submit_job(
        self,
        value: int,
        *,
        duration: float = 5.0,
        status: str = "done",
        deadline: float | UseDefault | None = DEFAULT,
        journal_key: str | None = None,
    ) -> JobHandle[int]:
        request = Request(
            method="POST",
            path="/jobs",
            json={"value": value, "duration": duration, "status": status},
            billed=True,
        )
        handle: JobHandle[int] = await self._submit(
            request, subject=f"value {value}", deadline=deadline, journal_key=journal_key
        )
        return handle


def fake_client(
    server: FakeServer, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any
) -> FakeClient:
    return FakeClient(FAKE_KEY, transport=transport or server.transport(), **kwargs)
