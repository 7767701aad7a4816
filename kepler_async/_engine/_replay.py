"""Journal replay: what the journal already says of a key, before anything is sent.

``JournalReplay.lookup`` answers for one submit with a journal key: the record of its
result or failure, its pending job resumed, ``None`` once this process holds the claim
to submit it, or ``WAIT`` while another task or process does. An earlier submit *in
doubt* (sent, its answer never came) is decided by the client's in-doubt rule (look
for its result, wait out the longest run, replay an idempotency key, or report it).

The waits for another's claim and for a submit in doubt end at the caller's deadline
(``until``, loop time); whoever can settle the key still does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from kepler_async._exceptions import DeadlineExceeded, SubmitHeldElsewhere

from ._dialect import Dialect
from ._record import JobRecord
from ._writer import JournalWriter
from .stores import JournalEntry

__all__ = ["CLAIM_POLL", "WAIT", "InDoubt", "JournalReplay", "Resume"]

logger = logging.getLogger("kepler_async")

#: How often a caller waiting on another's claim looks at the journal again (seconds).
CLAIM_POLL = 0.5
#: The journals this process has said it shares (once each: sharing one is the
#: recommended setup for several workers, not a fault).
_SAID_SHARED: set[str] = set()
#: ``lookup``: another task or process is submitting the key; look again.
WAIT = object()

#: ``in_doubt(journal_key, subject, submitted_at)``: the result of a submit whose
#: answer was lost, if the API can still tell it (None: submit again).
InDoubt = Callable[[str, "str | None", float], Awaitable[Any]]
#: ``resume(job_id, subject, deadline)``: the record of a job to watch again.
Resume = Callable[[str, "str | None", "float | None"], JobRecord[Any]]


class JournalReplay:
    """Reads a binding's journal before a submit (see the module docstring)."""

    def __init__(
        self, writer: JournalWriter, dialect: Dialect[Any], in_doubt: InDoubt | None
    ) -> None:
        self.writer = writer
        self.dialect = dialect
        self.in_doubt = in_doubt

    async def lookup(
        self,
        key: str,
        subject: str | None,
        deadline: float | None,
        until: float,
        resume: Resume,
        max_age: float | None = None,
    ) -> JobRecord[Any] | object | None:
        """What the journal says of ``key`` (see the module docstring). A journal that
        cannot be read or written now raises ``JournalUnavailable``: nothing is sent.
        ``max_age``: a done result older than this many seconds is not served; the key
        is claimed again and sent (None: any age)."""
        writer = self.writer
        await writer.bind()
        await writer.backlog.flush(key)  # nothing older may overtake the claim
        claimed, entry = await writer.claim(key, subject, take_over=False)
        if claimed:
            return None
        assert entry is not None
        if entry.state == "done" and max_age is not None and self._age(entry) > max_age:
            stale = entry.finished_at
            claimed, _ = await writer.claim(key, subject, take_over=False, stale_done=stale)
            return None if claimed else WAIT  # another process refreshed it: look again
        subject = entry.subject or subject
        known = self._known(key, entry, subject, deadline, resume)
        if known is not None:
            return known
        if entry.state in ("claimed", "uncertain") and entry.claim_is_live(time.time()):
            return await self._wait_for_claim(key, entry, subject, until)
        if entry.state == "uncertain":
            record = await self._after_doubt(key, subject, entry, until)
            if record is not None:
                return record
        claimed, _ = await writer.claim(key, subject, take_over=True)
        return None if claimed else WAIT

    def _age(self, entry: JournalEntry) -> float:
        """How old a done result is (seconds): by the time the API says it was made,
        where the dialect can tell (``result_time``), else since it was journaled."""
        made = None
        result_time = getattr(self.dialect, "result_time", None)
        if result_time is not None and entry.result is not None:
            made = result_time(self.dialect.load_result(entry.result))
        if made is None:
            made = entry.finished_at if entry.finished_at is not None else 0.0
        return time.time() - made

    async def result_of(self, key: str) -> Any:
        """The result the journal holds for ``key`` (done there), or None; a read only."""
        writer = self.writer
        await writer.bind()
        entry = await writer.store.get(writer.api, key)
        if entry is None or entry.state != "done" or entry.result is None:
            return None
        return self.dialect.load_result(entry.result)

    def _known(
        self,
        key: str,
        entry: JournalEntry,
        subject: str | None,
        deadline: float | None,
        resume: Resume,
    ) -> JobRecord[Any] | None:
        """The record of an entry that settles the key: done, pending, or failed for good."""
        if entry.state == "done":
            result = self.dialect.load_result(entry.result)
            return JobRecord.finished(entry.job_id, subject, result=result)
        if entry.state == "pending" and entry.job_id is not None:
            record = resume(entry.job_id, subject, deadline)
            self.writer.record_outcome(key, record)
            return record
        if entry.state == "failed" and entry.job_id is not None and not entry.retryable:
            error = self.dialect.failure(
                entry.job_id, subject, entry.failure_reason, entry.error_message
            )
            return JobRecord.finished(entry.job_id, subject, error=error)
        return None

    async def _wait_for_claim(
        self, key: str, entry: JournalEntry, subject: str | None, until: float
    ) -> object:
        """Another task or process holds a live claim on ``key``: wait a little for its
        answer (``WAIT``), or raise ``SubmitHeldElsewhere`` at the caller's deadline."""
        own = self.writer.store.owner
        where = repr(self.writer.store)
        if entry.owner != own and where not in _SAID_SHARED:
            _SAID_SHARED.add(where)
            logger.info(
                "the journal %s is shared with another process (%s, first seen): this one "
                "waits for its submits instead of sending them again",
                where,
                entry.owner,
            )
        left = until - anyio.current_time()
        if left <= 0:
            holder = "this process" if entry.owner == own else entry.owner
            lease = time.strftime("%H:%M:%S UTC", time.gmtime(entry.lease_until or 0))
            raise SubmitHeldElsewhere(
                f"{self.dialect.name}: {key} was still being submitted by {holder} at "
                f"this call's deadline (its claim in the journal holds until {lease}); "
                "nothing was sent here, and its outcome will be in the journal",
                subject=subject,
                owner=entry.owner,
                journal_key=key,
            )
        await anyio.sleep(min(CLAIM_POLL, left))  # its answer (or its end) will show
        return WAIT

    async def _after_doubt(
        self, key: str, subject: str | None, entry: JournalEntry, until: float
    ) -> JobRecord[Any] | None:
        """An earlier submit of this key is in doubt: the client's rule decides, within
        the caller's deadline (None: submit again)."""
        if self.in_doubt is None or entry.submitted_at is None:
            return None
        with anyio.move_on_after(until - anyio.current_time()) as waited:
            result = await self.in_doubt(key, subject, entry.submitted_at)
        if waited.cancelled_caught:
            raise DeadlineExceeded(
                f"{self.dialect.name}: an earlier submit of {key} is in doubt (its answer "
                "never came) and its outcome was not known by this call's deadline; "
                "nothing was sent again. A later call looks again",
                job_id=None,
                subject=subject,
            )
        if result is None:
            return None
        record: JobRecord[Any] = JobRecord.finished(None, subject, result=result)
        self.writer.record_outcome(key, record)
        return record
