"""The journal's stores: the contract (``_base``), SQLite, PostgreSQL (extra ``postgres``)."""

from ._base import (
    JobStore,
    JournalEntry,
    JournalError,
    JournalFull,
    JournalLocked,
    JournalUnavailable,
    key_fingerprint,
)
from ._postgres import PostgresJobStore, is_dsn, masked_dsn
from ._sqlite import SQLiteJobStore

__all__ = [
    "JobStore",
    "JournalEntry",
    "JournalError",
    "JournalFull",
    "JournalLocked",
    "JournalUnavailable",
    "PostgresJobStore",
    "SQLiteJobStore",
    "is_dsn",
    "key_fingerprint",
    "masked_dsn",
]
