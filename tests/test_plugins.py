"""Which plugin and which loop run a test: what tests/backends.py promises."""

from __future__ import annotations

import asyncio

import pytest
import sniffio

from .backends import VIRTUAL, only_on, run_on_asyncio_and_trio
from .virtual_time import VirtualTimeLoop


@pytest.mark.asyncio
async def test_a_plain_asyncio_test_runs_on_a_plain_loop() -> None:
    assert type(asyncio.get_running_loop()) is not VirtualTimeLoop


@pytest.mark.asyncio(loop_factories=[VIRTUAL])
async def test_a_virtual_time_test_runs_on_the_virtual_loop() -> None:
    loop = asyncio.get_running_loop()
    assert type(loop) is VirtualTimeLoop
    before = loop.time()
    await asyncio.sleep(3600)  # an hour passes at once
    assert loop.time() - before == pytest.approx(3600)


async def test_each_copy_runs_on_its_own_loop(request: pytest.FixtureRequest) -> None:
    library = sniffio.current_async_library()
    on_trio = request.node.cls is not None
    assert library == ("trio" if on_trio else "asyncio")
    if on_trio:
        import trio

        before = trio.current_time()
        await trio.sleep(3600)  # MockClock(autojump_threshold=0): no real hour
        assert trio.current_time() - before == pytest.approx(3600)
        assert "anyio_backend" in request.fixturenames
    else:
        assert type(asyncio.get_running_loop()) is VirtualTimeLoop
        assert "anyio_backend" not in request.fixturenames


@only_on("trio")
async def test_a_trio_only_test_has_no_asyncio_copy(request: pytest.FixtureRequest) -> None:
    assert sniffio.current_async_library() == "trio"
    assert request.node.cls is not None


def test_the_copies_exist() -> None:
    assert "test_a_trio_only_test_has_no_asyncio_copy" not in globals()
    on_trio = globals()["TestOnTrio"]
    assert hasattr(on_trio, "test_a_trio_only_test_has_no_asyncio_copy")
    assert hasattr(on_trio, "test_each_copy_runs_on_its_own_loop")


run_on_asyncio_and_trio(globals(), virtual_time=True)
