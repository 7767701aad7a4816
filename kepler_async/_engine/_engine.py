"""``JobEngine``: the thing that polls. It owns a scheduler and the task group it runs in.

Every client has an engine: its own (made for it) or one passed as ``engine=`` and
shared with other clients, of any API, within one ``max_in_flight``.

Lifecycle, as anyio and trio users expect:

- ``async with JobEngine() as engine`` opens a task group with ``async with`` (kept on
  an ``AsyncExitStack``), starts the scheduler in it, and on the way out stops it and
  exits the task group in the same task. The body's own exception leaves as itself,
  never wrapped in an ``ExceptionGroup``.
- Without ``async with`` (a notebook cell, a long-lived object), the scheduler starts
  on first use in a task of its own; asyncio only, as only asyncio has tasks that live
  outside a task group. ``await engine.aclose()`` stops it.
- An engine belongs to the event loop it first ran on; another loop gets a
  ``RuntimeError`` at once instead of a hang.
"""

from __future__ import annotations

import contextlib
import math
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import sniffio

from kepler_async._constants import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_AIOHTTP
from kepler_async._exceptions import ClientClosed, KeplerError

from ._channel import Counters, EngineStatistics
from ._http import check_http_backend, default_http_backend
from ._scheduler import Scheduler

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    from ._channel import Channel

__all__ = ["JobEngine", "leave_task_group"]

E = TypeVar("E", bound="JobEngine")

#: The longest ``aclose()`` waits for the scheduler's task to end (seconds).
CLOSE_BOUND = 5.0


