"""What every journal store shares: its errors, its entries, its columns, its contract.

A journal keeps one row per (API, key): the key is what the client journals a
submission under (Kepler: the domain; the other APIs: the caller's ``journal_key``).
It records the job id as soon as an answer names it (before the client acts on it),
a submit whose answer was lost (``uncertain``: *in doubt*), and the job's end (its
result as JSON data, or its failure). A client given a journal serves finished keys
from it, resumes pending jobs instead of submitting again, and submits only keys it
never submitted (or whose job failed in a retryable way). A journal remembers the
base URL and a fingerprint of the API key it was made with (never the key) and
refuses any other.

Any object with the methods of ``JobStore`` is a store; two are built in
(``SQLiteJobStore``, ``PostgresJobStore``). The columns are one table (``COLUMNS``):
both stores build their SQL from it, so a new column is one edit here (and a schema
version).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from kepler_async._exceptions import ConfigurationError, KeplerError

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "SCHEMA_VERSION",
    "JobStore",
    "JournalEntry",
    "JournalError",
    "JournalFull",
    "JournalLocked",
    "JournalUnavailable",
    "check_meta",
    "claimable",
    "entry_from_row",
    "jobs_table",
    "key_fingerprint",
    "new_owner",
    "owner_alive",
]

SCHEMA_VERSION = 2

_STATES = "state IN ('claimed', 'pending', 'done', 'failed', 'uncertain')"

#: The journal's columns, in order: (name, SQLite type, PostgreSQL type).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("api", "TEXT NOT NULL", "TEXT NOT NULL"),
    ("key", "TEXT NOT NULL", "TEXT NOT NULL"),
    ("subject", "TEXT", "TEXT"),
    ("job_id", "TEXT", "TEXT"),
    ("state", f"TEXT NOT NULL CHECK ({_STATES})", f"TEXT NOT NULL CHECK ({_STATES})"),
    ("submitted_at", "REAL", "DOUBLE PRECISION"),
    ("finished_at", "REAL", "DOUBLE PRECISION"),
    ("result", "TEXT", "TEXT"),
    ("error_class", "TEXT", "TEXT"),
    ("error_message", "TEXT", "TEXT"),
    ("failure_reason", "TEXT", "TEXT"),
    ("retryable", "INTEGER NOT NULL DEFAULT 0", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("owner", "TEXT", "TEXT"),
    ("lease_until", "REAL", "DOUBLE PRECISION"),
)
#: ``SELECT {COLUMN_NAMES}`` reads rows that ``entry_from_row`` understands.
COLUMN_NAMES = ", ".join(name for name, _, _ in COLUMNS)


def jobs_table(table: str, *, postgres: bool) -> str:
    """The ``CREATE TABLE`` of the jobs table, in SQLite's or PostgreSQL's types."""
    columns = ", ".join(f"{name} {pg if postgres else lite}" for name, lite, pg in COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {table} ({columns}, PRIMARY KEY (api, key))"


def entry_from_row(row: Sequence[Any]) -> JournalEntry:
    """The entry of a row read as ``SELECT {COLUMN_NAMES}`` (by position)."""
    values = dict(zip((name for name, _, _ in COLUMNS), row, strict=True))
    values["result"] = json.loads(values["result"]) if values["result"] else None
    values["retryable"] = bool(values["retryable"])
    return JournalEntry(**values)


#: ``claimed``: a process will submit the key (nothing sent yet); ``uncertain``: a
#: submit was sent and may have reached the API, but no answer is on record.
State = Literal["claimed", "pending", "done", "failed", "uncertain"]


class JournalError(ConfigurationError):
    """The journal cannot be used as configured: a corrupt or newer file, a journal made
    for another API or key, a bad DSN or password, a missing database."""


class JournalUnavailable(KeplerError):
    """The journal could not be read or written just now (an outage, not a configuration
    error): a database that is down or restarting, a dropped connection, a lock held too
    long, a full disk. Nothing billed was sent for a submit that fails with it; trying
    again once the journal is back is safe."""


class JournalLocked(JournalUnavailable):
    """Another process held the journal's lock longer than the busy timeout."""


class JournalFull(JournalUnavailable):
    """The disk (or database) holding the journal is full."""


