"""The kepler-async command line: help, demo, score, exit codes, crash and interrupt safety."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kepler_async import SQLiteJobStore
from kepler_async.cli import main
from kepler_async.cli._io import COLUMNS
from kepler_async.testing import LIVE_KEY, KeplerSimulator, create_app, serve

SCALE = 0.01


@pytest.fixture
def fast_sim() -> KeplerSimulator:
    # No retryable failures: a journal run submits those again by design, and these
    # tests count billed runs exactly.
    return KeplerSimulator(
        seed=4,
        time_scale=SCALE,
        per_key_cold_per_hour=None,
        failure_mix={"sfn_failed": 0.04, "scoring_completed_no_record": 0.03},
    )


@pytest.fixture
def sim_url(fast_sim: KeplerSimulator) -> Iterator[str]:
    with serve(create_app(fast_sim)) as url:
        yield url


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("KEPLER_API_KEY", LIVE_KEY)
    return CliRunner()


def rows(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- help ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["score"], ["simulate"], ["demo"]])
def test_help_reads_well(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"], prog_name="kepler-async")
    assert result.exit_code == 0
    assert "Usage: kepler-async" in result.output
    if args == ["score"]:
        for word in ("--journal", "--max-outstanding", "--deadline", "KEPLER_API_KEY", "130"):
            assert word in result.output


def test_the_demo_runs_without_a_key_or_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEPLER_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["demo", "--quiet"])
    assert result.exit_code == 0, result.output
    for word in ("PipelineTimedOut", "DeadlineExcee", "InvalidDomain", "scored"):
        assert word in result.output


# --- score --------------------------------------------------------------------------------


def test_score_writes_one_row_per_input(
    runner: CliRunner, sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    fast_sim.seed_score("stripe.com", age=10)
    listing = tmp_path / "domains.txt"
    listing.write_text(
        "# companies to score\n\nplaid.com\nnot a domain\n  STRIPE.com  \nplaid.com\n"
    )
    result = runner.invoke(
        main,
        [
            "score",
            "linear.app",
            "-f",
            str(listing),
            "--base-url",
            sim_url,
            "--poll-scale",
            str(SCALE),
            "-q",
        ],
    )
    assert result.exit_code == 1, result.output  # one input is malformed
    out = rows(result.stdout)
    assert sorted((r["input"], r["line"]) for r in out) == [
        ("  STRIPE.com  ".strip(), 5),
        ("linear.app", 0),
        ("not a domain", 4),
        ("plaid.com", 3),
        ("plaid.com", 6),
    ]
    by_line = {r["line"]: r for r in out}
    assert by_line[4]["error"] == "InvalidDomain"
    assert by_line[3]["job_id"] == by_line[6]["job_id"]
    assert by_line[5]["status"] == "scored"
    assert by_line[5]["job_id"] is None
    assert set(out[0]) == set(COLUMNS)
    assert fast_sim.counters.cold_runs_billed["plaid.com"] == 1


def test_score_all_good_exits_0_and_csv_has_the_schema(
    runner: CliRunner, sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    fast_sim.seed_score("stripe.com", age=10)
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        main, ["score", "stripe.com", "--base-url", sim_url, "--format", "csv", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(COLUMNS)
    assert table[0]["status"] == "scored"
    assert "summary" in result.stderr


def test_bad_setups_exit_2_before_any_request(
    runner: CliRunner,
    sim_url: str,
    fast_sim: KeplerSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = [
        ["score", "-f", str(tmp_path / "missing.txt"), "--base-url", sim_url],
        [
            "score",
            "a.com",
            "-o",
            str(tmp_path / "no-such-dir" / "out.jsonl"),
            "--base-url",
            sim_url,
        ],
        ["score", "--base-url", sim_url],
        ["score", "a.com", "--base-url", "not a url"],
    ]
    for args in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
    monkeypatch.delenv("KEPLER_API_KEY")
    result = runner.invoke(main, ["score", "a.com", "--base-url", sim_url])
    assert result.exit_code == 2
    assert "KEPLER_API_KEY" in result.stderr
    assert sum(fast_sim.counters.requests.values()) == 0


def test_a_journal_for_another_api_is_refused(
    runner: CliRunner, sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.db"
    fast_sim.seed_score("stripe.com", age=10)
    first = runner.invoke(
        main, ["score", "stripe.com", "--base-url", sim_url, "--journal", str(journal), "-q"]
    )
    assert first.exit_code == 0, first.output
    other = runner.invoke(
        main,
        [
            "score",
            "stripe.com",
            "--base-url",
            "http://127.0.0.1:9",
            "--journal",
            str(journal),
            "-q",
        ],
    )
    assert other.exit_code == 2
    assert "was made for" in other.stderr


# --- crash and interrupt safety (real processes, real HTTP) ---------------------------------


def _start(args: list[str], env: dict[str, str], stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kepler_async", *args],
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(path: Path, count: int, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} rows in {path} after {timeout}s")


def _env() -> dict[str, str]:
    return {**os.environ, "KEPLER_API_KEY": LIVE_KEY}


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_reader_that_goes_away_ends_the_run_quietly(
    sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path, fmt: str
) -> None:
    """``... | kepler-async score -f - | head -2``: two rows, then the reader closes the
    pipe. The run stops as Unix tools do: no traceback, exit 141 (a writer SIGPIPE
    ended), nothing more submitted, the journal usable for the next run."""
    fast_sim.cold_duration = (25.0, 90.0)
    fast_sim.failure_mix = {}
    domains = [f"pipe-{i:03d}.com" for i in range(200)]
    journal = tmp_path / "run.db"
    run = _start(
        [
            *["score", "-f", "-", "--format", fmt, "--max-outstanding", "20"],
            *["--journal", str(journal), "--base-url", sim_url],
            *["--poll-scale", str(SCALE), "-q"],
        ],
        _env(),
        stdin=subprocess.PIPE,
    )
    assert run.stdin is not None
    assert run.stdout is not None
    run.stdin.write("\n".join(domains) + "\n")
    run.stdin.close()
    first = [run.stdout.readline() for _ in range(2)]
    run.stdout.close()  # `head -2` has what it wants
    assert run.stderr is not None
    with run.stderr:
        err = run.stderr.read()
    run.wait(timeout=60)
    assert all(line.strip() for line in first)
    assert "Traceback" not in err, err
    assert "BrokenPipe" not in err, err
    assert run.returncode == 141
    assert fast_sim.counters.total_cold_runs < len(domains)  # it stopped submitting
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "kepler_async",
            "score",
            "-f",
            "-",
            "--journal",
            str(journal),
            "--base-url",
            sim_url,
            "--poll-scale",
            str(SCALE),
            "-q",
        ],
        input="\n".join(domains[:3]) + "\n",
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert len(rerun.stdout.splitlines()) == 3


def test_sigkill_mid_run_then_rerun_pays_once_per_domain(
    sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    fast_sim.cold_duration = (25.0, 600.0)  # some runs last seconds: the kill lands mid-run
    domains = [f"company-{i:03d}.com" for i in range(300)]
    listing = tmp_path / "domains.txt"
    listing.write_text("\n".join(domains) + "\n")
    journal = tmp_path / "run.db"
    common = [
        "score",
        "-f",
        str(listing),
        "--journal",
        str(journal),
        "--base-url",
        sim_url,
        "--poll-scale",
        str(SCALE),
        "-q",
    ]
    first_out = tmp_path / "first.jsonl"
    first = _start([*common, "-o", str(first_out)], _env())
    try:
        _wait_for_rows(first_out, 40)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)  # reaps it and closes its pipes
    assert first.returncode == -signal.SIGKILL
    billed_before = fast_sim.counters.total_cold_runs
    assert 0 < billed_before <= len(domains)

    second_out = tmp_path / "second.jsonl"
    second = _start([*common, "-o", str(second_out)], _env())
    _, err = second.communicate(timeout=120)
    assert second.returncode in (0, 1), err
    final = rows(second_out.read_text())
    assert sorted(str(r["domain"]) for r in final) == domains  # exactly one outcome each
    assert {r["status"] for r in final} <= {"scored", "failed"}
    assert fast_sim.counters.total_cold_runs == len(domains)
    assert set(fast_sim.counters.cold_runs_billed.values()) == {1}


def test_sigint_stops_cleanly_with_130_and_a_usable_journal(
    sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    fast_sim.cold_duration = (25.0, 600.0)  # some runs last seconds: Ctrl-C lands mid-run
    domains = [f"company-{i:03d}.com" for i in range(200)]
    listing = tmp_path / "domains.txt"
    listing.write_text("\n".join(domains) + "\n")
    journal = tmp_path / "run.db"
    out = tmp_path / "first.jsonl"
    args = [
        "score",
        "-f",
        str(listing),
        "--journal",
        str(journal),
        "--base-url",
        sim_url,
        "--poll-scale",
        str(SCALE),
        "-q",
        "-o",
        str(out),
    ]
    process = _start(args, _env())
    _wait_for_rows(out, 20)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "run the same command again to resume" in err
    written = rows(out.read_text())
    import anyio

    entries = anyio.run(SQLiteJobStore(journal).entries)
    finished = {e.key for e in entries if e.state != "pending"}
    assert {r["domain"] for r in written} <= finished | {None}
    assert all(e.job_id for e in entries)

    again = _start([*args[:-1], str(tmp_path / "second.jsonl")], _env())
    _, err = again.communicate(timeout=120)
    assert again.returncode in (0, 1), err
    assert fast_sim.counters.total_cold_runs == len(domains)


def _limited_run(runner: CliRunner, *extra: str) -> tuple[int, list[dict[str, object]]]:
    sim = KeplerSimulator(seed=2, time_scale=0.001, failure_mix={}, per_key_cold_per_hour=2)
    with serve(create_app(sim)) as url:
        result = runner.invoke(
            main,
            [
                *("score", "a.com", "b.com", "c.com", "d.com", "--base-url", url),
                *("--poll-scale", "0.001", "-q", *extra),
            ],
        )
    return result.exit_code, rows(result.stdout)


def test_a_cold_limit_reports_the_rest_not_attempted_with_when_it_lifts(
    runner: CliRunner,
) -> None:
    code, out = _limited_run(runner)
    assert code == 1
    by_status = sorted(str(r["status"]) for r in out)
    assert by_status == ["not_attempted", "not_attempted", "scored", "scored"]
    reasons = {str(r["message"]) for r in out if r["status"] == "not_attempted"}
    assert all("lifts at" in reason for reason in reasons), reasons


def test_max_cold_caps_the_billed_runs_and_says_so(runner: CliRunner, tmp_path: Path) -> None:
    sim = KeplerSimulator(seed=3, time_scale=0.001, failure_mix={})
    sim.seed_score("stripe.com", age=60)
    domains = tmp_path / "domains.txt"
    domains.write_text("stripe.com\n" + "".join(f"new-{n}.com\n" for n in range(8)))
    with serve(create_app(sim)) as url:
        result = runner.invoke(
            main,
            [
                *("score", "-f", str(domains), "--base-url", url, "--poll-scale", "0.001"),
                *("--max-cold", "3", "--max-outstanding", "1"),
            ],
        )
    assert result.exit_code == 1  # some inputs were not attempted
    out = rows(result.stdout)
    assert sim.counters.total_cold_runs == 3
    assert sorted(str(r["status"]) for r in out) == ["not_attempted"] * 5 + ["scored"] * 4
    skipped = [str(r["message"]) for r in out if r["status"] == "not_attempted"]
    assert all("cap of 3 billed runs" in message for message in skipped)
    assert re.search(r"cold runs started\s*│\s*3 of 3", result.stderr), result.stderr


def test_cache_max_age_needs_a_journal_and_bounds_what_it_serves(
    runner: CliRunner, sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    fast_sim.seed_score("stripe.com", age=60)
    lone = runner.invoke(
        main, ["score", "stripe.com", "--base-url", sim_url, "--cache-max-age", "60"]
    )
    assert lone.exit_code == 2
    assert "pass journal=" in lone.stderr or "journal" in lone.stderr
    journal = str(tmp_path / "run.db")
    args = ["score", "stripe.com", "--base-url", sim_url, "--journal", journal, "-q"]
    assert runner.invoke(main, args).exit_code == 0
    posts = fast_sim.counters.requests["POST /v1/score"]
    assert runner.invoke(main, [*args, "--cache-max-age", "86400"]).exit_code == 0
    assert fast_sim.counters.requests["POST /v1/score"] == posts  # from the journal


def test_wait_for_budget_waits_the_cold_limit_out(runner: CliRunner) -> None:
    code, out = _limited_run(runner, "--wait-for-budget")
    assert code == 0
    assert sorted(str(r["status"]) for r in out) == ["scored"] * 4


def test_the_progress_line_says_when_it_waits_for_the_cold_budget() -> None:
    from kepler_async.cli._run import Tally

    tally = Tally(total=10, scored=2)
    assert "waiting" not in tally.line()
    tally.waiting_until = time.mktime((2026, 11, 22, 17, 45, 0, 0, 0, -1))
    assert tally.line().endswith("waiting for cold budget until 17:45")


def test_the_progress_line_fits_an_80_column_terminal() -> None:
    """The live line at 80 columns says what is done, failed and pending, and the time
    left, whole (it was cut to ``polls 0 0… left ~-``)."""
    import io

    from rich.console import Console

    from kepler_async.cli._run import Tally, _progress, _room

    for tally in (
        Tally(total=1000, scored=980, failed=3, not_attempted=2, polls=12345),
        Tally(total=1000, scored=120, polls=480),
        Tally(total=5, scored=1, waiting_until=time.mktime((2026, 12, 4, 17, 45, 0, 0, 0, -1))),
    ):
        screen = io.StringIO()
        console = Console(file=screen, width=80, force_terminal=True, color_system=None)
        progress = _progress(console)
        progress.add_task(tally.line(_room(console, tally.total)), total=tally.total, eta="42s")
        console.print(progress.get_renderable())
        line = screen.getvalue().strip()
        assert "…" not in line, line
        assert len(line) <= 80
        assert f"done {tally.scored}" in line
        assert line.endswith("left ~42s"), line
        if tally.failed:
            assert f"failed {tally.failed}" in line
        if tally.waiting_until:
            assert "waiting for cold budget until 17:45" in line


def test_a_rerun_from_the_journal_says_what_it_took_from_it(
    runner: CliRunner, sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    """The second run over the same domains takes every score from the journal, and
    its summary says so (it said only "cold runs started 0")."""
    journal = str(tmp_path / "run.db")
    args = ["score", "plaid.com", "ramp.com", "--base-url", sim_url, "--journal", journal]
    first = runner.invoke(main, [*args, "--poll-scale", "0.001"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(main, args)
    assert second.exit_code == 0, second.output
    assert re.search(r"from the journal, done before\s*│\s*2", second.stderr), second.stderr
    assert re.search(r"cold runs started\s*│\s*0", second.stderr)
    assert "from the journal" not in first.stderr
    assert fast_sim.counters.total_cold_runs == 2


def test_a_hostile_answer_costs_one_row_not_the_run(runner: CliRunner) -> None:
    """A 200,000-level nested answer to one domain's POST: that row fails (a job may
    have started, so SubmitUncertain); every other domain gets its row."""
    sim = KeplerSimulator(seed=2, time_scale=0.001, failure_mix={})
    inner = create_app(sim)
    deep = b"[" * 200_000 + b"]" * 200_000

    async def hostile(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            if b"evil.com" in body:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": deep})
                return
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    message: dict[str, Any] = await receive()
                    return message
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await inner(scope, replay, send)
            return
        await inner(scope, receive, send)

    with serve(hostile) as url:
        result = runner.invoke(
            main,
            [
                *("score", "evil.com", "stripe.com", "plaid.com", "--base-url", url),
                *("--poll-scale", "0.001", "-q"),
            ],
        )
    assert result.exit_code == 1, result.output
    out = {str(r["domain"]): r for r in rows(result.stdout)}
    assert set(out) == {"evil.com", "stripe.com", "plaid.com"}
    assert out["evil.com"]["error"] == "SubmitUncertain"
    assert out["stripe.com"]["status"] == out["plaid.com"]["status"] == "scored"
    assert "Traceback" not in result.output


def test_sigkill_during_the_post_then_rerun_pays_once(tmp_path: Path) -> None:
    """The simulator starts (and bills) the cold run, then holds its 202 for 30 s: the
    process is killed while its POST waits. The rerun finds the POST in doubt in the
    journal, reads the run's score, and POSTs nothing."""
    sim = KeplerSimulator(seed=4, time_scale=SCALE, failure_mix={})
    sim.add_fault("delay", path="/v1/score", method="POST", delay=30.0, after_processing=True)
    journal = tmp_path / "run.db"
    with serve(create_app(sim)) as url:
        args = ["score", "stripe.com", "--journal", str(journal), "--base-url", url]
        args += ["--poll-scale", str(SCALE), "-q"]
        process = _start(args, _env())
        end = time.monotonic() + 30
        while sim.counters.cold_runs_billed["stripe.com"] < 1:  # the POST has landed
            assert time.monotonic() < end, "the POST never reached the simulator"
            time.sleep(0.02)
        process.kill()  # SIGKILL, mid-POST: its answer never came
        process.communicate(timeout=30)
        rerun = _start(args, _env())
        out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert [r["status"] for r in rows(out)] == ["scored"]
    assert sim.counters.requests["POST /v1/score"] == 1  # looked up, not POSTed again
    assert sim.counters.cold_runs_billed["stripe.com"] == 1


