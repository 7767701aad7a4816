"""Value types for every Kepler response body.

All are frozen attrs classes, decoded at the HTTP edge by the private converter in
``_serde``. Enum-typed fields are *open*: a value the server sends that we do not know
(the docs disagree on ``cache_status`` and on tier names) is kept as its raw string
instead of failing, so the annotation is ``SomeEnum | str``. Unknown fields are ignored.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from kepler_async._serde import OpenEnum as _OpenEnum

__all__ = [
    "BucketComparison",
    "Buckets",
    "CacheStatus",
    "Cohort",
    "CohortMember",
    "CohortStats",
    "CohortTarget",
    "CompanyContext",
    "Confidence",
    "ConfidenceBand",
    "Distribution",
    "ErrorBody",
    "FailureReason",
    "HistogramBin",
    "HistoryPage",
    "HistoryRecord",
    "JobAccepted",
    "JobStatus",
    "KIRating",
    "KeplerJob",
    "Mover",
    "Movers",
    "MoversWindow",
    "ProfileSplit",
    "Rank",
    "ResultRef",
    "Score",
    "Signal",
    "SignalsManifest",
    "Tier",
    "TierLimits",
    "Universe",
    "Usage",
    "XKepler",
]


class KIRating(_OpenEnum):
    """Letter grade, from ``KI-5`` (early stage) to ``KI-1+`` (elite)."""

    KI_1_PLUS = "KI-1+"
    KI_1 = "KI-1"
    KI_2_PLUS = "KI-2+"
    KI_2 = "KI-2"
    KI_3 = "KI-3"
    KI_4 = "KI-4"
    KI_5 = "KI-5"


class Tier(_OpenEnum):
    """Plan names as the OpenAPI file lists them (the tiers page uses newer names)."""

    FREE = "free"
    STARTER = "starter"
    GROWTH = "growth"
    SCALE = "scale"
    ENTERPRISE = "enterprise"
    SANDBOX = "sandbox"
    STANDARD = "standard"


class CacheStatus(_OpenEnum):
    """``x_kepler.cache_status``; the docs name ``cached``, ``cold`` and ``fresh``."""

    CACHED = "cached"
    COLD = "cold"
    FRESH = "fresh"


class JobStatus(_OpenEnum):
    """Where a cold job is: ``pending`` until it settles ``complete`` or ``failed``."""

    PENDING = "pending"
    COMPLETE = "complete"
    FAILED = "failed"


class FailureReason(_OpenEnum):
    """Why a cold job failed; the strings are a stable contract of the API."""

    SFN_FAILED = "sfn_failed"
    SFN_TIMED_OUT = "sfn_timed_out"
    SFN_ABORTED = "sfn_aborted"
    SCORING_COMPLETED_NO_RECORD = "scoring_completed_no_record"


class ConfidenceBand(_OpenEnum):
    """How much of a score rests on real data."""

    HIGH = "high"
    MEDIUM = "medium"
    DIRECTIONAL = "directional"


class MoversWindow(_OpenEnum):
    """The look-back windows ``/v1/movers`` accepts."""

    DAYS_7 = "7d"
    DAYS_30 = "30d"
    DAYS_90 = "90d"


# --- scores ---------------------------------------------------------------------------


@attrs.frozen
class Buckets:
    """The four bucket scores, each 0-100."""

    team_structure: float
    market_position: float
    momentum_tailwinds: float
    financial_health: float


@attrs.frozen
class Rank:
    """Position against the whole scored universe."""

    percentile: int
    cohort_size: int


@attrs.frozen(kw_only=True)
class XKepler:
    """Caller-facing metadata on a score."""

    tier: Tier | str | None = None
    cache_status: CacheStatus | str | None = None
    freshness_window_hours: float | None = None


@attrs.frozen(kw_only=True)
class Score:
    """A company score, from ``POST /v1/score`` (200) or ``GET /v1/score/{domain}``."""

    domain: str
    scored_at: datetime
    ki_rating: KIRating | str
    composite_score: float
    buckets: Buckets
    scale_premium: float | None = None
    rank: Rank | None = None
    x_kepler: XKepler | None = None
    mode: str | None = None

    @property
    def sandbox(self) -> bool:
        """True when the answer came from the sandbox (a ``ki_test_`` key)."""
        return self.mode == "sandbox"


# --- jobs -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobAccepted:
    """The 202 answer to ``POST /v1/score``: a billed cold run was queued."""

    job_id: str
    status: JobStatus | str
    domain: str
    poll_url: str


@attrs.frozen
class ResultRef:
    domain: str
    scored_at: datetime


@attrs.frozen(kw_only=True)
class KeplerJob:
    """A cold job as ``GET /v1/jobs/{job_id}`` reports it (its *job body*; the other
    APIs' are ``DeepidvJob``, ``MidLyrJob`` and ``EnrichJob``). Called ``Job`` up to
    0.1.0; that name still works for a release, with a ``DeprecationWarning``."""

    job_id: str
    status: JobStatus | str
    domain: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    result_ref: ResultRef | None = None
    score_url: str | None = None
    failure_reason: FailureReason | str | None = None
    mode: str | None = None


# --- history --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class HistoryRecord:
    scored_at: datetime
    composite_score: float
    ki_rating: KIRating | str
    scale_premium: float | None = None
    momentum_index: float | None = None
    buckets: Buckets | None = None
    data_completeness_pct: int | None = None


@attrs.frozen(kw_only=True)
class HistoryPage:
    """One page of past runs, newest first; ``next_cursor`` is None on the last page."""

    domain: str
    records: tuple[HistoryRecord, ...]
    next_cursor: str | None = None
    mode: str | None = None


# --- company analytics ----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CompanyContext:
    sector: str | None = None
    geo_scope: str | None = None


@attrs.frozen(kw_only=True)
class CohortTarget:
    domain: str
    company_name: str | None = None
    composite_score: float | None = None
    ki_rating: KIRating | str | None = None
    business_profile: str | None = None
    context: CompanyContext | None = None


@attrs.frozen(kw_only=True)
class CohortStats:
    count: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    stddev: float | None = None
    min: float | None = None
    max: float | None = None
    rank: int | None = None
    percentile: int | None = None


@attrs.frozen(kw_only=True)
class BucketComparison:
    target: float | None = None
    cohort: float | None = None
    delta: float | None = None


@attrs.frozen(kw_only=True)
class CohortMember:
    domain: str
    company_name: str | None = None
    composite_score: float | None = None
    ki_rating: KIRating | str | None = None
    business_profile: str | None = None


@attrs.frozen(kw_only=True)
class Cohort:
    """Where a company ranks against its sector, geography and profile peers."""

    target: CohortTarget
    cohort: CohortStats
    bucket_means: dict[str, BucketComparison] = attrs.field(factory=dict)
    members: tuple[CohortMember, ...] = ()
    mode: str | None = None


@attrs.frozen(kw_only=True)
class Confidence:
    """How much of a score rests on real data rather than neutral fallbacks."""

    domain: str
    band: ConfidenceBand | str
    completeness_pct: int
    scored_at: datetime | None = None
    failed_fetchers: tuple[str, ...] = ()
    data_warnings: tuple[str, ...] = ()
    missing_signals: tuple[str, ...] = ()
    mode: str | None = None


# --- universe -------------------------------------------------------------------------


@attrs.frozen
class HistogramBin:
    range: str
    count: int


@attrs.frozen(kw_only=True)
class ProfileSplit:
    growth: int = 0
    established: int = 0
    unclassified: int = 0


@attrs.frozen(kw_only=True)
class Universe:
    count: int
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    stddev: float | None = None
    min: float | None = None
    max: float | None = None
    composite_hist: tuple[HistogramBin, ...] = ()
    scale_premium_hist: tuple[HistogramBin, ...] = ()
    rating_dist: dict[str, int] = attrs.field(factory=dict)
    profile_split: ProfileSplit | None = None


@attrs.frozen(kw_only=True)
class Distribution:
    """Histograms over every company scored on the current pipeline version."""

    pipeline_version: str
    universe: Universe
    mode: str | None = None


@attrs.frozen(kw_only=True)
class Mover:
    domain: str
    composite_now: float
    composite_then: float
    delta: float
    company_name: str | None = None
    ki_rating_now: KIRating | str | None = None
    ki_rating_then: KIRating | str | None = None


@attrs.frozen(kw_only=True)
class Movers:
    """Top gainers and decliners over a window, sorted by the size of the change."""

    window: MoversWindow | str
    window_start: datetime | None = None
    window_end: datetime | None = None
    gainers: tuple[Mover, ...] = ()
    decliners: tuple[Mover, ...] = ()
    mode: str | None = None


# --- meta -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Signal:
    key: str
    label: str | None = None
    bucket: str | None = None
    category: str | None = None
    weight: float | None = None
    actionability: str | None = None
    description: str | None = None


@attrs.frozen(kw_only=True)
class SignalsManifest:
    """The engine's signal manifest; ``version`` changes whenever a signal does."""

    version: str
    signals: tuple[Signal, ...]


@attrs.frozen(kw_only=True)
class TierLimits:
    """Monthly allowances; None means unmetered."""

    cached_calls_included: int | None = None
    cold_calls_included: int | None = None
    freshness_window_hours: float | None = None


@attrs.frozen(kw_only=True)
class Usage:
    """This month's counters for the caller; reading them costs nothing."""

    period: str
    tier: Tier | str
    total_calls: int
    cold_calls: int
    cached_calls: int
    user_id: str | None = None
    last_reset: datetime | None = None
    next_reset: datetime | None = None
    tier_limits: TierLimits | None = None
    mode: str | None = None


@attrs.frozen(kw_only=True)
class ErrorBody:
    """The error envelope: branch on ``error``, never on ``message``."""

    error: str | None = None
    message: str | None = None
    reason: str | None = None
