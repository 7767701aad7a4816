"""Fake time for engine tests: the clock jumps to the next timer whenever all is idle.

- asyncio: ``VirtualTimeLoop``, a selector loop whose ``time()`` is virtual. When the
  loop would block waiting for a timer and no I/O is ready, it advances its clock by
  the wait instead of sleeping. Only for in-process tests (no real sockets to wait on).
- trio: ``trio.testing.MockClock(autojump_threshold=0)`` does the same natively.

``virtual_backends`` is the ``anyio_backend`` fixture body for both.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _JumpingSelector(selectors.BaseSelector):
    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._inner.select(0)
        if ready or timeout is None:
            # Nothing scheduled at all: only real I/O could wake us, so wait for it.
            return ready or self._inner.select(timeout)
        if timeout > 0:
            self._loop.advance(timeout)
        return ready

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        self._selector = _JumpingSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    if name == "asyncio":
        return ("asyncio", {"loop_factory": VirtualTimeLoop})
    import trio.testing

    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
