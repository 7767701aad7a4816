"""``ScoreJob``: the engine's ``JobHandle`` for a Kepler score, plus ``domain``."""

from __future__ import annotations

from kepler_async._engine._handle import JobHandle

from ._models import Score

__all__ = ["ScoreJob"]


class ScoreJob(JobHandle[Score]):
    """A Kepler score on its way: ``await job`` gives the ``Score``."""

    __slots__ = ()

    @property
    def domain(self) -> str | None:
        """The domain being scored."""
        return self.subject
