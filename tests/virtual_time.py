"""Fake time for engine tests: the clock jumps to the next timer whenever all is idle.

- asyncio: ``VirtualTimeLoop``, a selector loop whose ``time()`` is virtual. When the
  loop would block waiting for a timer and no I/O is ready, it advances its clock by
  the wait instead of sleeping (the testing kit's ``JumpingSelector``; unlike the
  kit's ``virtual_time()``, it starts at 0 and simulators' clocks do not follow it).
  Only for in-process tests (no real sockets to wait on).
- trio: ``trio.testing.MockClock(autojump_threshold=0)`` does the same natively.

``virtual_backends`` is the ``anyio_backend`` fixture body for both.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kepler_async.testing._virtual import JumpingSelector


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        self._selector = JumpingSelector(self._selector, self.advance)  # type: ignore[has-type]

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def virtual_backend(name: str) -> tuple[str, dict[str, Any]]:
    if name == "asyncio":
        return ("asyncio", {"loop_factory": VirtualTimeLoop})
    import trio.testing

    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
