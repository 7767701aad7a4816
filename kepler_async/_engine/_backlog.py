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

from ._journal import JournalUnavailable

__all__ = ["JournalBacklog", "Write"]

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

    def __init__(self, name: str, start_soon: Callable[[Callable[[], Awaitable[None]]], None]):
        self._name = name
        self._start_soon = start_soon
        self._waiting: dict[str, tuple[str, Write]] = {}  # key: (what, write)
        self._running = False
        self._wake: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    async def write(self, key: str, what: str, write: Write) -> bool:
        """Write now (bounded, never cut off by a cancelled caller); True once written.

        A write of the moment that fails, or takes too long, waits here and is tried
        again in the background; a journal that cannot work at all (``JournalError``)
        is logged and the write dropped.
        """
        with anyio.move_on_after(WRITE_BOUND, shield=True):
            try:
                await write()
            except JournalUnavailable as exc:
                self._keep(key, what, write, exc)
                return False
            except KeplerError as exc:
                logger.error("journal: %s of %s was not written: %s", what, key, exc)
                return False
            except Exception as exc:  # a store of the user's: count it as an outage
                self._keep(key, what, write, exc)
                return False
            return True
        self._keep(key, what, write, TimeoutError(f"no answer within {WRITE_BOUND:g}s"))
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
        except BaseException as exc:
            self._waiting.setdefault(key, waiting)  # unless a newer one came meanwhile
            if isinstance(exc, KeplerError):
                raise
            if isinstance(exc, Exception):
                raise JournalUnavailable(
                    f"journal: {what} of {key} is still waiting to be written"
                ) from exc
            raise

    def _keep(self, key: str, what: str, write: Write, exc: BaseException) -> None:
        logger.warning(
            "journal: %s of %s could not be written (%s); it is kept and written again "
            "once the journal is back",
            what,
            key,
            type(exc).__name__,
        )
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
                    try:
                        with anyio.fail_after(WRITE_BOUND):
                            await write()
                    except Exception:  # still away: wait longer
                        pause = min(MAX_RETRY, pause * 2)
                        break
                    if self._waiting.get(key, (None, None))[1] is write:
                        del self._waiting[key]
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
