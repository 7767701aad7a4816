"""``kepler-async plan``: a batch's cost, said before it runs."""

from __future__ import annotations

import json
from typing import Any

from kepler_async._kepler._plan import PER_KEY_COLD_PER_HOUR, BatchPlan

__all__ = ["plan_lines", "plan_record"]


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def plan_lines(plan: BatchPlan, lines: list[tuple[int, str]]) -> list[str]:
    """The plan in words, one fact a line. ``lines``: each input's (line, source)."""
    out = [
        f"inputs: {plan.inputs} ({len(plan.domains)} distinct domains, "
        f"{plan.duplicates} repeated, {len(plan.invalid)} invalid)"
    ]
    for index, raw, why in plan.invalid:
        line, source = lines[index]
        where = f"{source}:{line}" if line else "argument"
        out.append(f"  invalid, {where}: {raw!r}: {why}")
    if plan.in_journal:
        ages = sorted(plan.in_journal.values())
        out.append(
            f"in the journal: {len(plan.in_journal)} scored already (newest "
            f"{_age(ages[0])} old, oldest {_age(ages[-1])}); a run takes them from it"
        )
    else:
        out.append("in the journal: none")
    if plan.fresh_on_server is not None:
        out.append(
            f"fresh on the server: {len(plan.fresh_on_server)} (cached answers, not billed; "
            "each look was a metered cached call)"
        )
    out.append(f"billed cold runs at most: {plan.cold_at_most}")
    usage = plan.usage
    if usage is not None:
        left = plan.cold_left_this_month
        out.append(
            f"this month ({usage.period}, {usage.tier}): {usage.cold_calls} cold runs and "
            f"{usage.cached_calls} cached calls used; "
            + ("cold runs unmetered" if left is None else f"{left} cold runs left")
        )
        if left is not None and plan.cold_at_most > left:
            out.append(
                f"  more than the plan has left: after {left} runs the API refuses "
                "the rest (cold_budget_exhausted)"
            )
        window = plan.freshness_window
        if window is not None:
            out.append(f"freshness window: {window / 3600:g} h (a score younger is served cached)")
    hours = plan.hours_at_least
    out.append(
        f"time: the per-key limit of {PER_KEY_COLD_PER_HOUR} cold runs an hour "
        + (f"makes it take more than {hours} h" if hours else "is not reached")
    )
    out.append("nothing billed was sent")
    return out


def plan_record(plan: BatchPlan) -> dict[str, Any]:
    """The plan as JSON data (``--json``)."""
    return {
        "inputs": plan.inputs,
        "distinct": len(plan.domains),
        "duplicates": plan.duplicates,
        "invalid": [{"index": i, "input": raw, "error": why} for i, raw, why in plan.invalid],
        "in_journal": plan.in_journal,
        "fresh_on_server": plan.fresh_on_server,
        "cold_at_most": plan.cold_at_most,
        "cold_left_this_month": plan.cold_left_this_month,
        "freshness_window_s": plan.freshness_window,
        "hours_at_least": plan.hours_at_least,
    }


def dumps(plan: BatchPlan) -> str:
    return json.dumps(plan_record(plan), indent=2, sort_keys=True)
