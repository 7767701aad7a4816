"""Following the engine from outside: job events (``on_event=``) and where a batch
stands (``FanOut.progress()``), both typed, both O(1) to produce."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import attrs

__all__ = ["BatchProgress", "EventKind", "JobEvent", "emit", "progress_bar"]

logger = logging.getLogger("kepler_async")

EventKind = Literal["submitted", "polled", "throttled", "finished"]


@attrs.frozen(kw_only=True)
class JobEvent:
    """Something that happened to a job, as the client's ``on_event`` hook receives it.

    - ``submitted``: the API accepted a submit; ``job_id`` runs (a billed cold run, for
      Kepler).
    - ``polled``: a poll found the job still running (``status="pending"``) or got no
      readable answer (``status="unreadable"``, ``error`` says why); ``next_poll_in``
      says when the next one goes (seconds).
    - ``throttled``: a 429; ``retry_after`` (seconds) as the API said; ``job_id`` is
      None (a 429 holds the client's requests, not one job).
    - ``finished``: the job ended: ``status`` is ``succeeded``, ``job_failed``,
      ``deadline_exceeded`` or ``error`` (``error`` holds the exception).
    """

    kind: EventKind
    #: The API's short name: "kepler", "deepidv", "midlyr", "parsetx".
    api: str
    job_id: str | None = None
    #: What the job is about (the domain, for Kepler), where known.
    subject: str | None = None
    status: str | None = None
    error: BaseException | None = None
    retry_after: float | None = None
    next_poll_in: float | None = None


EventHook = Callable[[JobEvent], object]


def emit(hook: EventHook | None, event: Callable[[], JobEvent]) -> None:
    """Give ``hook`` the event ``event()`` builds (only built when there is a hook). A
    hook that raises is logged and the engine goes on."""
    if hook is None:
        return
    try:
        hook(event())
    except Exception:
        logger.exception("the on_event hook raised; the engine goes on")


@attrs.frozen(kw_only=True)
class BatchProgress:
    """Where a fan-out stands (``FanOut.progress()``); reading it costs the same
    whatever the batch's size."""

    #: Inputs in all: known for a sized iterable (a list), or once all were read.
    total: int | None
    #: Inputs read from the iterable so far.
    read: int
    done: int
    failed: int
    not_attempted: int
    #: Jobs this batch's submits started (billed runs, for Kepler; a submit in doubt
    #: counts), whoever else uses the client.
    cold_runs_started: int
    #: Seconds since the batch was first iterated.
    elapsed: float
    #: While submits wait for a limit on paid work (``wait_for_budget``): when it
    #: lifts (``time.time()``); otherwise None.
    waiting_until: float | None = None
    #: The batch's cap on billed runs (``max_cold_runs``), if any.
    max_cold_runs: int | None = None

    @property
    def finished(self) -> int:
        """Inputs with an outcome handed out."""
        return self.done + self.failed + self.not_attempted

    @property
    def pending(self) -> int:
        """Inputs without an outcome yet (of ``total`` when known, else of ``read``)."""
        return (self.total if self.total is not None else self.read) - self.finished

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far; None before the first outcome or while
        the total is not known."""
        if self.total is None or not self.finished or self.finished >= self.total:
            return None if self.total is None or not self.finished else 0.0
        return self.elapsed / self.finished * (self.total - self.finished)


def progress_bar(total: int | None) -> Any:
    """A tqdm progress bar (``tqdm.auto``: a widget in a notebook, a line in a
    terminal) for ``total`` outcomes."""
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            'progress=True needs the progress extra (tqdm): pip install "kepler-async[progress]"'
        ) from None
    return tqdm(total=total, unit="input", desc="outcomes")
