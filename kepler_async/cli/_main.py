"""``kepler-async``: score domains from a shell, serve the simulator, run the demo."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

import anyio
import click
from rich.console import Console

from kepler_async._engine.stores import (
    JobStore,
    JournalUnavailable,
    PostgresJobStore,
    SQLiteJobStore,
    is_dsn,
    masked_dsn,
)
from kepler_async._exceptions import ConfigurationError, KeplerError
from kepler_async._kepler._client import AsyncKepler
from kepler_async._kepler._dialect import KEPLER_POLICY
from kepler_async._version import __version__

from ._io import InputError, RowWriter, open_output, read_inputs
from ._run import print_summary, run_batch, run_interruptible

__all__ = ["main"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The reader of the rows went away (``| head``): what a shell reports for a writer
#: that SIGPIPE ended, without the traceback.
EXIT_READER_GONE = 141


def _stderr(quiet: bool) -> Console | None:
    return None if quiet else Console(stderr=True)


@click.group(name="kepler-async", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kepler-async")
def main() -> None:
    """Score companies with the Kepler Insights API, from the shell.

    \b
    kepler-async demo                       see it work: no key, no network
    kepler-async score stripe.com plaid.com score a few domains (KEPLER_API_KEY)
    kepler-async score -f domains.txt --journal run.db -o scores.jsonl
    kepler-async simulate                   a local Kepler API to test against
    """


def _key_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--api-key`` and ``--api-key-file``, as every command that calls the API takes."""
    command = click.option(
        "--api-key-file",
        type=click.Path(dir_okay=False, readable=True),
        help="Read the API key from this file (its first line).",
    )(command)
    return click.option(
        "--api-key",
        metavar="KEY",
        envvar="KEPLER_API_KEY",
        show_envvar=True,
        help="The API key (default: $KEPLER_API_KEY). It is never printed.",
    )(command)


def _input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """DOMAIN... and ``-f FILE``: the inputs of every command that reads domains."""
    command = click.option(
        "-f",
        "--file",
        "files",
        multiple=True,
        metavar="FILE",
        help="Read domains from FILE, one per line ('-' for standard input). Blank lines "
        "and lines starting with # are skipped.",
    )(command)
    return click.argument("domains", nargs=-1)(command)


