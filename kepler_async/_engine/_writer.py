"""``JournalWriter``: one binding's journal, for one API and one key (fingerprint).

Every read and write the submit path makes goes through here, each bounded in time.
The rule for an outage ("never pay twice" decides each write):

- the claim on a key, and ``mark_sending`` (the write before the billed request),
  must land, or the request is not sent (``JournalUnavailable``);
- every write after the request (the job id, the outcome, the end of a claim, a
  submit in doubt) lets the caller have its result even if it fails: it waits in the
  ``JournalBacklog`` and is written once the journal is back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import anyio

from kepler_async._exceptions import ClientClosed, JobFailed

from ._backlog import WRITE_BOUND, JournalBacklog, Write
from ._dialect import Dialect
from ._record import JobRecord
from .stores import JobStore, JournalEntry, JournalUnavailable

__all__ = ["CLAIM_LEASE", "JournalWriter"]

logger = logging.getLogger("kepler_async")

#: How long a claim to submit a key holds without an answer (seconds): past it, other
#: processes treat that submit as in doubt.
CLAIM_LEASE = 120.0


class JournalWriter:
    """The journal as one binding uses it (see the module docstring)."""

    def __init__(
        self,
        store: JobStore,
        dialect: Dialect[Any],
        *,
        base_url: str,
        fingerprint: str,
        start_soon: Callable[[Write], None],
    ) -> None:
        self.store = store
        self.dialect = dialect
        self.api = dialect.name
        self.base_url = base_url
        self.fingerprint = fingerprint
        self._start_soon = start_soon
        #: Writes that wait for the journal to come back (an outage).
        self.backlog = JournalBacklog(start_soon)

    async def bind(self) -> None:
        """Refuse a journal made for another API origin or key (``JournalError``)."""
        await self.store.bind(base_url=self.base_url, fingerprint=self.fingerprint)

    # --- before the request: these must land --------------------------------------------

    async def claim(
        self, key: str, subject: str | None, *, take_over: bool, stale_done: float | None = None
    ) -> tuple[bool, JournalEntry | None]:
        """The store's claim; one that fails leaves a claim it may have written to be
        dropped (now, or once the journal is back, before this key is claimed again)."""
        extra = {} if stale_done is None else {"stale_done": stale_done}  # stores of old
        try:
            return await self.store.claim(
                self.api, key, subject=subject, lease=CLAIM_LEASE, take_over=take_over, **extra
            )
        except Exception:
            await self.forget_intent(key)
            raise

    async def mark_sending(self, key: str) -> None:
        """Record that the claimed submit goes out now, or raise ``JournalUnavailable``
        (and send nothing): a submit the journal does not know of could be paid twice."""
        try:
            with anyio.fail_after(WRITE_BOUND, shield=True):
                await self.store.record_sending(self.api, key)
        except Exception as exc:
            await self.forget_intent(key)  # the claim: now or once it is back
            if isinstance(exc, JournalUnavailable):
                raise
            raise JournalUnavailable(
                f"journal {self.store!r}: the submit of {key} could not be recorded "
                f"({type(exc).__name__}), so it was not sent"
            ) from exc

    # --- after the request: a write that fails waits in the backlog ---------------------

    async def record_submitted(self, key: str, job_id: str, subject: str | None) -> None:
        write = functools.partial(
            self.store.record_submitted, self.api, key, job_id, subject=subject
        )
        await self.backlog.write(key, f"the job id {job_id}", write)

    async def forget_intent(self, key: str) -> None:
        write = functools.partial(self.store.forget_intent, self.api, key)
        await self.backlog.write(key, "the end of a claim", write)

    async def record_uncertain(self, key: str, subject: str | None) -> None:
        write = functools.partial(self.store.record_uncertain, self.api, key, subject=subject)
        await self.backlog.write(key, "a submit in doubt", write)

    def record_outcome(self, key: str, record: JobRecord[Any]) -> None:
        """Write the job's end when it comes (a result or a job failure).

        Anything else (deadline, close, cancel) leaves the job pending in the journal:
        the next run resumes it.
        """
        store, api = self.store, self.api

        async def write() -> None:
            error = record.error
            if error is None:
                data = self.dialect.dump_result(record.result)
                await store.record_done(api, key, record.job_id, data)
            elif isinstance(error, JobFailed):
                await store.record_failed(api, key, record.job_id, error)

        async def write_outcome() -> None:
            # The caller has its outcome already; a journal that is away gets it later.
            await self.backlog.write(key, f"the outcome of job {record.job_id}", write)

        def on_done() -> None:
            if record.error is None or isinstance(record.error, JobFailed):
                try:
                    self._start_soon(write_outcome)
                except ClientClosed:
                    logger.warning("journal: the outcome of job %s was not written", record.job_id)

        record.on_done(on_done)
