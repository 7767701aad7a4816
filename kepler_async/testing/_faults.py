"""Faults a simulator can inject: error statuses, malformed bodies, slow answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
import attrs
from starlette.responses import JSONResponse, Response

__all__ = ["Fault", "FaultKind", "FaultPlan", "FaultsMixin", "answer_with_faults"]

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


class FaultsMixin:
    """``add_fault`` for every simulator: one typed way to plan faults."""

    faults: FaultPlan

    def add_fault(
        self,
        kind: FaultKind,
        *,
        path: str = "/",
        method: str | None = None,
        times: int = 1,
        status: int = 500,
        code: str = "internal error",
        delay: float = 0.0,
        retry_after: int | None = None,
        after_processing: bool = False,
    ) -> Fault:
        """Make the next ``times`` matching requests fail (see ``Fault``)."""
        if kind not in ("status", "malformed", "delay"):
            raise ValueError(f"kind must be 'status', 'malformed' or 'delay', got {kind!r}")
        if retry_after is not None and (isinstance(retry_after, bool) or retry_after < 0):
            raise ValueError(f"retry_after must be a whole number of seconds, got {retry_after!r}")
        return self.faults.add(
            Fault(
                kind=kind,
                path=path,
                method=method,
                times=times,
                status=status,
                code=code,
                delay=delay,
                retry_after=retry_after,
                after_processing=after_processing,
            )
        )


def fault_response(fault: Fault) -> Response:
    """What a fault answers instead of the simulator."""
    if fault.kind == "malformed":
        return Response("<html><body>upstream hiccup", status_code=200, media_type="text/html")
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    return JSONResponse({"error": fault.code}, status_code=fault.status, headers=headers)


async def answer_with_faults(
    plan: FaultPlan, method: str, path: str, answer: Callable[[], Awaitable[Response]]
) -> Response:
    """``answer()``, unless a fault of ``plan`` fires on this request: before the work
    (nothing done), or with ``after_processing`` after it (done, answer lost)."""
    fault = plan.take(method, path)
    if fault is None:
        return await answer()
    if not fault.after_processing:
        if fault.kind != "delay":
            return fault_response(fault)
        await anyio.sleep(fault.delay)
        return await answer()
    response = await answer()
    if fault.kind != "delay":
        return fault_response(fault)
    await anyio.sleep(fault.delay)
    return response
