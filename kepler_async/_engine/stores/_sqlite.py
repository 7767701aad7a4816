"""``SQLiteJobStore``: the journal in one SQLite file (see ``_base`` for what it keeps).

SQLite in WAL mode: every write commits before it returns, off the event loop, in one
worker thread at a time (``PostgresJobStore`` keeps the same records for several
machines). Schema 1 files (Kepler only) are upgraded in place.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from kepler_async._exceptions import JobFailed, KeplerError

from ._base import (
    COLUMN_NAMES,
    SCHEMA_VERSION,
    JournalEntry,
    JournalError,
    JournalFull,
    JournalLocked,
    JournalUnavailable,
    check_meta,
    claimable,
    entry_from_row,
    jobs_table,
    new_owner,
)

__all__ = ["SQLiteJobStore"]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{jobs_table("jobs", postgres=False)};
"""

#: Schema 1 kept Kepler's words: ``domain`` for the key, ``score``, state ``scored``.
_FROM_SCHEMA_1 = """
ALTER TABLE jobs RENAME TO jobs_v1;
{schema}
INSERT INTO jobs (api, key, subject, job_id, state, submitted_at, finished_at, result,
                  error_class, error_message, failure_reason, retryable)
    SELECT api, domain, CASE WHEN api = 'kepler' THEN domain END, job_id,
           CASE WHEN state = 'scored' THEN 'done' ELSE state END, submitted_at,
           finished_at, score, error_class, error_message, failure_reason, retryable
    FROM jobs_v1;
DROP TABLE jobs_v1;
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"""


