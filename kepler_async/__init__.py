"""kepler_async: an asyncio-native client for the Kepler Insights scoring API."""

from __future__ import annotations

import typing as _typing

from kepler_async._engine._engine import JobEngine
from kepler_async._engine._fanout import FanOut
from kepler_async._engine._fanout_plan import Outcome
from kepler_async._engine._handle import JobHandle
from kepler_async._engine._progress import BatchProgress, JobEvent
from kepler_async._engine._stats import EngineStatistics
from kepler_async._engine.stores import (
    JobStore,
    JournalEntry,
    JournalError,
    JournalFull,
    JournalLocked,
    JournalUnavailable,
    PostgresJobStore,
    SQLiteJobStore,
)
from kepler_async._kepler._batch import ScoreBatch, ScoreOutcome
from kepler_async._kepler._client import AsyncKepler
from kepler_async._kepler._dialect import KEPLER_POLICY
from kepler_async._kepler._domains import normalize_domain
from kepler_async._kepler._job import ScoreJob
from kepler_async._kepler._models import (
    BucketComparison,
    Buckets,
    CacheStatus,
    Cohort,
    CohortMember,
    CohortStats,
    CohortTarget,
    CompanyContext,
    Confidence,
    ConfidenceBand,
    Distribution,
    FailureReason,
    HistogramBin,
    HistoryPage,
    HistoryRecord,
    JobAccepted,
    JobStatus,
    KeplerJob,
    KIRating,
    Mover,
    Movers,
    MoversWindow,
    ProfileSplit,
    Rank,
    ResultRef,
    Score,
    Signal,
    SignalsManifest,
    Tier,
    TierLimits,
    Universe,
    Usage,
    XKepler,
)
from kepler_async._kepler._plan import BatchPlan
from kepler_async._logging import configure_from_env as _configure_logging

from ._exceptions import (
    APIError,
    AuthenticationError,
    BadRequest,
    ClientClosed,
    ColdBudgetExhausted,
    ConfigurationError,
    DeadlineExceeded,
    InvalidDomain,
    InvalidInput,
    InvalidJobId,
    JobFailed,
    JobForbidden,
    JobNotDone,
    JobNotFound,
    KeplerError,
    NoScoreRecord,
    NotFound,
    PermissionDenied,
    PipelineAborted,
    PipelineFailed,
    PipelineTimedOut,
    PollingCancelled,
    ProtocolError,
    RateLimited,
    SandboxOnly,
    ServerError,
    SubmitHeldElsewhere,
    SubmitInDoubt,
    SubmitUncertain,
    TransportError,
)
from ._policies import PollPolicy, RetryPolicy
from ._version import __version__

__all__ = [
    "KEPLER_POLICY",
    "APIError",
    "AsyncKepler",
    "AuthenticationError",
    "BadRequest",
    "BatchPlan",
    "BatchProgress",
    "BucketComparison",
    "Buckets",
    "CacheStatus",
    "ClientClosed",
    "Cohort",
    "CohortMember",
    "CohortStats",
    "CohortTarget",
    "ColdBudgetExhausted",
    "CompanyContext",
    "Confidence",
    "ConfidenceBand",
    "ConfigurationError",
    "DeadlineExceeded",
    "Distribution",
    "EngineStatistics",
    "FailureReason",
    "FanOut",
    "HistogramBin",
    "HistoryPage",
    "HistoryRecord",
    "InvalidDomain",
    "InvalidInput",
    "InvalidJobId",
    "JobAccepted",
    "JobEngine",
    "JobEvent",
    "JobFailed",
    "JobForbidden",
    "JobHandle",
    "JobNotDone",
    "JobNotFound",
    "JobStatus",
    "JobStore",
    "JournalEntry",
    "JournalError",
    "JournalFull",
    "JournalLocked",
    "JournalUnavailable",
    "KIRating",
    "KeplerError",
    "KeplerJob",
    "Mover",
    "Movers",
    "MoversWindow",
    "NoScoreRecord",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "PipelineAborted",
    "PipelineFailed",
    "PipelineTimedOut",
    "PollPolicy",
    "PollingCancelled",
    "PostgresJobStore",
    "ProfileSplit",
    "ProtocolError",
    "Rank",
    "RateLimited",
    "ResultRef",
    "RetryPolicy",
    "SQLiteJobStore",
    "SandboxOnly",
    "Score",
    "ScoreBatch",
    "ScoreJob",
    "ScoreOutcome",
    "ServerError",
    "Signal",
    "SignalsManifest",
    "SubmitHeldElsewhere",
    "SubmitInDoubt",
    "SubmitUncertain",
    "Tier",
    "TierLimits",
    "TransportError",
    "Universe",
    "Usage",
    "XKepler",
    "__version__",
    "normalize_domain",
]

#: Public names renamed, kept for a release under their old name: old -> new.
_RENAMED = {"Job": "KeplerJob"}


if not _typing.TYPE_CHECKING:  # type checkers see the new names only

    def __getattr__(name: str) -> object:
        """An old name still works for a release, with a ``DeprecationWarning``."""
        if name in _RENAMED:
            import warnings

            new = _RENAMED[name]
            warnings.warn(
                f"kepler_async.{name} is deprecated; use kepler_async.{new} (the same class)",
                DeprecationWarning,
                stacklevel=2,
            )
            return globals()[new]
        raise AttributeError(f"module 'kepler_async' has no attribute {name!r}")


_configure_logging()
