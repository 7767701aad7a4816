"""The command line's inputs and outputs: domain lists in, JSON Lines or CSV rows out."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import attrs

from kepler_async._exceptions import DeadlineExceeded, KeplerError
from kepler_async._kepler._batch import ScoreOutcome

__all__ = ["COLUMNS", "InputLine", "RowWriter", "open_output", "read_inputs", "row_for"]

#: The output schema, one row per input domain (documented in the README).
COLUMNS = (
    "input",
    "line",
    "domain",
    "status",
    "ki_rating",
    "composite_score",
    "scale_premium",
    "scored_at",
    "job_id",
    "error",
    "message",
    "failure_reason",
    "elapsed_s",
)


@attrs.frozen
class InputLine:
    """One domain to score and where it came from (line 0: the command line)."""

    raw: str
    line: int
    source: str


class InputError(Exception):
    """An input file cannot be read."""


def _from_lines(lines: Iterable[str], source: str) -> list[InputLine]:
    found = []
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        found.append(InputLine(stripped, number, source))
    return found


def read_inputs(domains: Iterable[str], files: Iterable[str]) -> list[InputLine]:
    """Domains from the arguments, then from each file (``-`` is standard input).

    Blank lines and ``#`` comments are skipped; everything else is kept, duplicates and
    malformed names included, so that each gets its own row.
    """
    found = [InputLine(raw, 0, "argv") for raw in domains]
    for name in files:
        if name == "-":
            found.extend(_from_lines(sys.stdin, "stdin"))
            continue
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {name}: {exc}") from None
        found.extend(_from_lines(text.splitlines(), name))
    return found


def open_output(path: str | None) -> IO[str]:
    """The output stream, opened before any request so a bad path costs nothing."""
    if path is None or path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from None


def _message(error: KeplerError | None) -> str | None:
    """The error's message, in the command line's words where the library's speak of
    Python calls."""
    if isinstance(error, DeadlineExceeded):
        return (
            "still pending at --deadline; the job goes on server-side (its job_id is in "
            "this row): run the same command with --journal PATH to pick it up without "
            "paying again"
        )
    return error.message if error else None


def row_for(item: InputLine, outcome: ScoreOutcome, elapsed: float) -> dict[str, Any]:
    """The output row of one input."""
    score = outcome.score
    error = outcome.error
    return {
        "input": item.raw,
        "line": item.line,
        "domain": outcome.domain,
        "status": outcome.status,
        "ki_rating": str(score.ki_rating) if score else None,
        "composite_score": score.composite_score if score else None,
        "scale_premium": score.scale_premium if score else None,
        "scored_at": score.scored_at.isoformat() if score else None,
        "job_id": outcome.job_id,
        "error": type(error).__name__ if error else None,
        "message": (outcome.reason if outcome.status == "not_attempted" else _message(error)),
        "failure_reason": getattr(error, "failure_reason", None),
        "elapsed_s": round(elapsed, 3),
    }


class RowWriter:
    """Writes rows as JSON Lines or CSV, flushing each so a crash loses no row.

    When the reader goes away (``... | head -2`` has what it wants), writing stops
    quietly, as Unix tools do: ``reader_gone`` says so and ``write`` returns False.
    """

    def __init__(self, stream: IO[str], fmt: str) -> None:
        self._stream = stream
        self._csv: Any = None
        self.reader_gone = False
        if fmt == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=COLUMNS)
            self._put(self._csv.writeheader)

    def write(self, row: dict[str, Any]) -> bool:
        """Write one row; False once nobody reads the output any more."""
        if self._csv is not None:
            csv_row = {k: "" if v is None else v for k, v in row.items()}
            return self._put(lambda: self._csv.writerow(csv_row))
        line = json.dumps(row) + "\n"
        return self._put(lambda: self._stream.write(line))

    def _put(self, write: Any) -> bool:
        if self.reader_gone:
            return False
        try:
            write()
            self._stream.flush()
        except BrokenPipeError:
            self.reader_gone = True
        return not self.reader_gone
