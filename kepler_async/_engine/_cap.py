"""A fan-out's cap on billed runs (``max_cold_runs``), exact however many submits run
at once: a submit takes a place before it is sent and gives it back if its answer was
not a billed run (a cached result, a refusal that started nothing)."""

from __future__ import annotations

import anyio

__all__ = ["ColdCap"]


class ColdCap:
    """At most ``limit`` billed runs (None: no cap)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        #: Billed runs the batch's submits started (a submit in doubt counts).
        self.billed = 0
        self._in_flight = 0  # submits sent under the cap and not answered yet
        self._moved: anyio.Event | None = None

    @property
    def reached(self) -> str:
        return f"the cap of {self.limit} billed runs (max_cold_runs) was reached"

    async def take(self) -> bool:
        """A place for one submit, waiting while submits in flight may still turn out
        not billed; False once the cap is spent."""
        if self.limit is None:
            return True
        while self.billed + self._in_flight >= self.limit:
            if not self._in_flight:
                return False
            self._moved = self._moved or anyio.Event()
            await self._moved.wait()
        self._in_flight += 1
        return True

    def answered(self, *, billed: bool) -> None:
        """A submit was answered: a billed run, or its place freed for another."""
        self.billed += billed
        if self.limit is None:
            return
        self._in_flight -= 1
        moved, self._moved = self._moved, None
        if moved is not None:
            moved.set()
