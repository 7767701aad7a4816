"""Running a batch for the command line: rows out, a live progress line, a summary."""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio
import attrs
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kepler_async._kepler._batch import ScoreBatch, ScoreOutcome
from kepler_async._kepler._client import AsyncKepler

from ._io import InputLine, row_for

__all__ = ["Tally", "print_summary", "run_batch", "run_interruptible"]

T = TypeVar("T")


@attrs.define
class Tally:
    """Counts of what became of the inputs so far."""

    total: int
    scored: int = 0
    failed: int = 0
    not_attempted: int = 0
    errors: Counter[str] = attrs.field(factory=Counter)
    cold_runs: int = 0
    #: Inputs the journal answered (an earlier run scored them) / jobs it resumed.
    from_journal: int = 0
    resumed: int = 0
    #: The run's cap on billed runs (--max-cold), if any.
    cap: int | None = None
    polls: int = 0
    polls_per_job: float = 0.0
    elapsed: float = 0.0
    #: While submits wait for a cold-run limit (--wait-for-budget): when it lifts.
    waiting_until: float | None = None

    @property
    def finished(self) -> int:
        return self.scored + self.failed + self.not_attempted

    def add(self, outcome: ScoreOutcome) -> None:
        """Note why an input did not score (the counts come from ``batch.progress()``)."""
        if outcome.status == "failed":
            self.errors[type(outcome.error).__name__] += 1
        elif outcome.status == "not_attempted":
            self.errors["not attempted"] += 1

    def line(self, room: int | None = None) -> str:
        """What happened so far, in at most ``room`` characters (None: all of it).

        Parts go from the least telling: a failed or not-attempted count of 0, then
        the polls, then "pending"; what is done and a wait for the cold budget stay."""
        pending = self.total - self.finished
        parts = [
            (0, f"done {self.scored}"),
            (1 if self.failed else 4, f"failed {self.failed}"),
            (3, f"pending {pending}"),
            (1 if self.not_attempted else 4, f"not attempted {self.not_attempted}"),
            (2, f"polls {self.polls}"),
        ]
        if self.cap is not None:
            parts.insert(1, (1, f"cold {self.cold_runs}/{self.cap}"))
        if self.waiting_until is not None:
            lifts = time.strftime("%H:%M", time.localtime(self.waiting_until))
            parts.append((0, f"waiting for cold budget until {lifts}"))
        for drop in (5, 4, 3, 2, 1):
            text = " · ".join(part for rank, part in parts if rank < drop)
            if room is None or len(text) <= room:
                break
        return text


class Rows(Protocol):
    """Where ``run_batch`` writes its rows (``RowWriter``, or the demo's table)."""

    def write(self, row: dict[str, Any]) -> bool:
        """Write one row; False once nobody reads them any more."""
        ...


#: The progress bar's width, in columns.
_BAR = 8


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        BarColumn(bar_width=_BAR),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("left ~{task.fields[eta]}"),
        console=console,
        transient=False,
    )


def _room(console: Console, total: int) -> int:
    """Columns left for the tally on one line of ``console`` (the other columns at
    their widest, with the spaces between them)."""
    others = 1 + _BAR + len(f"{total}/{total}") + len("0:00:00") + len("left ~99999s")
    return max(20, console.width - others - 5)  # one space between columns


async def run_batch(
    kepler: AsyncKepler,
    items: list[InputLine],
    writer: Rows,
    *,
    max_outstanding: int,
    deadline: float | None,
    console: Console | None,
    wait_for_budget: bool = False,
    max_cold_runs: int | None = None,
) -> Tally:
    """Score every input through ``score_many``; one row per input, as they finish.

    ``console``: show a live progress display there (None: stay quiet).
    """
    tally = Tally(total=len(items))
    start = time.monotonic()
    progress = _progress(console) if console is not None else None
    room = _room(console, len(items)) if console is not None else None
    task = None
    if progress is not None:
        progress.start()
        task = progress.add_task(tally.line(room), total=len(items), eta="-")

    batch: ScoreBatch | None = None

    def refresh() -> None:
        stats = kepler.statistics()
        tally.polls = stats.polls_sent
        tally.from_journal = stats.from_journal
        tally.resumed = stats.resumed_from_journal
        tally.polls_per_job = stats.polls_per_finished_job
        tally.elapsed = time.monotonic() - start
        if batch is None:
            return
        now = batch.progress()  # the batch's own account, through the public API
        tally.scored, tally.failed, tally.not_attempted = now.done, now.failed, now.not_attempted
        tally.waiting_until = now.waiting_until
        tally.cold_runs = now.cold_runs_started
        tally.cap = now.max_cold_runs
        if progress is not None and task is not None:
            eta = "-" if now.eta is None or not now.pending else f"{now.eta:.0f}s"
            progress.update(task, completed=now.finished, description=tally.line(room), eta=eta)

    async def tick() -> None:
        while True:
            refresh()
            await anyio.sleep(0.25)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            batch = kepler.score_many(
                [item.raw for item in items],
                max_outstanding=max_outstanding,
                deadline=deadline,
                wait_for_budget=wait_for_budget,
                max_cold_runs=max_cold_runs,
            )
            async for outcome in batch:
                if not writer.write(
                    row_for(items[outcome.index], outcome, time.monotonic() - start)
                ):
                    # Nobody reads the rows any more: submit nothing more. Jobs already
                    # submitted stay in the journal (if any) for the next run.
                    await batch.aclose()
                    break
                tally.add(outcome)
                refresh()
            tg.cancel_scope.cancel()
    finally:
        refresh()
        if progress is not None:
            progress.stop()
    return tally


def print_summary(tally: Tally, console: Console) -> None:
    """The table at the end: outcomes, error classes, cold runs, polls per job."""
    table = Table(title="kepler-async: summary", show_header=True)
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("scored", str(tally.scored))
    table.add_row("failed", str(tally.failed))
    table.add_row("not attempted", str(tally.not_attempted))
    for name, count in sorted(tally.errors.items()):
        table.add_row(f"  {name}", str(count))
    if tally.from_journal:  # a rerun: what an earlier run finished
        table.add_row("from the journal, done before", str(tally.from_journal))
    if tally.resumed:
        table.add_row("resumed from the journal (pending)", str(tally.resumed))
    started = str(tally.cold_runs) if tally.cap is None else f"{tally.cold_runs} of {tally.cap}"
    table.add_row("cold runs started", started)
    table.add_row("polls per finished job", f"{tally.polls_per_job:.1f}")
    table.add_row("elapsed", f"{tally.elapsed:.1f}s")
    console.print(table)


async def run_interruptible(work: Callable[[], Awaitable[T]]) -> tuple[T | None, bool]:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives; say whether one did.

    On a signal the work is cancelled: the client closes, in-flight journal writes
    finish (they are shielded), and pending jobs stay pending in the journal.
    """
    interrupted = False
    result: T | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:

        async def watch(scope: anyio.CancelScope) -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    scope.cancel()
                    return

        with anyio.CancelScope() as scope:
            if sys.platform != "win32":
                tg.start_soon(watch, scope)
            try:
                result = await work()
            except Exception as exc:  # re-raised below, not wrapped in an ExceptionGroup
                failure = exc
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return result, interrupted
