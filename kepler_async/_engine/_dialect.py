"""What the engine needs to know about one job API: a sans-IO protocol.

A *dialect* builds the requests (submit, poll, result) and classifies the answers; it
never sends anything. The engine (``_scheduler``) does all I/O and timing, so one
scheduler can drive jobs of several APIs at once. Every class here is vendor-neutral.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

import attrs

from kepler_async._exceptions import JobFailed, KeplerError, RateLimited
from kepler_async._policies import PollPolicy

__all__ = [
    "Accepted",
    "Dialect",
    "Done",
    "Failed",
    "Fetch",
    "Pending",
    "PollState",
    "Request",
    "SubmitState",
    "ThrottleScope",
]

R = TypeVar("R")


@attrs.frozen(kw_only=True)
class Request:
    """One HTTP request to make, as data. ``path`` is already percent-encoded."""

    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    #: True when sending it may start paid work (then it is never blindly re-sent).
    billed: bool = False
    #: The path's route, for traces and logs (``/v1/jobs/{job_id}``); None: the path
    #: itself, which then holds no id.
    template: str | None = None


@attrs.frozen
class Pending:
    """The job is still running: poll again later. ``subject`` names what it is about."""

    subject: str | None = None


@attrs.frozen
class Fetch:
    """The job is done; its result is read with one more request."""

    request: Request
    subject: str | None = None


@attrs.frozen
class Done(Generic[R]):
    """The job is done and this is its result.

    ``duration`` is how long the server says the job ran (seconds), when it says.
    """

    result: R
    duration: float | None = None


@attrs.frozen
class Failed:
    """The job ended in failure; ``error`` is what its handle raises."""

    error: KeplerError


@attrs.frozen
class Accepted:
    """A submit queued a job that must be polled."""

    job_id: str
    subject: str | None = None
    created_at: datetime | None = None


PollState = Pending | Fetch | Done[Any] | Failed
SubmitState = Accepted | Done[Any]
#: What a 429 stops: new submits only (a quota of paid work), or every request.
ThrottleScope = Literal["submits", "requests"]


class Dialect(Protocol[R]):
    """How to drive the jobs of one API. Implementations are pure and reusable."""

    @property
    def name(self) -> str:
        """Short vendor name used in messages and statistics ("kepler", "deepidv"...)."""
        ...

    @property
    def default_policy(self) -> PollPolicy:
        """The vendor's polling guidance, used when a call does not give its own."""
        ...

    def check_job_id(self, job_id: str) -> str:
        """The canonical id, or ``InvalidJobId`` if it does not look like this API's."""
        ...

    def poll_request(self, job_id: str) -> Request:
        """The request that reads the job's state (ids are percent-encoded in paths)."""
        ...

    def classify_poll(self, job_id: str, subject: str | None, body: object) -> PollState:
        """Turn a poll answer into pending / fetch / done / failed."""
        ...

    def classify_result(self, job_id: str, subject: str | None, body: object) -> Done[R]:
        """Turn the answer to a ``Fetch`` request into the result."""
        ...

    def result_missing(self, job_id: str, subject: str | None, error: KeplerError) -> KeplerError:
        """The error for a ``Fetch`` that failed for good (for example a 404)."""
        ...

    def poll_error(self, job_id: str, error: KeplerError) -> KeplerError:
        """What a failed poll means for this API (most return ``error`` unchanged).

        The engine then retries transient errors, pauses on 429, fails every job on
        ``AuthenticationError`` and fails this job on anything else.
        """
        ...

    # --- submitting -------------------------------------------------------------------

    def classify_submit(self, status: int, body: object) -> SubmitState:
        """Turn a 2xx answer to a submit into a job to poll, or the result itself."""
        ...

    def submission_key(self, request: Request) -> Hashable:
        """What identifies a submission: concurrent submits with equal keys share one
        request and one job (Kepler: the domain and ``force_fresh``; deepidv: the
        idempotency key; elsewhere the request body)."""
        ...

    def throttle_scope(self, error: RateLimited) -> ThrottleScope:
        """What a 429 stops: ``"submits"`` (a quota of paid work; polls of accepted
        jobs go on) or ``"requests"`` (a request rate: every request waits)."""
        ...

    # --- the journal ------------------------------------------------------------------

    def dump_result(self, result: R) -> object:
        """A result as JSON data, to keep in a journal."""
        ...

    def load_result(self, data: object) -> R:
        """A result from its journal JSON data (``ProtocolError`` if it does not fit)."""
        ...

    def failure(
        self, job_id: str, subject: str | None, failure_reason: str | None, message: str | None
    ) -> JobFailed:
        """The error of a job the journal says failed (the class the poll gave then)."""
        ...
