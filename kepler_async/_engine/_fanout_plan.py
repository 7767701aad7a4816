"""What a fan-out is made of: the ``Outcome`` of one input, and the plan each API gives
(``FanOutPlan``: how an input is checked, identified and submitted; ``RequestFanOut``
for the APIs whose inputs each become one request). ``_fanout`` runs them."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import Any, Generic, Literal, Protocol, TypeVar

import attrs

from kepler_async._exceptions import ConfigurationError, KeplerError

from ._dialect import Request
from ._handle import JobHandle

__all__ = ["FanOutPlan", "Outcome", "RequestFanOut", "Status", "check_fan_out"]

R = TypeVar("R")
I = TypeVar("I")  # noqa: E741 - an input, as the plan checked it

Status = Literal["done", "failed", "not_attempted"]


@attrs.frozen(kw_only=True)
class Outcome(Generic[R]):
    """What became of one input of a fan-out (``screen_many``, ``enrich_many``...)."""

    #: The input's position in the caller's iterable.
    index: int
    #: The input as given.
    input: object
    #: What identifies it (inputs with one key share one job); None if it was invalid.
    key: str | None
    status: Status
    result: R | None = None
    error: KeplerError | None = None
    job_id: str | None = None
    #: Why it was ``not_attempted``.
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"


class FanOutPlan(Protocol[I, R]):
    """What one API's fan-out says: how inputs are checked and identified, how one is
    submitted, which errors end the budget."""

    @property
    def limit_name(self) -> str:
        """What a submit-scoped 429 is called in reasons ("a cold-run limit")."""
        ...

    def identify(self, raw: object) -> tuple[str, I]:
        """The key of an input and the input as checked; a ``KeplerError`` (such as
        ``InvalidInput``) for an input that cannot be submitted."""
        ...

    async def submit(self, key: str, item: I, deadline: float | None) -> JobHandle[R]:
        """Submit one checked input under its key (this runs in a task of the engine)."""
        ...

    def stops(self, error: KeplerError) -> str | None:
        """Why ``error`` stops the batch (a budget that is gone), or None."""
        ...


#: ``send(request, *, subject, deadline, journal_key, inline)``: a client's ``_submit``.
Send = Callable[..., Awaitable[JobHandle[Any]]]


@attrs.frozen
class RequestFanOut:
    """The plan of an API whose inputs each become one request, identified (and, with a
    journal, journaled) by the key ``identify`` gives."""

    #: ``identify(raw)``: (key, request), or a ``KeplerError`` for a bad input.
    identify: Callable[[object], tuple[str, Request]]
    send: Send
    limit_name: str = "a limit on paid work"
    #: Errors that end the budget for longer than a batch waits (a monthly quota).
    stops_on: tuple[type[KeplerError], ...] = ()

    async def submit(self, key: str, item: Request, deadline: float | None) -> JobHandle[Any]:
        return await self.send(item, subject=None, deadline=deadline, journal_key=key, inline=True)

    def stops(self, error: KeplerError) -> str | None:
        return error.message if isinstance(error, self.stops_on) else None


def check_fan_out(inputs: object, max_outstanding: object, verb: str, noun: str) -> int:
    """Refuse inputs that are not an iterable of inputs, or a bad ``max_outstanding``."""
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, (Iterable, AsyncIterable)):
        raise TypeError(
            f"{verb} takes an iterable of {noun} (a list, a generator...), not "
            f"{type(inputs).__name__}"
        )
    if isinstance(max_outstanding, bool) or not isinstance(max_outstanding, int):
        raise ConfigurationError("max_outstanding must be an integer")
    if max_outstanding < 1:
        raise ConfigurationError(f"max_outstanding must be >= 1, got {max_outstanding}")
    return max_outstanding


def check_cap(max_cold_runs: object) -> int | None:
    """Refuse a ``max_cold_runs`` that is not None or a whole number >= 0."""
    if max_cold_runs is None:
        return None
    if isinstance(max_cold_runs, bool) or not isinstance(max_cold_runs, int):
        raise ConfigurationError("max_cold_runs must be None or an integer")
    if max_cold_runs < 0:
        raise ConfigurationError(f"max_cold_runs must be >= 0, got {max_cold_runs}")
    return max_cold_runs