def test_two_runs_on_one_journal_pay_once_per_domain(
    sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    """Two `kepler-async score --journal run.db` over the same 300 domains at once: each
    domain is billed once, each run writes one row per input, and a run that finds the
    other's claims says it shares the journal."""
    domains = [f"shared-{i:03d}.com" for i in range(300)]
    listing = tmp_path / "domains.txt"
    listing.write_text("\n".join(domains) + "\n")
    journal = tmp_path / "run.db"
    common = ["score", "-f", str(listing), "--journal", str(journal), "--base-url", sim_url]
    common += ["--poll-scale", str(SCALE), "-q"]
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    runs = [_start([*common, "-o", str(out)], _env()) for out in outs]
    # Both drained at once: a run blocked on a full stderr pipe while the other is read
    # would hold its claims and stall the other.
    with ThreadPoolExecutor() as pool:
        errs = list(pool.map(lambda run: run.communicate(timeout=180)[1], runs))
    for run, err in zip(runs, errs, strict=True):
        assert run.returncode in (0, 1), err
    for out in outs:
        assert sorted(str(r["domain"]) for r in rows(out.read_text())) == domains
    assert fast_sim.counters.total_cold_runs == len(domains)
    assert set(fast_sim.counters.cold_runs_billed.values()) == {1}
    assert any("shared with another process" in err for err in errs), errs


def test_five_random_sigkills_then_a_clean_finish_pay_once_per_domain(
    sim_url: str, fast_sim: KeplerSimulator, tmp_path: Path
) -> None:
    """A 500-domain run over one journal, SIGKILLed five times at random moments (some
    mid-POST), then run to its end: each domain billed once, one row per input."""
    import random

    fast_sim.cold_duration = (25.0, 300.0)
    # No failed runs here: a run that fails while its submit's answer is lost leaves
    # no score, so the in-doubt rule cannot tell it from a POST that never arrived and
    # submits again after the longest run (README, "Several workers").
    fast_sim.failure_mix = {}
    domains = [f"kill-{i:03d}.com" for i in range(500)]
    listing = tmp_path / "domains.txt"
    listing.write_text("\n".join(domains) + "\n")
    journal = tmp_path / "run.db"
    common = ["score", "-f", str(listing), "--journal", str(journal), "--base-url", sim_url]
    common += ["--poll-scale", str(SCALE), "-q"]
    draw = random.Random(5)
    for attempt in range(5):
        out = tmp_path / f"killed-{attempt}.jsonl"
        run = _start([*common, "-o", str(out)], _env())
        time.sleep(draw.uniform(0.5, 2.0))  # anywhere: mid-POST, mid-poll, mid-write
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=10)
    final_out = tmp_path / "final.jsonl"
    final = _start([*common, "-o", str(final_out)], _env())
    _, err = final.communicate(timeout=180)
    assert final.returncode in (0, 1), err
    assert sorted(str(r["domain"]) for r in rows(final_out.read_text())) == domains
    assert fast_sim.counters.total_cold_runs == len(domains)
    assert set(fast_sim.counters.cold_runs_billed.values()) == {1}