def _current_loop() -> object:
    """An identity for the running event loop (asyncio's loop, trio's run)."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        import asyncio

        return asyncio.get_running_loop()
    if library == "trio":
        import trio

        return trio.lowlevel.current_trio_token()
    return library  # pragma: no cover - anyio supports only these two


async def leave_task_group(stack: contextlib.AsyncExitStack) -> None:
    """Exit a stack holding our task group; a lone error comes out unwrapped.

    The task group is exited without the body's exception (it is not a child's), so
    the body's exception leaves ``async with`` as itself. Should a child have failed,
    its error is raised as it is, unless several did.
    """
    try:
        await stack.aclose()
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Any:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


class JobEngine:
    """Polls the jobs of any number of clients, of any API, from one task.

    ``async with JobEngine() as engine``, then pass ``engine=engine`` to any client:
    ``max_in_flight`` bounds the requests of all of them together, and each job is
    polled on its own API's policy. A client made without ``engine=`` has its own.
    """

    def __init__(
        self, *, max_in_flight: int | None = None, http_backend: str | None = None
    ) -> None:
        if http_backend is None:
            http_backend = default_http_backend()
        check_http_backend(http_backend)
        if max_in_flight is None:  # chosen by measurement for each (see _constants)
            max_in_flight = (
                DEFAULT_MAX_IN_FLIGHT_AIOHTTP
                if http_backend == "aiohttp"
                else DEFAULT_MAX_IN_FLIGHT
            )
        self._scheduler = Scheduler(max_in_flight=max_in_flight)
        #: What sends the requests of the clients on this engine that do not choose:
        #: "httpx" or "aiohttp" (default: $KEPLER_ASYNC_HTTP_BACKEND, else "httpx").
        self.http_backend = http_backend
        self._channels: list[Channel[Any]] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._host: Any = None  # the asyncio task running the scheduler outside a group
        self._ready: anyio.Event | None = None
        self._loop: object = None
        self._closed = False
        self._done = Counters()  # what closed channels did, kept for the totals

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    @property
    def running(self) -> bool:
        return self._scheduler.running

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self: E) -> E:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit()

    async def _open(self) -> None:
        """Start the scheduler in a task group of this task (``async with``)."""
        if self._closed:
            raise ClientClosed("this engine is closed; create a new one")
        self._bind_loop()
        if self._stack is not None or self._host is not None:
            raise RuntimeError("this engine is running already; enter it once")
        stack = contextlib.AsyncExitStack()
        try:
            tg = await stack.enter_async_context(anyio.create_task_group())
            await tg.start(self._scheduler.run)
        except BaseException:
            await leave_task_group(stack)
            raise
        self._stack = stack

    async def _exit(self) -> None:
        """Close, then leave the task group ``_open`` entered (in the same task)."""
        try:
            await self.aclose()
        finally:
            stack, self._stack = self._stack, None
            if stack is not None:
                await leave_task_group(stack)

    def _bind_loop(self) -> None:
        loop = _current_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this client or engine belongs to another event loop (the one it first "
                "ran on); create one per event loop or thread"
            )

    def ensure_running(self) -> None:
        """Start the scheduler in the background if nobody did (notebooks: no
        ``async with``). Only asyncio allows a task outside a task group; on trio,
        open the client or engine with ``async with`` instead."""
        self._bind_loop()
        if self._scheduler.running or self._host is not None or self._stack is not None:
            return
        if self._closed:
            raise ClientClosed("this engine is closed; create a new one")
        if sniffio.current_async_library() != "asyncio":
            raise KeplerError(
                "on trio, open the client (or its JobEngine) with `async with`: its "
                "polling needs a task group to run in"
            )
        import asyncio

        self._host = asyncio.get_running_loop().create_task(
            self._scheduler.run(), name="kepler-async-engine"
        )

    async def started(self) -> None:
        """Start the scheduler if needed; return once it accepts work."""
        self.ensure_running()
        if self._scheduler.running:
            return
        if self._ready is None:
            self._ready = anyio.Event()
            self._scheduler.on_start = self._ready.set
        await self._ready.wait()
        if not self._scheduler.running:
            raise ClientClosed("this engine is closed; create a new one")

    async def aclose(self) -> None:
        """Stop polling; unfinished jobs of every client fail with ``ClientClosed``
        (carrying their job ids; the jobs go on server-side). Idempotent. Returns
        within ``CLOSE_BOUND`` (5 s) even if a request or a journal write hangs."""
        if self._closed:
            return
        self._closed = True
        if self._ready is not None:
            self._ready.set()
        for channel in self._channels:
            channel.close()
        self._scheduler.stop()
        host, self._host = self._host, None
        if host is not None:
            with anyio.move_on_after(CLOSE_BOUND, shield=True):
                await host

    # --- channels -----------------------------------------------------------------------

    def _attach(self, channel: Channel[Any]) -> None:
        if self._closed:
            raise ClientClosed("this engine is closed; create a new one")
        self._channels.append(channel)

    def _detach(self, channel: Channel[Any]) -> None:
        """A client of a shared engine closed: keep its counts, drop the channel."""
        if channel in self._channels:
            self._channels.remove(channel)
            self._done.add(channel.counters)

    # --- statistics ---------------------------------------------------------------------

    def statistics(self) -> EngineStatistics:
        """A snapshot of the engine's counters, for every client on it."""
        return self._statistics(self._channels, closed=self._done)

    def _statistics(
        self, channels: list[Channel[Any]], closed: Counters | None = None
    ) -> EngineStatistics:
        totals = Counters()
        if closed is not None:
            totals.add(closed)
        for channel in channels:
            totals.add(channel.counters)
        try:
            now = anyio.current_time()
        except RuntimeError:  # no event loop here (a repr in a sync context)
            now = math.nan
        next_due = self._scheduler.next_due() if self._scheduler.running else None
        paused = max((c.paused_until for c in channels), default=-math.inf)
        limiter = self._scheduler.limiter
        return EngineStatistics(
            jobs_started=totals.jobs_started,
            submits_inline=totals.submits_inline,
            jobs_pending=sum(channel.pending() for channel in channels),
            jobs_succeeded=totals.jobs_succeeded,
            jobs_failed=totals.jobs_failed,
            polls_sent=totals.polls_sent,
            polls_unchanged=totals.polls_unchanged,
            results_fetched=totals.results_fetched,
            transient_errors=totals.transient_errors,
            throttle_pauses=totals.throttle_pauses,
            in_flight=int(limiter.borrowed_tokens),
            max_in_flight=self._scheduler.max_in_flight,
            paused_for=max(0.0, paused - now) if math.isfinite(now) else 0.0,
            next_poll_in=(
                None if next_due is None or not math.isfinite(now) else max(0.0, next_due - now)
            ),
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        state = "closed" if self._closed else ("running" if self.running else "idle")
        text = (
            f"<JobEngine {state}: {stats.jobs_pending} pending, {stats.jobs_succeeded} done, "
            f"{stats.jobs_failed} failed, {stats.polls_sent} polls"
        )
        if stats.next_poll_in is not None and math.isfinite(stats.next_poll_in):
            text += f", next poll in {stats.next_poll_in:.1f}s"
        if stats.paused_for:
            text += f", paused for {stats.paused_for:.1f}s"
        return text + ">"
