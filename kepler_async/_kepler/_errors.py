"""Kepler's error responses mapped onto the error tree, through the engine's shared
mapper (a pure function, table-tested)."""

from __future__ import annotations

from collections.abc import Mapping

from kepler_async import _exceptions as exc
from kepler_async._engine._kit import make_error_mapper, retype

__all__ = ["kepler_error", "kepler_submit_never_started"]

#: The 500 code that means the pipeline never started: nothing was billed.
ENGINE_UNAVAILABLE = "scoring engine unavailable"


def _text(body: object, key: str) -> str | None:
    if isinstance(body, Mapping):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _read(body: object) -> tuple[str | None, str | None]:
    """Codes branch on ``error`` (stable), never on ``message``."""
    return _text(body, "error"), _text(body, "message")


def _special(status: int, body: object, error: exc.APIError) -> exc.APIError:
    """The classes Kepler's codes tell apart beyond the status."""
    if status == 429 and error.code == "cold_budget_exhausted":
        return retype(error, exc.ColdBudgetExhausted)
    if status == 403 and error.code == "free_tier_sandbox_only":
        return retype(error, exc.SandboxOnly)
    return error


#: The exception for a non-2xx Kepler response: ``kepler_error(status, body, headers,
#: method=..., path=...)``, ``body`` the decoded JSON (None when it was not JSON),
#: ``headers`` with lower-case names.
kepler_error = make_error_mapper(
    "kepler",
    job_path="/v1/jobs/",
    read=_read,
    reason=lambda body: _text(body, "reason"),
    special=_special,
    prefix=False,
)


def kepler_submit_never_started(error: exc.APIError) -> bool:
    """True when a failed billed POST surely started nothing, so it may be sent again."""
    return error.status == 500 and error.code == ENGINE_UNAVAILABLE
