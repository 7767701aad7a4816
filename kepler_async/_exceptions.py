"""The one error tree of kepler_async.

Every failure the library raises is a ``KeplerError``::

    KeplerError
    ├── APIError (status, code, message, reason, request_id, method, path, retry_after)
    │   ├── BadRequest (400)
    │   ├── AuthenticationError (401)
    │   ├── PermissionDenied (403)
    │   │   ├── SandboxOnly
    │   │   └── JobForbidden
    │   ├── NotFound (404)
    │   │   └── JobNotFound
    │   ├── RateLimited (429)
    │   │   └── ColdBudgetExhausted
    │   └── ServerError (5xx)
    ├── TransportError (method, path, request_sent)
    │   └── SubmitUncertain
    ├── JobFailed (job_id, subject, failure_reason, retryable)
    │   ├── PipelineFailed
    │   ├── PipelineTimedOut
    │   ├── PipelineAborted
    │   └── NoScoreRecord
    ├── DeadlineExceeded (job_id, subject)
    │   └── SubmitHeldElsewhere (owner, journal_key)
    ├── PollingCancelled (job_id)
    ├── JobNotDone (job_id; also a RuntimeError)
    ├── ProtocolError (malformed body, missing field, foreign score_url)
    ├── ClientClosed (job_id)
    ├── ConfigurationError (also a ValueError)
    └── InvalidInput (also a ValueError)
        ├── InvalidDomain
        └── InvalidJobId

Unknown codes and failure reasons from the server map to the nearest parent and
keep the raw string. Messages never contain the API key.

``subject`` says what a job was about, in the API's own terms (the domain, for
Kepler); ``domain`` is the same value under Kepler's name.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequest",
    "ClientClosed",
    "ColdBudgetExhausted",
    "ConfigurationError",
    "DeadlineExceeded",
    "InvalidDomain",
    "InvalidInput",
    "InvalidJobId",
    "JobFailed",
    "JobForbidden",
    "JobNotDone",
    "JobNotFound",
    "KeplerError",
    "NoScoreRecord",
    "NotFound",
    "PermissionDenied",
    "PipelineAborted",
    "PipelineFailed",
    "PipelineTimedOut",
    "PollingCancelled",
    "ProtocolError",
    "RateLimited",
    "SandboxOnly",
    "ServerError",
    "SubmitHeldElsewhere",
    "SubmitInDoubt",
    "SubmitUncertain",
    "TransportError",
]


class KeplerError(Exception):
    """Root of every exception kepler_async raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: The human-readable text (``str(error)`` may add context around it).
        self.message = message


# --- answers from the API -------------------------------------------------------------


