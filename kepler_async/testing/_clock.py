"""A clock tests move by hand."""

from __future__ import annotations

import math

from ._virtual import jumped

__all__ = ["ManualClock"]


class ManualClock:
    """A callable clock for ``KeplerSimulator(clock=...)`` that moves only when told:
    by ``advance()``, and by virtual time (``virtual_time()``, which the client fixtures
    use) when it jumps ahead, so a simulated API ages as a client waits on it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._jumped_before = jumped()

    def __call__(self) -> float:
        return self._now + (jumped() - self._jumped_before)

    def advance(self, seconds: float) -> None:
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"a clock only moves forward by a finite amount, got {seconds!r}")
        self._now += seconds

    def __repr__(self) -> str:
        return f"<ManualClock at {self():g}s>"
