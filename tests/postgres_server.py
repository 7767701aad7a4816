"""A real PostgreSQL server for the tests: initdb in a temporary directory, started on a
free port on 127.0.0.1, stopped afterwards. Never a mock of the database."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Unavailable(Exception):
    """No PostgreSQL server can be started here (the reason says why)."""


class PostgresServer:
    """A running throwaway server: its DSN, and the ways tests break it."""

    def __init__(self, pg_ctl: str, data: Path, options: str, log: str, run_as: list[str]):
        self._pg_ctl = pg_ctl
        self._data = data
        self._options = options
        self._log = log
        self._run_as = run_as
        self.dsn = ""

    def start(self) -> None:
        subprocess.run(
            [
                *(*self._run_as, self._pg_ctl, "-D", str(self._data), "-o", self._options),
                *("-l", self._log, "-w", "start"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash (no clean shutdown); ``fast`` a clean restart."""
        subprocess.run(
            [*self._run_as, self._pg_ctl, "-D", str(self._data), "-m", mode, "-w", "stop"],
            check=True,
            capture_output=True,
            timeout=60,
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway server; yield it (``.dsn``: ``postgresql://postgres@127.0.0.1:PORT/postgres``)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    run_as: list[str] = []
    root = tempfile.mkdtemp(prefix="kepler-pg-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:  # the server refuses to run as root: use the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user") from None
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = Path(root) / "data"
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    server = PostgresServer(pg_ctl, data, options, f"{root}/log", run_as)
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        server.start()
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable(f"the PostgreSQL server did not start: {exc}") from None
    server.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
