"""A clock tests move by hand."""

from __future__ import annotations

import math

__all__ = ["ManualClock"]


class ManualClock:
    """A callable clock for ``KeplerSimulator(clock=...)`` that moves only when told."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"a clock only moves forward by a finite amount, got {seconds!r}")
        self._now += seconds

    def __repr__(self) -> str:
        return f"<ManualClock at {self._now:g}s>"
