"""``kepler-async demo``: a mixed batch against an in-process simulator, no key needed."""

from __future__ import annotations

from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from kepler_async.testing import KeplerSimulator, simulated_client

from ._io import InputLine
from ._run import print_summary, run_batch

__all__ = ["run_demo"]

TIME_SCALE = 0.01  # a 60 s cold run takes 0.6 s

#: (domain, what the simulator is told to do with it)
SCENARIO: list[tuple[str, str]] = [
    ("stripe.com", "scored 5 minutes ago: answered from cache"),
    ("plaid.com", "cold run"),
    ("linear.app", "cold run"),
    ("notion.so", "cold run"),
    ("https://www.Figma.com/pricing", "cold run (normalised to figma.com)"),
    ("figma.com", "duplicate: shares figma.com's job"),
    ("broken-pipeline.io", "fails: sfn_failed"),
    ("flaky-pipeline.io", "fails: sfn_timed_out (retryable)"),
    ("aborted-run.io", "fails: sfn_aborted"),
    ("thin-data.io", "fails: scoring_completed_no_record"),
    ("glacial.io", "runs 400 s: misses the 180 s deadline"),
    ("not a domain", "rejected before any request"),
]


class _Collect:
    """A row writer that keeps the rows for the table at the end."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> bool:
        self.rows.append(row)
        return True


def _simulator() -> KeplerSimulator:
    sim = KeplerSimulator(seed=7, time_scale=TIME_SCALE, failure_mix={})
    sim.seed_score("stripe.com", age=300)  # fresh under the 15 min enterprise window
    for domain, reason in [
        ("broken-pipeline.io", "sfn_failed"),
        ("flaky-pipeline.io", "sfn_timed_out"),
        ("aborted-run.io", "sfn_aborted"),
        ("thin-data.io", "scoring_completed_no_record"),
    ]:
        sim.script(domain, failure_reason=reason, duration=40)
    sim.script("glacial.io", duration=400)
    return sim


def run_demo(*, quiet: bool = False) -> int:
    """Run the scenario; 0 if every case came out as the simulator was told."""
    err = Console(stderr=True)
    out = Console()
    if not out.is_terminal:
        out = Console(width=120)  # a log or a pipe: room for every column
    sim = _simulator()
    items = [InputLine(raw, n, "demo") for n, (raw, _) in enumerate(SCENARIO, start=1)]
    collected = _Collect()
    if not quiet:
        err.print(
            f"[bold]kepler-async demo[/]: {len(items)} domains against a local simulator "
            f"running {1 / TIME_SCALE:g}x faster than the real API (no key, no network)"
        )

    async def main() -> Any:
        async with simulated_client(sim) as kepler:
            return await run_batch(
                kepler,
                items,
                collected,
                max_outstanding=100,
                deadline=180 * TIME_SCALE,
                console=err if err.is_terminal and not quiet else None,
            )

    tally = anyio.run(main)
    table = Table(title="results", show_lines=False)
    for column in ("input", "status", "rating", "score", "error", "scenario"):
        table.add_column(column)
    told = dict(SCENARIO)
    for row in sorted(collected.rows, key=lambda r: r["line"]):
        table.add_row(
            row["input"],
            row["status"],
            row["ki_rating"] or "",
            "" if row["composite_score"] is None else f"{row['composite_score']:.1f}",
            row["error"] or "",
            told[row["input"]],
        )
    out.print(table)
    if not quiet:
        print_summary(tally, err)
    expected = {
        "PipelineFailed",
        "PipelineTimedOut",
        "PipelineAborted",
        "NoScoreRecord",
        "DeadlineExceeded",
        "InvalidDomain",
    }
    seen = {row["error"] for row in collected.rows if row["error"]}
    cached = [row for row in collected.rows if row["input"] == "stripe.com"]
    ok = (
        expected <= seen
        and tally.scored == 6
        and len(collected.rows) == len(items)
        and cached[0]["job_id"] is None  # served inline, no cold run
    )
    if not ok:
        err.print(f"[red]the demo did not come out as expected: {sorted(seen)}[/]")
    return 0 if ok else 1
