"""A durable record of submitted jobs, so a batch that crashes never pays twice.

``SQLiteJobStore`` keeps, per domain: the job id as soon as a 202 names it (before the
client acts on it), and the job's end (the score, or the failure). A client given a
journal serves scored domains from it, resumes pending jobs instead of POSTing again,
and submits only domains it never submitted (or whose job failed in a retryable way).

The file is SQLite in WAL mode; every write commits before it returns, off the event
loop, in one worker thread at a time. A journal remembers the base URL and a
fingerprint of the API key it was made with (never the key) and refuses any other.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import attrs

from kepler_async._exceptions import ConfigurationError, JobFailed, KeplerError
from kepler_async._kepler._models import Score
from kepler_async._serde import converter, decode

__all__ = ["JournalEntry", "JournalError", "SQLiteJobStore", "key_fingerprint"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    api TEXT NOT NULL DEFAULT 'kepler',
    domain TEXT NOT NULL,
    job_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'scored', 'failed', 'uncertain')),
    submitted_at REAL,
    finished_at REAL,
    score TEXT,
    error_class TEXT,
    error_message TEXT,
    failure_reason TEXT,
    retryable INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (api, domain)
);
"""

#: ``uncertain``: a submit may have reached the API but its answer was lost.
State = Literal["pending", "scored", "failed", "uncertain"]


class JournalError(ConfigurationError):
    """The journal file cannot be used: corrupt, newer, or made for another API or key."""


def key_fingerprint(api_key: str) -> str:
    """A short, one-way fingerprint of an API key (the key itself is never stored)."""
    return hashlib.sha256(b"kepler-async journal\0" + api_key.encode()).hexdigest()[:16]


@attrs.frozen(kw_only=True)
class JournalEntry:
    """What the journal knows about one job's subject.

    ``domain`` is the subject's key: the domain for Kepler, the caller's
    ``journal_key`` for the other APIs (``api`` names which).
    """

    domain: str
    state: State
    job_id: str | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    score: Score | None = None
    error_class: str | None = None
    error_message: str | None = None
    failure_reason: str | None = None
    retryable: bool = False
    api: str = "kepler"
    #: The stored result as JSON data (decoded into ``score`` for Kepler).
    result: object = None


