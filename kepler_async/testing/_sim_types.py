"""Value types and small helpers shared by the Kepler simulator's modules."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from ._sim_data import Plan, rating_for

__all__ = [
    "JSON",
    "SimCounters",
    "SimJob",
    "SimKey",
    "SimRecord",
    "SimResponse",
    "error",
    "histogram",
    "iso",
    "mover",
    "next_month",
    "path_domain",
    "percentile_of",
]

JSON = dict[str, object]


@attrs.frozen
class SimResponse:
    status: int
    #: The decoded JSON body (what a test reads; any JSON value).
    body: Any
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.define
class SimKey:
    key: str
    account: str
    plan: Plan


@attrs.define
class SimRecord:
    """One stored scoring run. ``at`` is simulator seconds (negative: before start)."""

    domain: str
    at: float
    run_index: int


@attrs.define
class SimJob:
    """A cold job as the server keeps it; ``outcome`` is decided at creation."""

    job_id: str
    domain: str
    key: str
    account: str
    created: float
    finishes: float
    failure_reason: str | None
    status: str = "pending"


@attrs.define
class SimCounters:
    """What tests assert on. Read them any time; the simulator only adds."""

    cold_runs_billed: Counter[str] = attrs.field(factory=Counter)
    polls_served: int = 0
    cached_served: int = 0
    requests: Counter[str] = attrs.field(factory=Counter)
    rejected_429: Counter[str] = attrs.field(factory=Counter)

    @property
    def total_cold_runs(self) -> int:
        return sum(self.cold_runs_billed.values())


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def error(status: int, error: str, message: str | None = None, **extra: object) -> SimResponse:
    body: JSON = {"error": error}
    if message:
        body["message"] = message
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    body.update(extra)
    return SimResponse(status, body, headers)


def path_domain(raw: str) -> str:
    """The server's own light normalisation of a path or body domain."""
    text = raw.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = text.split("/", 1)[0].rstrip(".")
    return text[4:] if text.startswith("www.") else text


def mover(domain: str, now: float, then: float) -> JSON:
    return {
        "domain": domain,
        "company_name": domain.split(".")[0].capitalize(),
        "composite_now": now,
        "composite_then": then,
        "delta": round(now - then, 1),
        "ki_rating_now": rating_for(now),
        "ki_rating_then": rating_for(then),
    }


def histogram(values: list[float], *, width: int, bins: int) -> list[JSON]:
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value // width)))] += 1
    return [{"range": f"{i * width}-{(i + 1) * width}", "count": c} for i, c in enumerate(counts)]


def percentile_of(composite: float) -> int:
    """Percentile of ``composite`` in a normal universe (mean 50, sd 15)."""
    return max(0, min(100, round(50 * (1 + math.erf((composite - 50) / (15 * math.sqrt(2)))))))


def next_month(now: datetime) -> datetime:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)
