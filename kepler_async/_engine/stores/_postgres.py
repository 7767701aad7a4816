"""``PostgresJobStore``: the journal in PostgreSQL, for services on several machines.

The same records and the same claims as ``SQLiteJobStore`` (see ``_base``), in two
tables of a database every machine reaches. A claim is a row taken inside a
transaction (``INSERT ... ON CONFLICT DO NOTHING``, then ``SELECT ... FOR UPDATE``), so
two machines never both submit a key. It needs the ``postgres`` extra (asyncpg):
``pip install "kepler-async[postgres]"``.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

from kepler_async._exceptions import ConfigurationError, JobFailed, KeplerError

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

#: How long opening a connection may take before the journal counts as unavailable.
CONNECT_TIMEOUT = 5.0
#: How long one statement may take (a server that hangs is an outage, not a wait).
STATEMENT_TIMEOUT = 10.0

#: SQLSTATE classes of the moment: connection lost, too many connections or out of
#: memory, a server shutting down or restarting, an I/O error, a serialization
#: failure or deadlock. Anything else the server says is about the journal itself
#: (a bad password, no such database, a table of another shape): a configuration error.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")

__all__ = ["PostgresJobStore", "is_dsn", "masked_dsn"]


def _where(dsn: str) -> str:
    """``host:port/database`` of a DSN, for messages: never the user or password."""
    parts = urllib.parse.urlsplit(dsn)
    host = parts.hostname or "localhost"
    port: int | str
    try:
        port = parts.port or 5432
    except ValueError:  # not a number: say so rather than echo it
        port = "?"
    return f"{host}:{port}{parts.path or ''}"


def is_dsn(where: str) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return where.startswith(("postgresql://", "postgres://"))


def masked_dsn(where: str) -> str:
    """``where`` fit to print: a DSN's password (in the URL or as a ``password=``
    query parameter) replaced by ``***``; anything else as it is."""
    if not is_dsn(where):
        return where
    parts = urllib.parse.urlsplit(where)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = "&".join(
        f"{name}=***" if name.lower() == "password" else f"{name}={value}" if value else name
        for name, _, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def journal_error(exc: Exception, where: str) -> KeplerError:
    """Our error for what asyncpg (or the socket under it) raised: ``JournalUnavailable``
    (or ``JournalLocked``/``JournalFull``) for an outage, ``JournalError`` for a journal
    that cannot work as configured. The caller chains ``exc`` as the cause."""
    import asyncpg

    name = type(exc).__name__
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        text = f"journal {where}: {exc.args[0] if exc.args else name} ({name}, {state})"
        if state == "53100":
            return JournalFull(text)
        if state == "55P03":
            return JournalLocked(text)
        if state.startswith(_TRANSIENT_CLASSES):
            return JournalUnavailable(text)
        return JournalError(text)
    if isinstance(exc, (asyncpg.ClientConfigurationError, asyncpg.DataError)):
        return JournalError(f"journal {where}: {name}")
    # Refused or dropped connections, timeouts, a connection closed in the middle of
    # an operation or left in a state it cannot leave: all of the moment.
    return JournalUnavailable(f"journal {where} is unavailable ({name})")


class PostgresJobStore:
    """A journal of jobs in PostgreSQL: ``AsyncKepler(journal=PostgresJobStore(dsn))``.

    ``dsn`` is a ``postgresql://`` URL; ``prefix`` names the tables
    (``{prefix}jobs``, ``{prefix}meta``), so several journals can share a database.
    The connection opens on first use (``async with`` of the client). A server that
    cannot be reached, or that goes away, raises ``JournalUnavailable`` naming its
    host and port (never the password), and the store reconnects on its next use; a
    bad password, a missing database or a journal of another API or key raises
    ``JournalError``. Needs asyncio (asyncpg does not run on trio).
    """

    def __init__(self, dsn: str, *, prefix: str = "kepler_async_") -> None:
        if not isinstance(dsn, str) or not is_dsn(dsn):
            raise ConfigurationError("dsn must be a postgresql:// URL")
        if not prefix.replace("_", "").isalnum():
            raise ConfigurationError(f"prefix must be letters, digits and '_', got {prefix!r}")
        self._dsn = dsn
        self._jobs = f"{prefix}jobs"
        self._meta = f"{prefix}meta"
        self._pool: Any = None
        self._schema_ready = False
        self._bound: tuple[str, str] | None = None
        #: This store's identity in claims (``host/pid/nonce``).
        self.owner = new_owner()

    def __repr__(self) -> str:
        return f"<PostgresJobStore {_where(self._dsn)}>"

    # --- opening ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Every failure of the database or the way to it, as our error (cause chained)."""
        try:
            yield
        except KeplerError:
            raise
        except Exception as exc:
            raise journal_error(exc, _where(self._dsn)) from exc

    async def _connect(self) -> Any:
        """The pool, with the journal's tables made (both retried on the next use if
        the server cannot be reached now)."""
        if self._pool is None:
            try:
                import asyncpg
            except ImportError:  # pragma: no cover - the extra is missing
                raise ConfigurationError(
                    'PostgresJobStore needs asyncpg: pip install "kepler-async[postgres]"'
                ) from None
            async with self._errors():
                # No floor of idle connections: a pool with one keeps reconnecting in
                # the background while the server is down, logging each failure.
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=4,
                    timeout=CONNECT_TIMEOUT,
                    command_timeout=STATEMENT_TIMEOUT,
                )
        if not self._schema_ready:
            async with self._errors(), self._pool.acquire() as conn, conn.transaction():
                # Several processes start at once (uvicorn --workers): PostgreSQL's
                # CREATE TABLE IF NOT EXISTS is not safe against itself, so one at a time.
                await conn.execute("SELECT pg_advisory_xact_lock(7275727)")
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._meta} "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                    + jobs_table(self._jobs, postgres=True)
                )
            self._schema_ready = True
        return self._pool

    async def bind(self, *, base_url: str, fingerprint: str) -> None:
        """Claim the journal for this API and key, or refuse one made for others."""
        if self._bound == (base_url, fingerprint):
            return
        pool = await self._connect()
        async with self._errors(), pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self._meta} (key, value) VALUES "
                "('schema_version', $1), ('base_url', $2), ('key_fingerprint', $3), "
                "('created_at', $4) ON CONFLICT (key) DO NOTHING",
                str(SCHEMA_VERSION),
                base_url,
                fingerprint,
                str(time.time()),
            )
            rows = await conn.fetch(f"SELECT key, value FROM {self._meta}")
        check_meta({r["key"]: r["value"] for r in rows}, base_url, fingerprint, where=repr(self))
        self._bound = (base_url, fingerprint)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        self._schema_ready = False
        if pool is not None:
            try:
                await pool.close()
            except Exception:  # a server that is gone: the sockets are dropped anyway
                pool.terminate()

    # --- reading ------------------------------------------------------------------------

    async def _run(self, sql: str, *args: Any) -> list[Any]:
        pool = await self._connect()
        async with self._errors(), pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def get(self, api: str, key: str) -> JournalEntry | None:
        rows = await self._run(
            f"SELECT {COLUMN_NAMES} FROM {self._jobs} WHERE api = $1 AND key = $2", api, key
        )
        return entry_from_row(rows[0]) if rows else None

    async def entries(self) -> list[JournalEntry]:
        rows = await self._run(f"SELECT {COLUMN_NAMES} FROM {self._jobs} ORDER BY api, key")
        return [entry_from_row(row) for row in rows]

    # --- claims and writes --------------------------------------------------------------

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
        """As ``SQLiteJobStore.claim``: atomic across every machine on the database."""
        pool = await self._connect()
        now = time.time()
        async with self._errors(), pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetch(
                f"INSERT INTO {self._jobs} (api, key, subject, state, submitted_at, owner, "
                "lease_until) VALUES ($1, $2, $3, 'claimed', $4, $5, $6) "
                "ON CONFLICT (api, key) DO NOTHING RETURNING key",
                api,
                key,
                subject,
                now,
                self.owner,
                now + lease,
            )
            if inserted:
                return True, None
            rows = await conn.fetch(
                f"SELECT {COLUMN_NAMES} FROM {self._jobs} WHERE api = $1 AND key = $2 FOR UPDATE",
                api,
                key,
            )
            entry = entry_from_row(rows[0])
            if not claimable(entry, self.owner, now, take_over=take_over, stale_done=stale_done):
                return False, entry
            await conn.execute(
                f"UPDATE {self._jobs} SET state = 'claimed', "
                "subject = COALESCE($3, subject), job_id = NULL, submitted_at = $4, "
                "owner = $5, lease_until = $6, finished_at = NULL, result = NULL, "
                "error_class = NULL, error_message = NULL, failure_reason = NULL, "
                "retryable = FALSE WHERE api = $1 AND key = $2",
                api,
                key,
                subject,
                now,
                self.owner,
                now + lease,
            )
            return True, entry

    async def record_submitted(
        self, api: str, key: str, job_id: str, *, subject: str | None = None
    ) -> None:
        await self._run(
            f"INSERT INTO {self._jobs} AS j (api, key, subject, job_id, state, submitted_at) "
            "VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (api, key) DO UPDATE SET "
            "subject = COALESCE(excluded.subject, j.subject), job_id = excluded.job_id, "
            "state = 'pending', submitted_at = excluded.submitted_at, finished_at = NULL, "
            "result = NULL, error_class = NULL, error_message = NULL, "
            "failure_reason = NULL, retryable = FALSE",
            api,
            key,
            subject,
            job_id,
            time.time(),
        )

    async def record_uncertain(self, api: str, key: str, *, subject: str | None = None) -> None:
        await self._run(
            f"INSERT INTO {self._jobs} AS j (api, key, subject, state, submitted_at) "
            "VALUES ($1, $2, $3, 'uncertain', $4) ON CONFLICT (api, key) DO UPDATE SET "
            "state = 'uncertain', submitted_at = excluded.submitted_at, lease_until = NULL "
            "WHERE j.state != 'done'",
            api,
            key,
            subject,
            time.time(),
        )

    async def forget_intent(self, api: str, key: str) -> None:
        await self._run(
            f"DELETE FROM {self._jobs} WHERE api = $1 AND key = $2 "
            "AND state IN ('claimed', 'uncertain') AND (owner IS NULL OR owner = $3)",
            api,
            key,
            self.owner,
        )

    async def record_sending(self, api: str, key: str) -> None:
        await self._run(
            f"UPDATE {self._jobs} SET state = 'uncertain', submitted_at = $1 "
            "WHERE api = $2 AND key = $3 AND state = 'claimed'",
            time.time(),
            api,
            key,
        )

    async def record_done(self, api: str, key: str, job_id: str | None, result: object) -> None:
        await self._run(
            f"INSERT INTO {self._jobs} AS j (api, key, job_id, state, finished_at, result) "
            "VALUES ($1, $2, $3, 'done', $4, $5) ON CONFLICT (api, key) DO UPDATE SET "
            "job_id = COALESCE(excluded.job_id, j.job_id), state = 'done', "
            "finished_at = excluded.finished_at, result = excluded.result",
            api,
            key,
            job_id,
            time.time(),
            json.dumps(result),
        )

    async def record_failed(
        self, api: str, key: str, job_id: str | None, error: KeplerError
    ) -> None:
        reason = error.failure_reason if isinstance(error, JobFailed) else None
        await self._run(
            f"INSERT INTO {self._jobs} AS j (api, key, job_id, state, finished_at, "
            "error_class, error_message, failure_reason, retryable) "
            "VALUES ($1, $2, $3, 'failed', $4, $5, $6, $7, $8) "
            "ON CONFLICT (api, key) DO UPDATE SET job_id = COALESCE(excluded.job_id, "
            "j.job_id), state = 'failed', finished_at = excluded.finished_at, "
            "error_class = excluded.error_class, error_message = excluded.error_message, "
            "failure_reason = excluded.failure_reason, retryable = excluded.retryable",
            api,
            key,
            job_id,
            time.time(),
            type(error).__name__,
            error.message,
            reason,
            bool(getattr(error, "retryable", False)),
        )