class SQLiteJobStore:
    """A journal of jobs in one SQLite file. Use with ``AsyncKepler(journal=...)``."""

    def __init__(self, path: str | Path, *, threaded: bool = True) -> None:
        """``threaded=False`` runs statements on the event loop's thread: for tests on a
        fake clock (a fake clock may jump ahead while a thread works)."""
        self._path = Path(path)
        self._threaded = threaded
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one statement at a time, whatever the thread
        self._bound: tuple[str, str] | None = None

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"<SQLiteJobStore {str(self._path)!r}>"

    # --- opening ------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
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
                raise JournalError(f"journal {self._path}: {exc}") from exc

    async def _call(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self._threaded:
            return self._run(sql, params)
        return await anyio.to_thread.run_sync(self._run, sql, params)

    def _bind_sync(self, base_url: str, fingerprint: str) -> None:
        with self._lock:
            conn = self._open()
            try:
                conn.execute("BEGIN IMMEDIATE")
                rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if not rows:
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [
                            ("schema_version", str(SCHEMA_VERSION)),
                            ("base_url", base_url),
                            ("key_fingerprint", fingerprint),
                            ("created_at", str(time.time())),
                        ],
                    )
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise JournalError(
                    f"{self._path} is not a usable journal ({exc}); it was left untouched"
                ) from None
        if rows:
            self._check(rows, base_url, fingerprint)

    def _check(self, meta: dict[str, str], base_url: str, fingerprint: str) -> None:
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise JournalError(f"{self._path}: no schema version; not a journal of ours") from None
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"{self._path} was written by a newer kepler-async (schema {version}, "
                f"this one reads {SCHEMA_VERSION}); upgrade instead of overwriting it"
            )
        if meta.get("base_url") != base_url:
            raise JournalError(
                f"{self._path} was made for {meta.get('base_url')!r}, not {base_url!r}; "
                "use another journal file for another API"
            )
        if meta.get("key_fingerprint") != fingerprint:
            raise JournalError(
                f"{self._path} was made with another API key; jobs are bound to the key "
                "that created them, so use another journal file"
            )

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

    _COLUMNS = (
        "domain, job_id, state, submitted_at, finished_at, score, error_class, "
        "error_message, failure_reason, retryable, api"
    )

    def _entry(self, row: tuple[Any, ...]) -> JournalEntry:
        score = None
        result = json.loads(row[5]) if row[5] else None
        if result is not None and row[10] == "kepler":
            score = decode(Score, result, what=f"journal score of {row[0]}")
        return JournalEntry(
            domain=row[0],
            job_id=row[1],
            state=row[2],
            submitted_at=row[3],
            finished_at=row[4],
            score=score,
            error_class=row[6],
            error_message=row[7],
            failure_reason=row[8],
            retryable=bool(row[9]),
            api=row[10],
            result=result,
        )

    async def get(self, domain: str, *, api: str = "kepler") -> JournalEntry | None:
        rows = await self._call(
            f"SELECT {self._COLUMNS} FROM jobs WHERE api = ? AND domain = ?", (api, domain)
        )
        return self._entry(rows[0]) if rows else None

    async def entries(self) -> list[JournalEntry]:
        rows = await self._call(f"SELECT {self._COLUMNS} FROM jobs ORDER BY api, domain")
        return [self._entry(row) for row in rows]

    # --- writing ------------------------------------------------------------------------

    async def record_submitted(self, domain: str, job_id: str, *, api: str = "kepler") -> None:
        """A 202 named ``job_id`` for ``domain``: written before the client acts on it."""
        await self._call(
            "INSERT INTO jobs (api, domain, job_id, state, submitted_at) "
            "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (api, domain) DO UPDATE SET "
            "job_id = excluded.job_id, state = 'pending', "
            "submitted_at = excluded.submitted_at, finished_at = NULL, score = NULL, "
            "error_class = NULL, error_message = NULL, failure_reason = NULL, retryable = 0",
            (api, domain, job_id, time.time()),
        )

    async def record_uncertain(self, domain: str, *, api: str = "kepler") -> None:
        """A submit for ``domain`` may have started a job whose id never arrived."""
        await self._call(
            "INSERT INTO jobs (api, domain, state, submitted_at) VALUES (?, ?, 'uncertain', ?) "
            "ON CONFLICT (api, domain) DO UPDATE SET state = 'uncertain', "
            "submitted_at = excluded.submitted_at WHERE jobs.state != 'scored'",
            (api, domain, time.time()),
        )

    async def record_scored(self, domain: str, job_id: str | None, score: Score) -> None:
        """A Kepler score for ``domain``."""
        await self.record_done(domain, job_id, converter.unstructure(score))

    async def record_done(
        self, domain: str, job_id: str | None, result: object, *, api: str = "kepler"
    ) -> None:
        """A job's result (JSON data) for ``domain``."""
        await self._call(
            "INSERT INTO jobs (api, domain, job_id, state, finished_at, score) "
            "VALUES (?, ?, ?, 'scored', ?, ?) ON CONFLICT (api, domain) DO UPDATE SET "
            "job_id = COALESCE(excluded.job_id, jobs.job_id), state = 'scored', "
            "finished_at = excluded.finished_at, score = excluded.score",
            (api, domain, job_id, time.time(), json.dumps(result)),
        )

    async def record_failed(
        self, domain: str, job_id: str | None, error: KeplerError, *, api: str = "kepler"
    ) -> None:
        reason = error.failure_reason if isinstance(error, JobFailed) else None
        retryable = bool(getattr(error, "retryable", False))
        await self._call(
            "INSERT INTO jobs (api, domain, job_id, state, finished_at, error_class, "
            "error_message, failure_reason, retryable) VALUES (?, ?, ?, 'failed', ?, ?, ?, ?, ?) "
            "ON CONFLICT (api, domain) DO UPDATE SET job_id = COALESCE(excluded.job_id, "
            "jobs.job_id), state = 'failed', finished_at = excluded.finished_at, "
            "error_class = excluded.error_class, error_message = excluded.error_message, "
            "failure_reason = excluded.failure_reason, retryable = excluded.retryable",
            (
                api,
                domain,
                job_id,
                time.time(),
                type(error).__name__,
                error.message,
                reason,
                retryable,
            ),
        )