def _sqlite_error(path: Path, exc: sqlite3.DatabaseError) -> KeplerError:
    """The error of our tree for a failed statement (``from`` the original)."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return JournalLocked(f"journal {path} stayed locked by another process: {exc}")
    if "full" in text:
        return JournalFull(f"journal {path}: the disk is full ({exc})")
    if isinstance(exc, sqlite3.OperationalError) and "disk i/o" in text:
        return JournalUnavailable(f"journal {path}: {exc}")
    return JournalError(f"journal {path}: {exc}")


class SQLiteJobStore:
    """A journal of jobs in one SQLite file: ``AsyncKepler(journal=SQLiteJobStore(path))``
    (every client takes ``journal=``)."""

    def __init__(self, path: str | Path, *, threaded: bool = True) -> None:
        """``threaded=False`` runs statements on the event loop's thread: for tests on a
        fake clock (a fake clock may jump ahead while a thread works)."""
        self._path = Path(path)
        self._threaded = threaded
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one statement at a time, whatever the thread
        self._bound: tuple[str, str] | None = None
        #: This store's identity in claims (``host/pid/nonce``).
        self.owner = new_owner()

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"<SQLiteJobStore {str(self._path)!r}>"

    # --- opening ------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                # Readable by its owner only; SQLite gives its -wal and -shm files the
                # same mode. A file that exists keeps the mode it has.
                os.close(os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600))
                conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise JournalFull(f"journal {self._path}: the disk is full ({exc})") from exc
                raise JournalError(f"journal {self._path} cannot be opened: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise JournalError(
                    f"{self._path} is not a usable journal ({exc}); it was left untouched"
                ) from None
            self._conn = conn
        return self._conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._open()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise _sqlite_error(self._path, exc) from exc

    async def _call(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self._threaded:
            return self._run(sql, params)
        # A statement stuck on a hung disk must not hold up a bounded close: the wait
        # for it can be given up (the statement finishes, or not, in its thread).
        return await anyio.to_thread.run_sync(self._run, sql, params, abandon_on_cancel=True)

    def _bind_sync(self, base_url: str, fingerprint: str) -> None:
        with self._lock:
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                    if rows:  # refuse another API, key or a newer schema before any write
                        self._check(rows, base_url, fingerprint)
                    else:
                        conn.executemany(
                            "INSERT INTO meta (key, value) VALUES (?, ?)",
                            [
                                ("schema_version", str(SCHEMA_VERSION)),
                                ("base_url", base_url),
                                ("key_fingerprint", fingerprint),
                                ("created_at", str(time.time())),
                            ],
                        )
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
                if rows.get("schema_version") == "1":
                    conn.executescript(
                        "BEGIN IMMEDIATE;\n" + _FROM_SCHEMA_1.format(schema=_SCHEMA) + "COMMIT;"
                    )
            except sqlite3.DatabaseError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                error = _sqlite_error(self._path, exc)
                if isinstance(error, JournalUnavailable):  # locked, full: of the moment
                    raise error from exc
                raise JournalError(
                    f"{self._path} is not a usable journal ({exc}); it was left untouched"
                ) from None

    def _check(self, meta: dict[str, str], base_url: str, fingerprint: str) -> None:
        check_meta(meta, base_url, fingerprint, where=str(self._path))

    async def bind(self, *, base_url: str, fingerprint: str) -> None:
        """Claim the journal for this API and key (by ``key_fingerprint``), or refuse one
        made for others."""
        target = (base_url, fingerprint)
        if self._bound == target:
            return
        if self._threaded:
            await anyio.to_thread.run_sync(self._bind_sync, *target)
        else:
            self._bind_sync(*target)
        self._bound = target

    async def aclose(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- reading ------------------------------------------------------------------------

    async def get(self, api: str, key: str) -> JournalEntry | None:
        """The entry for ``key`` of ``api``, if the journal has one."""
        rows = await self._call(
            f"SELECT {COLUMN_NAMES} FROM jobs WHERE api = ? AND key = ?", (api, key)
        )
        return entry_from_row(rows[0]) if rows else None

    async def entries(self) -> list[JournalEntry]:
        """Every entry, ordered by API and key."""
        rows = await self._call(f"SELECT {COLUMN_NAMES} FROM jobs ORDER BY api, key")
        return [entry_from_row(row) for row in rows]

    # --- writing ------------------------------------------------------------------------

    async def record_submitted(
        self, api: str, key: str, job_id: str, *, subject: str | None = None
    ) -> None:
        """An answer named ``job_id`` for ``key``: written before the client acts on it."""
        await self._call(
            "INSERT INTO jobs (api, key, subject, job_id, state, submitted_at) "
            "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT (api, key) DO UPDATE SET "
            "subject = COALESCE(excluded.subject, jobs.subject), job_id = excluded.job_id, "
            "state = 'pending', submitted_at = excluded.submitted_at, finished_at = NULL, "
            "result = NULL, error_class = NULL, error_message = NULL, "
            "failure_reason = NULL, retryable = 0",
            (api, key, subject, job_id, time.time()),
        )

    async def record_uncertain(self, api: str, key: str, *, subject: str | None = None) -> None:
        """A submit for ``key`` may have started a job whose id never arrived (its
        claim, if any, ends: the submit is in doubt for everyone now)."""
        await self._call(
            "INSERT INTO jobs (api, key, subject, state, submitted_at) "
            "VALUES (?, ?, ?, 'uncertain', ?) ON CONFLICT (api, key) DO UPDATE SET "
            "state = 'uncertain', submitted_at = excluded.submitted_at, lease_until = NULL "
            "WHERE jobs.state != 'done'",
            (api, key, subject, time.time()),
        )

    def _claim_sync(
        self,
        api: str,
        key: str,
        subject: str | None,
        lease: float,
        take_over: bool,
        stale_done: float | None = None,
    ) -> tuple[bool, JournalEntry | None]:
        with self._lock:
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")  # one claimant at a time, across processes
                try:
                    rows = conn.execute(
                        f"SELECT {COLUMN_NAMES} FROM jobs WHERE api = ? AND key = ?", (api, key)
                    ).fetchall()
                    entry = entry_from_row(rows[0]) if rows else None
                    now = time.time()
                    if not claimable(
                        entry, self.owner, now, take_over=take_over, stale_done=stale_done
                    ):
                        return False, entry
                    conn.execute(
                        "INSERT INTO jobs (api, key, subject, state, submitted_at, owner, "
                        "lease_until) VALUES (?, ?, ?, 'claimed', ?, ?, ?) "
                        "ON CONFLICT (api, key) DO UPDATE SET state = 'claimed', "
                        "subject = COALESCE(excluded.subject, jobs.subject), job_id = NULL, "
                        "submitted_at = excluded.submitted_at, owner = excluded.owner, "
                        "lease_until = excluded.lease_until, finished_at = NULL, "
                        "result = NULL, error_class = NULL, error_message = NULL, "
                        "failure_reason = NULL, retryable = 0",
                        (api, key, subject, now, self.owner, now + lease),
                    )
                    return True, entry
                finally:
                    conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _sqlite_error(self._path, exc) from exc

    async def claim(
        self,
        api: str,
        key: str,
        *,
        subject: str | None,
        lease: float,
        take_over: bool = False,
        stale_done: float | None = None,
    ) -> tuple[bool, JournalEntry | None]:
        """Claim the submit of ``key`` for this process, atomically across processes.

        True (and the intent written, held for ``lease`` seconds) when the key is
        free: never submitted, or its job failed in a retryable way (or, with
        ``take_over``, its submit is in doubt and nobody holds it; with
        ``stale_done``, it holds the done result finished then, too old to serve).
        Otherwise False and what the journal holds (the caller replays, waits, or
        applies the in-doubt rule).
        """
        args = (api, key, subject, lease, take_over, stale_done)
        if not self._threaded:
            return self._claim_sync(*args)
        return await anyio.to_thread.run_sync(self._claim_sync, *args, abandon_on_cancel=True)

    async def forget_intent(self, api: str, key: str) -> None:
        """A claimed submit was refused for sure, or never sent: nothing started. Only
        this store's own claim (or an unowned row) goes: written late, after an outage,
        it must not undo another process's newer claim."""
        await self._call(
            "DELETE FROM jobs WHERE api = ? AND key = ? AND state IN ('claimed', 'uncertain') "
            "AND (owner IS NULL OR owner = ?)",
            (api, key, self.owner),
        )

    async def record_sending(self, api: str, key: str) -> None:
        """The claimed submit of ``key`` is being sent now: from here on, a crash leaves
        it in doubt (the claim holds until its lease ends)."""
        await self._call(
            "UPDATE jobs SET state = 'uncertain', submitted_at = ? "
            "WHERE api = ? AND key = ? AND state = 'claimed'",
            (time.time(), api, key),
        )

    async def record_done(self, api: str, key: str, job_id: str | None, result: object) -> None:
        """A job's result (JSON data) for ``key``."""
        await self._call(
            "INSERT INTO jobs (api, key, job_id, state, finished_at, result) "
            "VALUES (?, ?, ?, 'done', ?, ?) ON CONFLICT (api, key) DO UPDATE SET "
            "job_id = COALESCE(excluded.job_id, jobs.job_id), state = 'done', "
            "finished_at = excluded.finished_at, result = excluded.result",
            (api, key, job_id, time.time(), json.dumps(result)),
        )

    async def record_failed(
        self, api: str, key: str, job_id: str | None, error: KeplerError
    ) -> None:
        """A job's failure for ``key`` (class, message, reason, whether retryable)."""
        reason = error.failure_reason if isinstance(error, JobFailed) else None
        retryable = bool(getattr(error, "retryable", False))
        await self._call(
            "INSERT INTO jobs (api, key, job_id, state, finished_at, error_class, "
            "error_message, failure_reason, retryable) VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?) "
            "ON CONFLICT (api, key) DO UPDATE SET job_id = COALESCE(excluded.job_id, "
            "jobs.job_id), state = 'failed', finished_at = excluded.finished_at, "
            "error_class = excluded.error_class, error_message = excluded.error_message, "
            "failure_reason = excluded.failure_reason, retryable = excluded.retryable",
            (
                api,
                key,
                job_id,
                time.time(),
                type(error).__name__,
                error.message,
                reason,
                retryable,
            ),
        )
