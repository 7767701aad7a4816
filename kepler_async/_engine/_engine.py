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

Where it stands is one ``EngineState``, changed and checked in one place (``_enter``).
"""

from __future__ import annotations

import contextlib
import enum
import math
import sys
from types import TracebackType
from typing import Any, TypeVar

import anyio
import sniffio

from kepler_async._constants import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT_AIOHTTP
from kepler_async._exceptions import ClientClosed, KeplerError

from ._binding import Binding
from ._scheduler import Scheduler
from ._stats import Counters, EngineStatistics, snapshot
from .wires import check_http_backend, default_http_backend

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["EngineState", "JobEngine", "leave_task_group"]

E = TypeVar("E", bound="JobEngine")

#: The longest ``aclose()`` waits for the scheduler's task to end (seconds).
CLOSE_BOUND = 5.0


class EngineState(enum.Enum):
    """Where an engine stands in its life (httpx's ``ClientState`` is the model)."""

    #: Made; nothing polls yet (the first submit starts it, or ``async with``).
    UNOPENED = "unopened"
    #: Polling in a task group of the caller's (``async with``).
    IN_GROUP = "in a task group"
    #: Polling in an asyncio task of its own (no ``async with``: a notebook).
    HOSTED = "in a task of its own"
    CLOSED = "closed"


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
        self._bindings: list[Binding[Any]] = []
        self.state = EngineState.UNOPENED
        self._stack: contextlib.AsyncExitStack | None = None  # IN_GROUP: the group
        self._host: Any = None  # HOSTED: the asyncio task running the scheduler
        self._ready: anyio.Event | None = None
        self._loop: object = None
        self._done = Counters()  # what closed bindings did, kept for the totals

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    @property
    def running(self) -> bool:
        return self._scheduler.running

    @property
    def closed(self) -> bool:
        return self.state is EngineState.CLOSED

    def _enter(self, state: EngineState) -> None:
        """Move to ``state`` from UNOPENED (the one place the state is checked)."""
        self._bind_loop()
        if self.state is EngineState.CLOSED:
            raise ClientClosed("this engine is closed; create a new one")
        if self.state is not EngineState.UNOPENED:
            raise RuntimeError("this engine is running already; enter it once")
        self.state = state

    async def __aenter__(self: E) -> E:
        await self.open_in_task()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.exit_in_task()

    async def open_in_task(self) -> None:
        """Start the scheduler in a task group of this task (``async with``); leave it
        with ``exit_in_task`` from the same task."""
        self._enter(EngineState.IN_GROUP)
        stack = contextlib.AsyncExitStack()
        try:
            tg = await stack.enter_async_context(anyio.create_task_group())
            await tg.start(self._scheduler.run)
        except BaseException:
            self.state = EngineState.UNOPENED
            await leave_task_group(stack)
            raise
        self._stack = stack

    async def exit_in_task(self) -> None:
        """Close, then leave the task group ``open_in_task`` entered (same task)."""
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
        if self.state in (EngineState.IN_GROUP, EngineState.HOSTED):
            return
        if self.closed:
            raise ClientClosed("this engine is closed; create a new one")
        if sniffio.current_async_library() != "asyncio":
            raise KeplerError(
                "on trio, open the client (or its JobEngine) with `async with`: its "
                "polling needs a task group to run in"
            )
        self._enter(EngineState.HOSTED)
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
        if self.state is EngineState.CLOSED:
            return
        self.state = EngineState.CLOSED
        if self._ready is not None:
            self._ready.set()
        for binding in self._bindings:
            binding.close()
        self._scheduler.stop()
        host, self._host = self._host, None
        if host is not None:
            with anyio.move_on_after(CLOSE_BOUND, shield=True):
                await host

    # --- bindings -----------------------------------------------------------------------

    def bind(self, **options: Any) -> Binding[Any]:
        """A new client's binding on this engine (``Binding``'s options)."""
        if self.closed:
            raise ClientClosed("this engine is closed; create a new one")
        binding: Binding[Any] = Binding(host=self, **options)
        self._bindings.append(binding)
        return binding

    def unbind(self, binding: Binding[Any]) -> None:
        """A client of a shared engine closed: keep its counts, drop the binding."""
        if binding in self._bindings:
            self._bindings.remove(binding)
            self._done.add(binding.counters)

    # --- statistics ---------------------------------------------------------------------

    def statistics(self) -> EngineStatistics:
        """A snapshot of the engine's counters, for every client on it (O(1) in the
        number of jobs: counts are kept as the engine goes)."""
        totals = Counters()
        totals.add(self._done)
        for binding in self._bindings:
            totals.add(binding.counters)
        try:
            now = anyio.current_time()
        except RuntimeError:  # no event loop here (a repr in a sync context)
            now = math.nan
        scheduler = self._scheduler
        return snapshot(
            totals,
            now=now,
            jobs_pending=sum(binding.pending() for binding in self._bindings),
            in_flight=scheduler.in_flight,
            max_in_flight=scheduler.max_in_flight,
            paused_until=max((b.paused_until for b in self._bindings), default=-math.inf),
            next_due=scheduler.next_due() if scheduler.running else None,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        state = "closed" if self.closed else ("running" if self.running else "idle")
        text = (
            f"<JobEngine {state}: {stats.jobs_pending} pending, {stats.jobs_succeeded} done, "
            f"{stats.jobs_failed} failed, {stats.polls_sent} polls"
        )
        if stats.next_poll_in is not None and math.isfinite(stats.next_poll_in):
            text += f", next poll in {stats.next_poll_in:.1f}s"
        if stats.paused_for:
            text += f", paused for {stats.paused_for:.1f}s"
        return text + ">"
