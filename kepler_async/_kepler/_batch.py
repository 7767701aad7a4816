"""``score_many``: many domains through one client, one outcome per input.

Kepler's verb of the engine's fan-out (``_engine._fanout``): every input ends as
exactly one ``ScoreOutcome``: ``scored``, ``failed`` (with a typed error,
``InvalidDomain`` included) or ``not_attempted`` (with the reason). Inputs that
normalise to the same domain share one job. A cold-run limit (a submit-scoped 429)
ends the inputs not yet submitted as ``not_attempted``, with the time the limit lifts,
unless ``wait_for_budget`` asks to wait for it; ``ColdBudgetExhausted`` stops the
batch. Closing the client ends the batch at once: unfinished inputs come out
``failed`` with ``ClientClosed`` (carrying the job id where there is one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import attrs

from kepler_async._engine._fanout import FanOut
from kepler_async._engine._fanout_plan import Outcome
from kepler_async._exceptions import ColdBudgetExhausted, KeplerError

from ._domains import normalize_domain
from ._job import ScoreJob
from ._models import Score

__all__ = ["KeplerFanOut", "ScoreBatch", "ScoreOutcome", "score_outcome"]

Status = Literal["scored", "failed", "not_attempted"]

#: ``submit(domain, force_fresh, deadline)``: one domain's job, submitted from a task
#: of the engine.
Submit = Callable[[str, bool, "float | None"], Awaitable[ScoreJob]]


@attrs.frozen(kw_only=True)
class ScoreOutcome:
    """What became of one input of ``score_many``."""

    index: int
    input: str
    domain: str | None
    status: Status
    score: Score | None = None
    error: KeplerError | None = None
    job_id: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "scored"


def score_outcome(outcome: Outcome[Score]) -> ScoreOutcome:
    """The engine's outcome in Kepler's words (``domain``, ``score``, ``scored``)."""
    raw = outcome.input
    return ScoreOutcome(
        index=outcome.index,
        input=raw if isinstance(raw, str) else repr(raw),
        domain=outcome.key,
        status="scored" if outcome.status == "done" else outcome.status,
        score=outcome.result,
        error=outcome.error,
        job_id=outcome.job_id,
        reason=outcome.reason,
    )


@attrs.frozen
class KeplerFanOut:
    """How ``score_many`` checks, identifies and submits one domain."""

    submit_domain: Submit
    force_fresh: bool
    limit_name: str = "a cold-run limit"

    def identify(self, raw: object) -> tuple[str, str]:
        domain = normalize_domain(raw)
        return domain, domain

    async def submit(self, key: str, item: str, deadline: float | None) -> ScoreJob:
        return await self.submit_domain(item, self.force_fresh, deadline)

    def stops(self, error: KeplerError) -> str | None:
        if isinstance(error, ColdBudgetExhausted):  # lifts next month: never waited for
            return f"the cold budget is exhausted ({error.message})"
        return None


class ScoreBatch(FanOut[ScoreOutcome]):
    """What ``AsyncKepler.score_many`` returns: an async iterator of ``ScoreOutcome``,
    one per input as each finishes, and an async context manager (``aclose()`` stops
    it, as ``contextlib.aclosing`` expects)."""

    def __aiter__(self) -> ScoreBatch:
        return self

    async def __aenter__(self) -> ScoreBatch:
        return self
