"""Charts of the benchmarks for the documentation site, drawn from their JSON output.

Reads ``benchmarks/results/`` (what ``polling_efficiency.py``, ``throughput.py``,
``deadlines.py`` and ``scale.py`` wrote) and writes PNGs to ``docs/images/``, each
titled with the machine and the date of its run:

- polls per job and detection delay against the documented 5 s loop;
- polls per second and CPU per poll of each wire beside the raw clients;
- how late ``DeadlineExceeded`` comes;
- bytes per pending job and event-loop lag at 100,000 pending jobs.

    pip install matplotlib
    python benchmarks/charts.py [--results benchmarks/results] [--out docs/images]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt

HERE = Path(__file__).parent


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _title(data: dict[str, Any], what: str) -> str:
    return f"{what}\n{data['machine']}, {data['when'][:10]}"


def polling(data: dict[str, Any], out: Path) -> Path:
    rows = data["results"]
    names = [r["competitor"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.barh(names, [r["polls_per_job"] for r in rows], color="#3f51b5")
    left.set_xlabel("polls per job (fewer is cheaper)")
    left.invert_yaxis()
    right.barh(names, [r["mean_delay_s"] for r in rows], color="#009688", label="mean")
    right.barh(names, [r["p95_delay_s"] for r in rows], color="#80cbc4", alpha=0.5, label="p95")
    right.set_xlabel("detection delay, simulated seconds (lower is sooner)")
    right.set_yticks([])
    right.invert_yaxis()
    right.legend()
    fig.suptitle(
        _title(
            data,
            f"{data['args']['jobs']:,} cold jobs of 25-90 s: polls per job and detection delay",
        )
    )
    fig.tight_layout()
    return _save(fig, out / "polling_efficiency.png")


def throughput(data: dict[str, Any], out: Path) -> Path:
    results = data["results"]
    levels = sorted({int(level) for by_level in results.values() for level in by_level})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    width = 0.8 / len(results)
    for n, (name, by_level) in enumerate(results.items()):
        xs = [i + n * width for i in range(len(levels))]
        left.bar(xs, [by_level[str(level)]["polls_per_s"] for level in levels], width, label=name)
        right.bar(xs, [by_level[str(level)]["cpu_us_per_poll"] for level in levels], width)
    for axis, label in ((left, "polls per second"), (right, "CPU µs per poll (lower is better)")):
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(levels))])
        axis.set_xticklabels([f"{level} in flight" for level in levels])
        axis.set_ylabel(label)
    right.set_yscale("log")
    left.legend(fontsize=7)
    fig.suptitle(
        _title(data, "Polls of one pending job over HTTP: kepler_async's wires and raw clients")
    )
    fig.tight_layout()
    return _save(fig, out / "throughput.png")


def deadlines(data: dict[str, Any], out: Path) -> Path:
    results = data["results"]
    fig, axis = plt.subplots(figsize=(8, 3.5))
    names = list(results)
    axis.boxplot(
        [results[name]["lateness"] for name in names], orientation="horizontal", tick_labels=names
    )
    axis.set_xlabel("seconds after the deadline that DeadlineExceeded came")
    fig.suptitle(_title(data, "How late a deadline is: lateness of DeadlineExceeded"))
    fig.tight_layout()
    return _save(fig, out / "deadlines.png")


def scale(data: dict[str, Any], out: Path) -> Path:
    rows = data["results"]
    names = [r["competitor"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.barh(names, [r["bytes_per_job"] for r in rows], color="#3f51b5")
    left.set_xlabel("bytes per pending job")
    left.invert_yaxis()
    right.barh(names, [r["lag_p99_ms"] for r in rows], color="#e91e63")
    right.set_xlabel("event-loop lag p99, ms")
    right.set_yticks([])
    right.invert_yaxis()
    fig.suptitle(_title(data, "100,000 pending jobs in one process"))
    fig.tight_layout()
    return _save(fig, out / "scale.png")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "images")
    args = parser.parse_args()
    for name, draw in (
        ("polling_efficiency", polling),
        ("throughput", throughput),
        ("deadlines", deadlines),
        ("scale", scale),
    ):
        data = _load(args.results, name)
        if data is None:
            print(f"{name}: no results yet (run benchmarks/{name}.py)")
            continue
        print(f"{name}: {draw(data, args.out)}")


if __name__ == "__main__":
    main()
