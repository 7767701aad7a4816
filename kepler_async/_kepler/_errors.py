"""Kepler's error responses mapped onto the error tree (a pure function, table-tested)."""

from __future__ import annotations

from collections.abc import Mapping

from kepler_async import _exceptions as exc
from kepler_async._policies import parse_retry_after

__all__ = ["kepler_error", "kepler_submit_never_started"]

#: The 500 code that means the pipeline never started: nothing was billed.
ENGINE_UNAVAILABLE = "scoring engine unavailable"

_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "x-amz-apigw-id")


def _text(body: object, key: str) -> str | None:
    if isinstance(body, Mapping):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def kepler_error(
    status: int, body: object, headers: Mapping[str, str], *, method: str, path: str
) -> exc.APIError:
    """The exception for a non-2xx Kepler response.

    ``body`` is the decoded JSON (or None when the body was not JSON); ``headers`` use
    lower-case names. Codes branch on ``error`` (stable), never on ``message``.
    """
    code = _text(body, "error")
    message = _text(body, "message") or code or f"HTTP {status}"
    reason = _text(body, "reason")
    request_id = next((headers[h] for h in _REQUEST_ID_HEADERS if h in headers), None)
    retry_after = parse_retry_after(headers.get("retry-after"))
    is_job = path.startswith("/v1/jobs/")

    if status == 429:
        cls = exc.ColdBudgetExhausted if code == "cold_budget_exhausted" else exc.RateLimited
        return cls(
            message,
            status=status,
            code=code,
            reason=reason,
            request_id=request_id,
            method=method,
            path=path,
            retry_after=retry_after,
        )
    cls_for_status: type[exc.APIError]
    if status == 400:
        cls_for_status = exc.BadRequest
    elif status == 401:
        cls_for_status = exc.AuthenticationError
    elif status == 403:
        if code == "free_tier_sandbox_only":
            cls_for_status = exc.SandboxOnly
        elif is_job:
            cls_for_status = exc.JobForbidden
        else:
            cls_for_status = exc.PermissionDenied
    elif status == 404:
        cls_for_status = exc.JobNotFound if is_job else exc.NotFound
    elif status >= 500:
        cls_for_status = exc.ServerError
    else:
        cls_for_status = exc.APIError
    return cls_for_status(
        message,
        status=status,
        code=code,
        reason=reason,
        request_id=request_id,
        method=method,
        path=path,
        retry_after=retry_after,
    )


def kepler_submit_never_started(error: exc.APIError) -> bool:
    """True when a failed billed POST surely started nothing, so it may be sent again."""
    return error.status == 500 and error.code == ENGINE_UNAVAILABLE
