"""Faults a simulator can inject: error statuses, malformed bodies, slow answers."""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["Fault", "FaultKind", "FaultPlan"]

FaultKind = Literal["status", "malformed", "delay"]


@attrs.define(kw_only=True)
class Fault:
    """One fault rule. It fires on the next ``times`` requests it matches.

    - ``status``: answer ``status`` with ``{"error": code}`` (and ``Retry-After`` if set).
    - ``malformed``: answer 200 with a body that is not JSON.
    - ``delay``: wait ``delay`` real seconds before answering (to provoke timeouts).

    With ``after_processing`` the simulator first does the work (a cold run is
    started and billed), then the fault replaces the answer: the case where a request
    reached the server but its answer was lost.
    """

    kind: FaultKind
    path: str = "/"
    method: str | None = None
    times: int = 1
    status: int = 500
    code: str = "internal error"
    delay: float = 0.0
    retry_after: int | None = None
    after_processing: bool = False
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.fired < self.times
            and path.startswith(self.path)
            and (self.method is None or self.method.upper() == method.upper())
        )


@attrs.define
class FaultPlan:
    """The ordered fault rules of one simulator; the first match fires."""

    rules: list[Fault] = attrs.field(factory=list)

    def add(self, fault: Fault) -> Fault:
        self.rules.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        for fault in self.rules:
            if fault.matches(method, path):
                fault.fired += 1
                return fault
        return None

    def clear(self) -> None:
        self.rules.clear()