@main.command(short_help="Score domains from arguments or files into JSON Lines or CSV.")
@_input_options
@click.option("-o", "--out", metavar="PATH", help="Write rows to PATH instead of stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="Output format, one row per input domain.",
)
@click.option(
    "--max-outstanding",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Jobs submitted and unfinished at once.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    default=180.0,
    show_default=True,
    help="Seconds (real time) to wait for each cold job before giving up on it; "
    "--poll-scale does not change it.",
)
@click.option(
    "--journal",
    metavar="PATH|DSN",
    envvar="KEPLER_JOURNAL",
    show_envvar=True,
    help="Record job ids and outcomes in this SQLite file, or in PostgreSQL given a "
    "postgresql:// DSN (extra 'postgres'; set it in $KEPLER_JOURNAL to keep its password "
    "out of your shell history); run the same command again after a crash or Ctrl-C to "
    "resume without paying twice. A DSN is only ever printed with its password masked.",
)
@click.option(
    "--base-url", metavar="URL", help="API base URL (default: KEPLER_BASE_URL or production)."
)
@click.option(
    "--poll-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Scale poll delays (e.g. 0.01 for a simulator at time scale 0.01).",
)
@click.option(
    "--wait-for-budget",
    is_flag=True,
    help="When a cold-run limit (per key per hour, per account per day) is reached, wait "
    "for it to lift instead of reporting the rest as not attempted.",
)
@click.option(
    "--cache-max-age",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="With --journal: take a score from the journal only if it was made within "
    "SECONDS (by its scored_at); an older one is asked for again. Without it the "
    "journal's scores are used whatever their age (a rerun pays nothing twice).",
)
@click.option(
    "--max-cold",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Start at most N billed cold runs in this run; the inputs past the cap are "
    "reported as not attempted (cached scores do not count).",
)
@_key_options
@click.option("-q", "--quiet", is_flag=True, help="No progress display and no summary.")
def score(
    domains: tuple[str, ...],
    files: tuple[str, ...],
    out: str | None,
    fmt: str,
    max_outstanding: int,
    deadline: float,
    journal: str | None,
    base_url: str | None,
    poll_scale: float,
    wait_for_budget: bool,
    cache_max_age: float | None,
    max_cold: int | None,
    api_key: str | None,
    api_key_file: str | None,
    quiet: bool,
) -> None:
    """Score DOMAIN... (and/or the domains of --file). The key comes from KEPLER_API_KEY.

    Rows come out as inputs finish, not in input order; each row names its input's
    line (sort on it for input order).

    Exit status: 0 all scored, 1 some failed or were not attempted, 2 usage or
    configuration error, 130 interrupted, 141 the reader of the output went away (as in
    `... | head -2`; the rest is not submitted, and a journal keeps what was).
    """
    try:
        items = read_inputs(domains, files)
        if not items:
            raise click.UsageError("give domains as arguments or with --file")
        key = _read_key(api_key, api_key_file)
        store = open_journal(journal) if journal else None
        kepler = AsyncKepler(
            key,
            base_url=base_url,
            poll_policy=KEPLER_POLICY.scaled(poll_scale),
            journal=store,
            cache_max_age=cache_max_age,
        )
        stream: IO[str] = open_output(out)
    except (InputError, ConfigurationError) as exc:
        click.echo(f"kepler-async: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    console = _stderr(quiet)
    live = console if console is not None and console.is_terminal else None

    writer = RowWriter(stream, fmt)

    async def work() -> object:
        try:
            async with kepler:
                return await run_batch(
                    kepler,
                    items,
                    writer,
                    max_outstanding=max_outstanding,
                    deadline=deadline,
                    console=live,
                    wait_for_budget=wait_for_budget,
                    max_cold_runs=max_cold,
                )
        finally:
            if store is not None:
                with anyio.move_on_after(5, shield=True):
                    await store.aclose()

    try:
        with _notices():
            tally, interrupted = anyio.run(run_interruptible, work)
    except ConfigurationError as exc:  # a journal for another API, say
        click.echo(f"kepler-async: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except JournalUnavailable as exc:  # down at the start: nothing was sent
        click.echo(f"kepler-async: {exc}; nothing was sent, try again later", err=True)
        sys.exit(EXIT_SOME_FAILED)
    except KeyboardInterrupt:
        tally, interrupted = None, True
    finally:
        if stream is not sys.stdout:
            with contextlib.suppress(BrokenPipeError):
                stream.close()
    if writer.reader_gone:
        # Quietly, as Unix tools do; stdout now points nowhere, so that Python's own
        # flush at exit does not complain about the closed pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_READER_GONE)
    if interrupted:
        hint = (
            f"run the same command again to resume from {masked_dsn(journal)}"
            if journal
            else "add --journal PATH next time to resume without paying twice"
        )
        click.echo(f"kepler-async: interrupted; {hint}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    from ._run import Tally

    assert isinstance(tally, Tally)
    if console is not None:
        print_summary(tally, console)
    if tally.errors.get("AuthenticationError"):
        given = click.get_current_context().get_parameter_source("api_key")
        came_from = (
            "--api-key-file"
            if api_key_file
            else "--api-key"
            if given is click.core.ParameterSource.COMMANDLINE
            else "$KEPLER_API_KEY"
        )
        click.echo(f"kepler-async: the API refused the key (401); check {came_from}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_OK if tally.scored == tally.total else EXIT_SOME_FAILED)


@contextlib.contextmanager
def _notices() -> Iterator[None]:
    """The library's notices (INFO and up: a journal shared with another run, writes
    that waited out an outage) on stderr, as lines of this command's own, while the
    command runs (the logger is left as it was after: tests run commands in-process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kepler-async: %(message)s"))
    library = logging.getLogger("kepler_async")
    level = library.level
    library.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        library.setLevel(logging.INFO)
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


def open_journal(where: str) -> JobStore:
    """The journal ``--journal`` names: PostgreSQL for a DSN, else a SQLite file."""
    if is_dsn(where):
        try:
            import asyncpg  # noqa: F401 (only whether it is there)
        except ImportError:
            raise ConfigurationError(
                f"--journal {masked_dsn(where)} needs the postgres extra: "
                'pip install "kepler-async[postgres]"'
            ) from None
        return PostgresJobStore(where)
    if "://" in where:
        raise ConfigurationError(
            f"--journal {masked_dsn(where).split('://')[0]}://... is not a journal: give a "
            "file path (SQLite) or a postgresql:// DSN"
        )
    return SQLiteJobStore(where)


def _read_key(api_key: str | None, api_key_file: str | None) -> str:
    """The key from --api-key-file, --api-key or $KEPLER_API_KEY, in that order."""
    if api_key_file:
        try:
            with open(api_key_file, encoding="utf-8") as handle:
                api_key = handle.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the key file {api_key_file}: {exc}") from None
    if not api_key:
        raise ConfigurationError(
            "no API key: set KEPLER_API_KEY, or pass --api-key or --api-key-file (a "
            "'ki_test_' key reaches the sandbox's four .test domains; `kepler-async "
            "simulate` prints the keys its simulator takes)"
        )
    return api_key


@main.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port; the one bound is printed).",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=0.01,
    show_default=True,
    help="Simulated seconds per real second, inverted: 0.01 makes a 60 s cold run take 0.6 s.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated runs.")
@click.option(
    "--per-key-cold-per-hour",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Cold runs one key may start per hour before a 429 (per_key_cold_1h).",
)
@click.option(
    "--per-account-cold-per-day",
    type=click.IntRange(min=0),
    default=None,
    help="Cold runs one account may start in 24 h before a 429 (account_cold_24h). "
    "Default: twice the monthly budget, as documented.",
)
@click.option(
    "--monthly-cold-budget",
    type=click.IntRange(min=0),
    default=None,
    help="Cold runs one account may start per calendar month before a 429 "
    "(cold_budget_exhausted). Default: the key's plan (unlimited for the live test key).",
)
@click.option(
    "--failure-rate",
    type=click.FloatRange(0, 1),
    default=0.075,
    show_default=True,
    help="Share of cold runs that fail, spread over the four failure reasons.",
)
def simulate(
    port: int,
    time_scale: float,
    seed: int,
    per_key_cold_per_hour: int,
    per_account_cold_per_day: int | None,
    monthly_cold_budget: int | None,
    failure_rate: float,
) -> None:
    """Serve the Kepler simulator on 127.0.0.1 until Ctrl-C (exit status 130).

    Its counters (cold runs billed, requests served) are at GET /_simulator/counters.
    """
    import uvicorn

    from kepler_async.testing import (
        FREE_KEY,
        LIVE_KEY,
        OTHER_KEY,
        SANDBOX_KEY,
        KeplerSimulator,
        create_app,
    )
    from kepler_async.testing._kepler_sim import DEFAULT_FAILURE_MIX

    total = sum(DEFAULT_FAILURE_MIX.values())
    mix = {reason: share / total * failure_rate for reason, share in DEFAULT_FAILURE_MIX.items()}
    sim = KeplerSimulator(
        seed=seed,
        time_scale=time_scale,
        failure_mix=mix,
        per_key_cold_per_hour=per_key_cold_per_hour,
        per_account_cold_per_day=per_account_cold_per_day,
        monthly_cold_budget=monthly_cold_budget,
    )

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            bound = self.servers[0].sockets[0].getsockname()[1] if self.servers else port
            url = f"http://127.0.0.1:{bound}"
            click.echo(f"Kepler simulator on {url} (time scale {time_scale:g}, seed {seed})")
            click.echo(f"  live key (enterprise): {LIVE_KEY}")
            click.echo(f"  sandbox key:           {SANDBOX_KEY}")
            click.echo(f"  another account:       {OTHER_KEY}")
            click.echo(f"  free plan:             {FREE_KEY}")
            click.echo(f"  counters:              {url}/_simulator/counters")
            click.echo("Try:")
            click.echo(
                f"  KEPLER_API_KEY={LIVE_KEY} kepler-async score --base-url {url} "
                f"--poll-scale {time_scale:g} stripe.com plaid.com",
                nl=True,
            )
            sys.stdout.flush()

    config = uvicorn.Config(
        create_app(sim), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = Announcing(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn handles it; quietly
        server.run()
    sys.exit(EXIT_INTERRUPTED)  # it only ends on Ctrl-C or SIGTERM


@main.command(short_help="Say what scoring the domains would cost, sending nothing billed.")
@_input_options
@click.option("--journal", metavar="PATH|DSN", help="The journal a `score` run would use.")
@click.option("--base-url", metavar="URL", help="The API's origin (default: the real API's).")
@click.option(
    "--check-server",
    is_flag=True,
    help="Also look up each domain the journal lacks with GET /v1/score/{domain}, to count "
    "those the API would serve cached. Each look is a metered cached call.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@_key_options
def plan(
    domains: tuple[str, ...],
    files: tuple[str, ...],
    journal: str | None,
    base_url: str | None,
    check_server: bool,
    as_json: bool,
    api_key: str | None,
    api_key_file: str | None,
) -> None:
    """Read DOMAIN... (and/or --file) as `score` would and say what scoring them would
    take: invalid and repeated inputs, the scores the journal holds and their age, how
    many billed cold runs could start at most, what GET /v1/usage (free) says is left
    this month, the plan's freshness window, and the hours the per-key limit adds.
    Nothing billed is sent.
    """
    from ._plan import dumps, plan_lines

    try:
        items = read_inputs(domains, files)
        if not items:
            raise click.UsageError("give domains as arguments or with --file")
        key = _read_key(api_key, api_key_file)
        store = open_journal(journal) if journal else None
        kepler = AsyncKepler(key, base_url=base_url, journal=store)
    except (InputError, ConfigurationError) as exc:
        click.echo(f"kepler-async: {exc}", err=True)
        sys.exit(EXIT_USAGE)

    async def work() -> Any:
        try:
            async with kepler:
                return await kepler.plan([i.raw for i in items], check_server=check_server)
        finally:
            if store is not None:
                with anyio.move_on_after(5, shield=True):
                    await store.aclose()

    try:
        with _notices():
            found = anyio.run(work)
    except KeplerError as exc:
        click.echo(f"kepler-async: {exc}", err=True)
        sys.exit(EXIT_USAGE if isinstance(exc, ConfigurationError) else EXIT_SOME_FAILED)
    if as_json:
        click.echo(dumps(found))
    else:
        for line in plan_lines(found, [(i.line, i.source) for i in items]):
            click.echo(line)


@main.command()
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
def demo(quiet: bool) -> None:
    """Score a mixed list against an in-process simulator: no key, no network."""
    from ._demo import run_demo

    sys.exit(run_demo(quiet=quiet))