def key_fingerprint(api_key: str) -> str:
    """A short, one-way fingerprint of an API key (the key itself is never stored)."""
    return hashlib.sha256(b"kepler-async journal\0" + api_key.encode()).hexdigest()[:16]


@attrs.frozen(kw_only=True)
class JournalEntry:
    """What the journal knows about one key of one API."""

    api: str
    key: str
    state: State
    subject: str | None = None
    job_id: str | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    #: The job's result as JSON data (the client decodes it into its result type).
    result: object = None
    error_class: str | None = None
    error_message: str | None = None
    failure_reason: str | None = None
    retryable: bool = False
    #: Who wrote an ``uncertain`` row (``host/pid/nonce``) and until when its claim
    #: holds: while it does, that process is submitting the key and others wait.
    owner: str | None = None
    lease_until: float | None = None

    def claim_is_live(self, now: float) -> bool:
        """True while another process's submit of this key may still be answered."""
        return (
            self.state in ("claimed", "uncertain")
            and self.lease_until is not None
            and self.lease_until > now
            and owner_alive(self.owner)
        )


def check_meta(meta: dict[str, str], base_url: str, fingerprint: str, *, where: str) -> None:
    """Refuse a journal of a newer schema, another API (base URL) or another key."""
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise JournalError(f"{where}: no schema version; not a journal of ours") from None
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{where} was written by a newer kepler-async (schema {version}, "
            f"this one reads {SCHEMA_VERSION}); upgrade instead of overwriting it"
        )
    if meta.get("base_url") != base_url:
        raise JournalError(
            f"{where} was made for {meta.get('base_url')!r}, not {base_url!r}; "
            "use another journal for another API"
        )
    if meta.get("key_fingerprint") != fingerprint:
        raise JournalError(
            f"{where} was made with another API key; jobs are bound to the key "
            "that created them, so use another journal"
        )


def claimable(
    entry: JournalEntry | None,
    owner: str,
    now: float,
    *,
    take_over: bool,
    stale_done: float | None = None,
) -> bool:
    """Whether ``owner`` may claim a key the journal holds as ``entry`` (see ``claim``).
    ``stale_done``: the ``finished_at`` of a done entry the caller found too old to
    serve; that entry (and only it, not a newer one) may be claimed again."""
    if entry is None or (entry.state == "failed" and entry.retryable):
        return True
    if stale_done is not None and entry.state == "done" and entry.finished_at == stale_done:
        return True
    if entry.state == "claimed" and not entry.claim_is_live(now):
        return True  # its claimant is gone before sending anything: nothing to doubt
    if not take_over:
        return False
    return entry.state in ("uncertain", "failed") and not (
        entry.owner != owner and entry.claim_is_live(now)
    )


def new_owner() -> str:
    """An identity for this store in this process: ``host/pid/nonce``."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str | None) -> bool:
    """False when ``owner`` is a process of this machine that no longer runs."""
    if not owner:
        return False
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's: only its lease tells
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


@runtime_checkable
class JobStore(Protocol):
    """What a client needs of a journal: any object with these methods will do
    (``SQLiteJobStore`` and ``PostgresJobStore`` are built in)."""

    #: This store's identity in claims (``host/pid/nonce``).
    owner: str

    async def bind(self, *, base_url: str, fingerprint: str) -> None: ...

    async def get(self, api: str, key: str) -> JournalEntry | None: ...

    async def record_submitted(
        self, api: str, key: str, job_id: str, *, subject: str | None = None
    ) -> None: ...

    async def record_uncertain(self, api: str, key: str, *, subject: str | None = None) -> None: ...

    async def claim(
        self,
        api: str,
        key: str,
        *,
        subject: str | None,
        lease: float,
        take_over: bool = False,
        stale_done: float | None = None,
    ) -> tuple[bool, JournalEntry | None]: ...

    async def forget_intent(self, api: str, key: str) -> None: ...

    async def record_sending(self, api: str, key: str) -> None: ...

    async def record_done(self, api: str, key: str, job_id: str | None, result: object) -> None: ...

    async def record_failed(
        self, api: str, key: str, job_id: str | None, error: KeplerError
    ) -> None: ...

    async def aclose(self) -> None: ...
