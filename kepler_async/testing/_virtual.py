"""Virtual time for tests: the clock jumps to the next timer whenever all is waiting.

A test that awaits a cold score waits for 25-90 simulated seconds of polling. Under
``virtual_time()`` the event loop's clock, instead of sleeping until its next timer
while nothing else can happen, moves to that timer at once, so the wait takes
milliseconds of real time; the simulators' default clock and every ``ManualClock`` move
with it (by the seconds jumped), so the API ages as the client waits. trio's
``MockClock(autojump_threshold=0)`` is the model; on trio it is what runs.

It is meant for in-process tests (a simulator behind ``asgi_transport`` or respx). Real
I/O (a server over a socket, a thread such as a SQLite journal's) is waited for only
``autojump_threshold`` real seconds before the clock jumps, as with trio's clock: raise
it for tests that wait on those, or keep them out of virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import selectors
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import sniffio

__all__ = ["JumpingSelector", "jumped", "sim_time", "virtual_time"]

_jumped = 0.0


def jumped() -> float:
    """How many seconds virtual time has jumped ahead in this process, in all."""
    return _jumped + sum(ahead() for ahead in _live_trio)


def _record(seconds: float) -> None:
    global _jumped
    _jumped += seconds


def sim_time() -> float:
    """The simulators' default clock: ``time.monotonic()`` plus every jump."""
    return time.monotonic() + jumped()


class JumpingSelector(selectors.BaseSelector):
    """A selector that, asked to wait for a timer with no I/O ready, waits at most
    ``threshold`` real seconds, then calls ``advance(seconds)`` instead of sleeping."""

    def __init__(
        self,
        inner: selectors.BaseSelector,
        advance: Callable[[float], None],
        threshold: float = 0.0,
    ) -> None:
        self.inner = inner
        self._advance = advance
        self._threshold = threshold

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:  # no timer at all: only I/O can wake the loop
            return self.inner.select(None)
        ready = self.inner.select(min(timeout, self._threshold))
        if not ready and timeout > self._threshold:
            self._advance(timeout - self._threshold)
        return ready

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.modify(fileobj, events, data)

    def close(self) -> None:
        self.inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self.inner.get_map()


class _OnAsyncio:
    """A running selector loop put on virtual time: its ``time()`` and its selector are
    replaced on the instance (the loop's class is left alone)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        inner: Any = getattr(loop, "_selector", None)
        if not isinstance(loop, asyncio.BaseEventLoop) or not isinstance(
            inner, selectors.BaseSelector
        ):
            raise RuntimeError(
                f"virtual time needs asyncio's own selector event loop, not {type(loop).__name__}"
            )
        self.users = 0
        self._loop: Any = loop
        self._inner = inner
        self._ahead = 0.0
        real_time = loop.time

        def virtual_now() -> float:
            return real_time() + self._ahead

        loop.time = virtual_now  # type: ignore[method-assign]
        cast(Any, loop)._selector = JumpingSelector(inner, self._advance, threshold)

    def _advance(self, seconds: float) -> None:
        self._ahead += seconds
        _record(seconds)

    def stop(self) -> None:
        """Real time again, from where virtual time got to (it never goes back)."""
        self._loop._selector = self._inner


_ON_ASYNCIO: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _OnAsyncio] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _asyncio_virtual_time(threshold: float) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    state = _ON_ASYNCIO.get(loop)
    if state is None:
        state = _ON_ASYNCIO[loop] = _OnAsyncio(loop, threshold)
    state.users += 1
    try:
        yield
    finally:
        state.users -= 1
        if not state.users:
            state.stop()
            del _ON_ASYNCIO[loop]


class _TrioAhead:
    """How far a trio ``MockClock`` (rate 1) has jumped ahead of real time."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._virtual0: float = clock.current_time()
        self._real0 = time.perf_counter()

    def __call__(self) -> float:
        real = time.perf_counter() - self._real0
        now: float = self._clock.current_time()
        return max(0.0, now - self._virtual0 - real)


#: trio clocks in use now: their jumps count as they happen.
_live_trio: list[_TrioAhead] = []


@contextlib.asynccontextmanager
async def _trio_virtual_time(threshold: float) -> AsyncIterator[None]:
    import trio.testing
    from trio._core._run import GLOBAL_RUN_CONTEXT  # the one way to change a run's clock

    runner = GLOBAL_RUN_CONTEXT.runner
    previous = runner.clock
    if any(ahead._clock is previous for ahead in _live_trio):  # a nested use
        yield
        return
    clock = trio.testing.MockClock(rate=1.0)
    clock.jump(previous.current_time())  # from where the run's clock is: no gap
    object.__setattr__(runner, "clock", clock)  # a frozen attribute, set once per run
    clock.autojump_threshold = threshold
    ahead = _TrioAhead(clock)
    _live_trio.append(ahead)
    try:
        yield
    finally:
        _live_trio.remove(ahead)
        seconds = ahead()
        _record(seconds)
        object.__setattr__(runner, "clock", previous)
        threshold_before = getattr(previous, "autojump_threshold", math.inf)
        object.__setattr__(runner, "clock_autojump_threshold", threshold_before)
        if isinstance(previous, trio.testing.MockClock):
            previous.jump(seconds)
        elif hasattr(previous, "offset"):  # trio's SystemClock: time never goes back
            object.__setattr__(previous, "offset", previous.offset + seconds)


@contextlib.asynccontextmanager
async def virtual_time(*, autojump_threshold: float = 0.0) -> AsyncIterator[None]:
    """Run the block on virtual time (see the module docstring); asyncio or trio.

    ``autojump_threshold``: how long (real seconds) the loop waits for I/O before it
    jumps. Nested uses share one virtual clock. Raises ``RuntimeError`` on an event
    loop it cannot drive (uvloop, for one).
    """
    if not (autojump_threshold >= 0 and math.isfinite(autojump_threshold)):
        raise ValueError(f"autojump_threshold must be >= 0 seconds, got {autojump_threshold!r}")
    library = sniffio.current_async_library()
    body = _trio_virtual_time if library == "trio" else _asyncio_virtual_time
    async with body(autojump_threshold):
        yield