def test_simulate_prints_the_port_it_bound_and_exits_130_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [
            *[sys.executable, "-m", "kepler_async", "simulate", "--port", "0", "--seed", "3"],
            *["--monthly-cold-budget", "1"],
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "Kepler simulator on http://127.0.0.1:" in first
        url = first.split(" on ", 1)[1].split()[0]
        assert not url.endswith(":0")
        import httpx

        counters = httpx.get(f"{url}/_simulator/counters", timeout=5).json()
        assert counters["cold_runs_billed"] == 0
        from kepler_async.testing import LIVE_KEY

        posts = [
            httpx.post(
                f"{url}/v1/score", json={"domain": d}, headers={"X-API-Key": LIVE_KEY}, timeout=5
            )
            for d in ("stripe.com", "plaid.com")
        ]
        assert [p.status_code for p in posts] == [202, 429]  # --monthly-cold-budget 1
        assert posts[1].json()["error"] == "cold_budget_exhausted"
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 130
    assert "Traceback" not in err


def test_a_missing_key_names_the_options_and_a_key_file_works(
    runner: CliRunner, sim_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEPLER_API_KEY", raising=False)
    result = runner.invoke(main, ["score", "stripe.com", "--base-url", sim_url, "-q"])
    assert result.exit_code == 2
    assert "--api-key" in result.output
    assert "api_key=" not in result.output
    key_file = tmp_path / "key.txt"
    key_file.write_text(LIVE_KEY + "\n")
    result = runner.invoke(
        main,
        [
            *("score", "stripe.com", "--base-url", sim_url),
            *("--api-key-file", str(key_file), "-q", "--poll-scale", str(SCALE)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert LIVE_KEY not in result.output


def test_a_refused_key_exits_2(runner: CliRunner, sim_url: str) -> None:
    result = runner.invoke(
        main, ["score", "stripe.com", "--base-url", sim_url, "--api-key", "ki_live_nope", "-q"]
    )
    assert result.exit_code == 2
    assert "refused the key (401); check --api-key" in result.output
    assert "ki_live_nope" not in result.output


def test_a_refused_key_from_the_environment_says_so(
    runner: CliRunner, sim_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEPLER_API_KEY", "ki_live_nope")
    result = runner.invoke(main, ["score", "stripe.com", "--base-url", sim_url, "-q"])
    assert result.exit_code == 2
    assert "refused the key (401); check $KEPLER_API_KEY" in result.output


def test_without_a_key_the_hint_is_true_of_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's ki_test_ key knows four .test domains only: the hint says so, and
    where the simulator's keys are (it suggested a ki_test_ key for the simulator)."""
    monkeypatch.delenv("KEPLER_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["score", "stripe.com", "-q"])
    assert result.exit_code == 2
    assert "four .test domains" in result.output
    assert "kepler-async simulate" in result.output


def test_a_row_past_its_deadline_says_what_to_do_in_options(
    runner: CliRunner, sim_url: str
) -> None:
    result = runner.invoke(
        main, ["score", "plaid.com", "--base-url", sim_url, "--deadline", "0.05", "-q"]
    )
    (row,) = rows(result.stdout)
    assert row["error"] == "DeadlineExceeded"
    assert row["job_id"]
    message = str(row["message"])
    assert "--journal" in message
    assert "--deadline" in message
    assert "resume(" not in message
    assert "job_id=" not in message


# --- a PostgreSQL journal -------------------------------------------------------------


def test_a_postgresql_journal_from_the_environment(
    runner: CliRunner,
    sim_url: str,
    fast_sim: KeplerSimulator,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--journal takes a DSN, here from $KEPLER_JOURNAL (out of shell history); the
    second run is served from it. The password (ignored by this trust-auth server)
    never shows."""
    dsn = postgres_dsn.replace("postgres@", "postgres:hunter2@")
    monkeypatch.setenv("KEPLER_JOURNAL", dsn)
    args = ["score", "a.com", "b.com", "--base-url", sim_url, "--poll-scale", str(SCALE)]
    first = runner.invoke(main, [*args, "-q"])
    assert first.exit_code in (0, 1), first.output
    billed = dict(fast_sim.counters.cold_runs_billed)
    assert sum(billed.values()) == 2
    second = runner.invoke(main, args)
    assert second.exit_code == first.exit_code
    assert dict(fast_sim.counters.cold_runs_billed) == billed  # nothing billed again
    assert fast_sim.counters.requests["POST /v1/score"] == 2
    assert "hunter2" not in first.output + second.output


def test_an_unreachable_postgresql_journal_sends_nothing_and_hides_the_password(
    runner: CliRunner, sim_url: str, fast_sim: KeplerSimulator
) -> None:
    dsn = "postgresql://app:hunter2@127.0.0.1:9/jobs"
    result = runner.invoke(main, ["score", "a.com", "--base-url", sim_url, "--journal", dsn])
    assert result.exit_code == 1, result.output
    assert "127.0.0.1:9" in result.stderr
    assert "nothing was sent" in result.stderr
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output
    assert sum(fast_sim.counters.requests.values()) == 0


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://app:hunter2@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        ("postgres://app@db/jobs", "postgres://app@db/jobs"),
        (
            "postgresql://db/jobs?user=app&password=hunter2",
            "postgresql://db/jobs?user=app&password=***",
        ),
        ("postgresql://a:b:c@db/x", "postgresql://a:***@db/x"),
        ("run.db", "run.db"),
    ],
)
def test_a_dsn_is_printed_with_its_password_masked(given: str, shown: str) -> None:
    from kepler_async._engine.stores import masked_dsn

    assert masked_dsn(given) == shown