class APIError(KeplerError):
    """The API answered with a non-success status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.reason = reason
        self.request_id = request_id
        self.method = method
        self.path = path
        #: Seconds to wait before trying again, from ``Retry-After`` (None if absent).
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.method} {self.path} -> " if self.method else ""
        code = f" {self.code!r}" if self.code and self.code != self.message else ""
        reason = f" (reason: {self.reason})" if self.reason else ""
        return f"{where}{self.status}{code}: {self.message}{reason}"


class BadRequest(APIError):
    """400: the API rejected the request (missing domain, bad cursor, bad window...)."""


class AuthenticationError(APIError):
    """401: the API key is missing, invalid or revoked."""


class PermissionDenied(APIError):
    """403: the key may not do this."""


class SandboxOnly(PermissionDenied):
    """403 ``free_tier_sandbox_only``: a live key on the free plan asked for a real domain."""


class JobForbidden(PermissionDenied):
    """403 ``forbidden`` on a job: the job belongs to another key or account."""


class NotFound(APIError):
    """404: no such score, history, company or job."""


class JobNotFound(NotFound):
    """404 on a job: the id is unknown, or the job expired (30 days after creation)."""


class RateLimited(APIError):
    """429: a cold-spend breaker tripped. Nothing was started and nothing billed."""

    def __str__(self) -> str:
        text = super().__str__()
        if self.retry_after is not None:
            text += f"; retry after {self.retry_after:g}s"
        return text


class ColdBudgetExhausted(RateLimited):
    """429 ``cold_budget_exhausted``: the monthly cold-run budget is used up."""


class ServerError(APIError):
    """5xx: the API failed. ``code`` tells an engine that never started from other faults."""


# --- the connection -------------------------------------------------------------------


class TransportError(KeplerError):
    """The request failed on the way: connect error, timeout, dropped connection."""

    def __init__(self, message: str, *, method: str, path: str, request_sent: bool) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        #: False only when the request surely never reached the server.
        self.request_sent = request_sent

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.message}"


class SubmitUncertain(TransportError):
    """A billed submit may have reached the server but no answer came back.

    A cold run may have started (and been billed). The request is not sent again:
    look the domain up later instead of paying twice.
    """


# --- jobs -----------------------------------------------------------------------------


class _AboutAJob(KeplerError):
    """An error about one job: its id and its subject (what it was about)."""

    subject: str | None

    @property
    def domain(self) -> str | None:
        """The job's subject under Kepler's name: the domain being scored."""
        return self.subject


class SubmitInDoubt(SubmitUncertain):
    """A journal says an earlier submit of this input may have started a job that this
    API gives no way to find (its answer never came: a crash, a lost connection).
    Sending it again may pay twice; pass ``resubmit_in_doubt=True`` to the client to
    do so anyway."""

    def __init__(
        self, message: str, *, method: str, path: str, journal_key: str, submitted_at: float
    ) -> None:
        super().__init__(message, method=method, path=path, request_sent=True)
        self.journal_key = journal_key
        self.submitted_at = submitted_at


class JobFailed(_AboutAJob):
    """A job ended ``failed``. ``failure_reason`` keeps the server's raw string."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        subject: str | None,
        failure_reason: str | None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.subject = subject
        self.failure_reason = failure_reason
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        about = f" ({self.subject})" if self.subject else ""
        reason, message = self.failure_reason, self.message
        said = not reason or message.startswith(reason)  # no reason, or the message has it
        return f"job {self.job_id}{about} failed: {message if said else f'{reason}: {message}'}"


class PipelineFailed(JobFailed):
    """``sfn_failed``: the scoring pipeline raised an exception."""


class PipelineTimedOut(JobFailed):
    """``sfn_timed_out``: the pipeline hit its task timeout; usually transient."""

    retryable = True


class PipelineAborted(JobFailed):
    """``sfn_aborted``: an operator aborted the run."""


class NoScoreRecord(JobFailed):
    """``scoring_completed_no_record``: the run finished but wrote no score (thin data)."""


class DeadlineExceeded(_AboutAJob):
    """The local deadline passed before the job finished. The job runs on server-side."""

    def __init__(self, message: str, *, job_id: str | None, subject: str | None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.subject = subject


class SubmitHeldElsewhere(DeadlineExceeded):
    """The caller's deadline came while another process (``owner``, ``host/pid/nonce``)
    held the journal's claim to submit this input. Nothing was sent here; that process
    goes on and writes the outcome to the journal, where a later call finds it."""

    def __init__(
        self, message: str, *, subject: str | None, owner: str | None, journal_key: str
    ) -> None:
        super().__init__(message, job_id=None, subject=subject)
        self.owner = owner
        self.journal_key = journal_key


# --- everything else ------------------------------------------------------------------


class ProtocolError(KeplerError):
    """The API answered with something we cannot read: not JSON, wrong shape, foreign URL."""


class PollingCancelled(KeplerError):
    """``cancel()`` stopped local polling of a job; the job goes on server-side."""

    def __init__(self, message: str, *, job_id: str | None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotDone(KeplerError, RuntimeError):
    """``result_nowait()`` on a handle whose job is still pending."""

    def __init__(self, message: str, *, job_id: str | None) -> None:
        super().__init__(message)
        self.job_id = job_id


class ClientClosed(KeplerError):
    """The client was closed (before, or while waiting for, this call or job)."""

    def __init__(self, message: str = "the client is closed", *, job_id: str | None = None):
        super().__init__(message)
        self.job_id = job_id


class ConfigurationError(KeplerError, ValueError):
    """The client was built with a bad or missing setting (API key, base URL, timeout)."""


class InvalidInput(KeplerError, ValueError):
    """An argument was rejected before any request was sent."""

    def __init__(self, message: str, *, value: str) -> None:
        super().__init__(message)
        #: The rejected value, shortened to 100 characters.
        self.value = value


class InvalidDomain(InvalidInput):
    """A domain is empty, too long, or not a hostname."""


class InvalidJobId(InvalidInput):
    """A job id does not look like the API's ids."""
