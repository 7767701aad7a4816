"""Journal writes that failed for a passing reason, written again once the journal is back.

A journal that cannot be written just now (a database restarting, a dropped
connection, a lock held too long) must not cost a caller a result it has, nor the
engine its other jobs. A write that fails that way is kept here, by key, and tried
again from a task of the engine with growing pauses until it lands:

- the newest write for a key replaces an older one still waiting (a job's result
  supersedes its job id; both say where the key stands);
- before the client claims a key again it flushes that key's write, so nothing it
  writes later is overtaken by something it wrote earlier;
- closing the client drops what is still waiting, with a warning per key: the
  journal then holds the key as pending or uncertain, and the next run resumes the
  job or applies the in-doubt rule (never a second billed submit).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from kepler_async._exceptions import ClientClosed, KeplerError

from .stores import JournalUnavailable

__all__ = ["WRITE_BOUND", "JournalBacklog", "Write"]

logger = logging.getLogger("kepler_async")

#: One journal write, ready to run again.
Write = Callable[[], Awaitable[None]]

#: How long one write may take before it counts as failed (seconds).
WRITE_BOUND = 5.0
#: The first pause before writing again, and the longest (seconds).
FIRST_RETRY = 0.5
MAX_RETRY = 5.0


class JournalBacklog:
    """The writes of one client that wait for its journal (see the module docstring)."""

    def __init__(self, start_soon: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self._start_soon = start_soon  # runs the retrying task in the engine
        self._waiting: dict[str, tuple[str, Write]] = {}  # key: (what, write)
        self._running = False

    async def write(self, key: str, what: str, write: Write) -> bool:
        """Write now (bounded, never cut off by a cancelled caller); True once written.

        A write that fails for a passing reason, or takes too long, waits here and is
        tried again in the background; one the journal refuses for good
        (``JournalError``) is logged and dropped.
        """
        with anyio.move_on_after(WRITE_BOUND, shield=True):
            if await self._attempt(key, what, write):
                return True
            self._keep(key, what, write)
            return False
        logger.warning("journal: %s of %s took over %gs", what, key, WRITE_BOUND)
        self._keep(key, what, write)
        return False

    async def flush(self, key: str) -> None:
        """Write what waits for ``key`` now; ``JournalUnavailable`` if it still fails."""
        waiting = self._waiting.pop(key, None)
        if waiting is None:
            return
        what, write = waiting
        try:
            with anyio.fail_after(WRITE_BOUND, shield=True):
                await write()
        except Exception as exc:
            self._waiting.setdefault(key, waiting)  # unless a newer one came meanwhile
            if isinstance(exc, KeplerError):
                raise
            raise JournalUnavailable(
                f"journal: {what} of {key} is still waiting to be written"
            ) from exc

    @staticmethod
    async def _attempt(key: str, what: str, write: Write) -> bool | None:
        """One try: True written, False failed for a passing reason (keep it), None
        refused for good (drop it)."""
        try:
            await write()
        except JournalUnavailable as exc:
            logger.warning("journal: %s of %s could not be written: %s", what, key, exc)
            return False
        except KeplerError as exc:  # JournalError: retrying cannot help
            logger.error("journal: %s of %s was not written: %s", what, key, exc)
            return None
        except Exception as exc:  # a store of the user's: count it as an outage
            logger.warning("journal: %s of %s could not be written (%r)", what, key, exc)
            return False
        return True

    def _keep(self, key: str, what: str, write: Write) -> None:
        self._waiting[key] = (what, write)
        if self._running:
            return
        try:
            self._start_soon(self._drain)
        except ClientClosed:
            self.drop()
            return
        self._running = True

    async def _drain(self) -> None:
        pause = FIRST_RETRY
        try:
            while self._waiting:
                await anyio.sleep(pause)
                for key, (what, write) in list(self._waiting.items()):
                    written: bool | None = False  # (still False if it took too long)
                    with anyio.move_on_after(WRITE_BOUND):
                        written = await self._attempt(key, what, write)
                    if written is False:  # still away: wait longer
                        pause = min(MAX_RETRY, pause * 2)
                        break
                    if self._waiting.get(key, (None, None))[1] is write:
                        del self._waiting[key]  # written, or dropped for good
                    if written:
                        logger.info("journal: %s of %s written after the outage", what, key)
                else:
                    pause = FIRST_RETRY
        finally:
            self._running = False
            if self._waiting:  # the engine stopped before the journal came back
                self.drop()

    def drop(self) -> None:
        """Give up what still waits (the client closes), saying so for each key."""
        waiting, self._waiting = self._waiting, {}
        for key, (what, _) in waiting.items():
            logger.warning(
                "journal: %s of %s was never written (the client closed first); the "
                "next run resumes it or treats its submit as in doubt",
                what,
                key,
            )
