"""pytest fixtures for testing code that uses kepler_async, without a key or network.

Enable them in a ``conftest.py``::

    pytest_plugins = ["kepler_async.testing.fixtures"]

For each API (``kepler``, ``deepidv``, ``midlyr``, ``parsetx``):

- ``<api>_sim``: a fresh simulator (seed 0) whose time is ``sim_clock``.
- ``<api>_client``: a client of that API wired to ``<api>_sim`` in-process, closed after
  the test, polling as the real API asks. The test runs on virtual time while it is
  open (``virtual_time()``): whenever everything waits, the clock jumps to the next
  timer, so a cold job of 25-90 simulated seconds is awaited in milliseconds and a job
  that never finishes fails with ``DeadlineExceeded`` at once instead of hanging.
- ``<api>_sim_url``: ``<api>_sim`` served by uvicorn over real HTTP on a free port of
  127.0.0.1; yields the base URL (pass ``allow_plain_http=True`` to a client of it). The
  server stops after the test. Real sockets: keep such a test off virtual time.

And:

- ``sim_clock``: the ``ManualClock`` every simulator of the test reads. It moves with
  virtual time, and by hand with ``sim_clock.advance(seconds)``.
- ``virtual_time``: virtual time for a test without a client fixture, such as one that
  routes an unchanged ``AsyncKepler()`` to a simulator with respx.

The async fixtures work under every common setup: pytest-asyncio in strict mode (mark
the test ``@pytest.mark.asyncio``) or auto mode, and anyio's plugin
(``@pytest.mark.anyio``, asyncio or trio). Under pytest-asyncio the client is opened
without ``async with``, because pytest-asyncio tears a fixture down in another task than
the one that set it up; under anyio's plugin on trio it is opened with ``async with``,
as trio requires. Either way it is closed after the test. On an event loop virtual time
cannot drive (uvloop), the clients poll ``1 / POLL_SCALE`` times faster instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import pytest
import sniffio

from kepler_async._engine._client import ApiClient
from kepler_async._kepler._client import AsyncKepler
from kepler_async._kepler._dialect import KEPLER_POLICY
from kepler_async._policies import PollPolicy
from kepler_async.deepidv import AsyncDeepidv
from kepler_async.deepidv._client import DEEPIDV_POLICY
from kepler_async.midlyr import AsyncMidLyr
from kepler_async.midlyr._client import MIDLYR_POLICY
from kepler_async.parsetx import AsyncParseTx
from kepler_async.parsetx._client import PARSETX_POLICY

from ._clock import ManualClock
from ._kepler_sim import LIVE_KEY, KeplerSimulator
from ._server import serve
from ._sim_app import SIM_BASE_URL, asgi_transport
from ._vendor_sims import (
    DEEPIDV_KEY,
    MIDLYR_KEY,
    PARSETX_KEY,
    DeepidvSimulator,
    MidLyrSimulator,
    ParseTxSimulator,
)
from ._virtual import virtual_time as _virtual_time

# A project on anyio's plugin alone need not have pytest-asyncio.
_pytest_asyncio: types.ModuleType | None = None
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio as _pytest_asyncio

__all__ = [
    "POLL_SCALE",
    "deepidv_client",
    "deepidv_sim",
    "deepidv_sim_url",
    "kepler_client",
    "kepler_sim",
    "kepler_sim_url",
    "midlyr_client",
    "midlyr_sim",
    "midlyr_sim_url",
    "open_for_fixture",
    "parsetx_client",
    "parsetx_sim",
    "parsetx_sim_url",
    "sim_clock",
    "virtual_time",
]

_C = TypeVar("_C", bound=ApiClient[Any])

#: How much faster than the real API the fixture clients poll (and how much shorter
#: their deadlines are) on an event loop virtual time cannot drive; on virtual time
#: they poll as the real API asks.
POLL_SCALE = 0.01


# --- simulated time and the simulators -----------------------------------------------------


@pytest.fixture
def sim_clock() -> ManualClock:
    """The clock every simulator of the test reads; it moves only with ``advance()``."""
    return ManualClock()


@pytest.fixture
def kepler_sim(sim_clock: ManualClock) -> KeplerSimulator:
    """A fresh Kepler simulator for one test, on ``sim_clock``."""
    return KeplerSimulator(seed=0, clock=sim_clock)


@pytest.fixture
def deepidv_sim(sim_clock: ManualClock) -> DeepidvSimulator:
    """A fresh deepidv simulator for one test, on ``sim_clock``."""
    return DeepidvSimulator(seed=0, clock=sim_clock)


@pytest.fixture
def midlyr_sim(sim_clock: ManualClock) -> MidLyrSimulator:
    """A fresh MidLyr simulator for one test, on ``sim_clock``."""
    return MidLyrSimulator(seed=0, clock=sim_clock)


@pytest.fixture
def parsetx_sim(sim_clock: ManualClock) -> ParseTxSimulator:
    """A fresh ParseTx simulator for one test, on ``sim_clock``."""
    return ParseTxSimulator(seed=0, clock=sim_clock)


# --- served over HTTP ----------------------------------------------------------------------


@pytest.fixture
def kepler_sim_url(kepler_sim: KeplerSimulator) -> Iterator[str]:
    """``kepler_sim`` served over HTTP on 127.0.0.1; yields the base URL."""
    with serve(kepler_sim.create_app()) as url:
        yield url


@pytest.fixture
def deepidv_sim_url(deepidv_sim: DeepidvSimulator) -> Iterator[str]:
    """``deepidv_sim`` served over HTTP on 127.0.0.1; yields the base URL."""
    with serve(deepidv_sim.create_app()) as url:
        yield url


@pytest.fixture
def midlyr_sim_url(midlyr_sim: MidLyrSimulator) -> Iterator[str]:
    """``midlyr_sim`` served over HTTP on 127.0.0.1; yields the base URL."""
    with serve(midlyr_sim.create_app()) as url:
        yield url


@pytest.fixture
def parsetx_sim_url(parsetx_sim: ParseTxSimulator) -> Iterator[str]:
    """``parsetx_sim`` served over HTTP on 127.0.0.1; yields the base URL."""
    with serve(parsetx_sim.create_app()) as url:
        yield url


# --- in-process clients --------------------------------------------------------------------
#
# Each public client fixture is synchronous and hands over to the async fixture of the
# plugin that runs the test: anyio's plugin claims exactly the tests that request
# `anyio_backend`; every other async test here is pytest-asyncio's.


def _client_fixture(request: pytest.FixtureRequest, api: str) -> Any:
    return _async_fixture(request, f"{api}_client")


def _async_fixture(request: pytest.FixtureRequest, name: str) -> Any:
    test = getattr(request, "function", None)
    if test is not None and not inspect.iscoroutinefunction(test):
        raise pytest.UsageError(
            f"{name} is for async tests; {request.node.name} is not an async test"
        )
    if "anyio_backend" in request.fixturenames:
        return request.getfixturevalue(f"_{name}_on_anyio")
    if _pytest_asyncio is None:
        raise pytest.UsageError(
            f"{name} is an async fixture: mark the test @pytest.mark.anyio "
            "(anyio's plugin) or install pytest-asyncio and mark it @pytest.mark.asyncio"
        )
    return request.getfixturevalue(f"_{name}_on_pytest_asyncio")


async def open_for_fixture(client: _C) -> AsyncIterator[_C]:
    """The body of an async fixture that holds ``client`` open for one test.

    Use it in fixtures of your own: ``async for c in open_for_fixture(client): yield c``.
    On asyncio the client runs without ``async with`` (its engine in a task of its own),
    so the fixture may be torn down in another task than the one that set it up, as
    pytest-asyncio does; on trio, which needs ``async with``, it is entered and left in
    the fixture's one task, as anyio's plugin runs it. Either way it is closed after.
    """
    if sniffio.current_async_library() == "trio":
        async with client:
            yield client
    else:
        try:
            yield client
        finally:
            await client.aclose()


@contextlib.asynccontextmanager
async def _on_virtual_time() -> AsyncIterator[float]:
    """Virtual time for the block if the loop allows it; yields the poll policies'
    scale: 1 on virtual time, ``POLL_SCALE`` without it."""
    try:
        entered = _virtual_time()
        await entered.__aenter__()
    except RuntimeError:  # a loop virtual time cannot drive: poll faster instead
        yield POLL_SCALE
        return
    try:
        yield 1.0
    finally:
        await entered.__aexit__(None, None, None)


async def _open(
    client_type: type[ApiClient[Any]], key: str, policy: PollPolicy, sim: Any
) -> AsyncIterator[Any]:
    async with _on_virtual_time() as scale:
        client = client_type(
            key,
            base_url=SIM_BASE_URL,
            transport=asgi_transport(sim),
            poll_policy=policy.scaled(scale),
        )
        async for opened in open_for_fixture(client):
            yield opened


@pytest.fixture
def virtual_time(request: pytest.FixtureRequest) -> None:
    """The test on virtual time (``kepler_async.testing.virtual_time``), for tests
    without a client fixture: an ``AsyncKepler()`` routed to a simulator by respx,
    say. The client fixtures need no more: they are on virtual time already."""
    _async_fixture(request, "virtual_time")


async def _virtual(sim_clock: ManualClock) -> AsyncIterator[None]:
    async with _virtual_time():
        yield


@pytest.fixture
def kepler_client(request: pytest.FixtureRequest) -> AsyncKepler:
    """An ``AsyncKepler`` wired to ``kepler_sim`` in-process (live key), closed after."""
    return _client_fixture(request, "kepler")  # type: ignore[no-any-return]


@pytest.fixture
def deepidv_client(request: pytest.FixtureRequest) -> AsyncDeepidv:
    """An ``AsyncDeepidv`` wired to ``deepidv_sim`` in-process, closed after the test."""
    return _client_fixture(request, "deepidv")  # type: ignore[no-any-return]


@pytest.fixture
def midlyr_client(request: pytest.FixtureRequest) -> AsyncMidLyr:
    """An ``AsyncMidLyr`` wired to ``midlyr_sim`` in-process, closed after the test."""
    return _client_fixture(request, "midlyr")  # type: ignore[no-any-return]


@pytest.fixture
def parsetx_client(request: pytest.FixtureRequest) -> AsyncParseTx:
    """An ``AsyncParseTx`` wired to ``parsetx_sim`` in-process, closed after the test."""
    return _client_fixture(request, "parsetx")  # type: ignore[no-any-return]


async def _kepler(kepler_sim: KeplerSimulator) -> AsyncIterator[AsyncKepler]:
    async for client in _open(AsyncKepler, LIVE_KEY, KEPLER_POLICY, kepler_sim):
        yield client


async def _deepidv(deepidv_sim: DeepidvSimulator) -> AsyncIterator[AsyncDeepidv]:
    async for client in _open(AsyncDeepidv, DEEPIDV_KEY, DEEPIDV_POLICY, deepidv_sim):
        yield client


async def _midlyr(midlyr_sim: MidLyrSimulator) -> AsyncIterator[AsyncMidLyr]:
    async for client in _open(AsyncMidLyr, MIDLYR_KEY, MIDLYR_POLICY, midlyr_sim):
        yield client


async def _parsetx(parsetx_sim: ParseTxSimulator) -> AsyncIterator[AsyncParseTx]:
    async for client in _open(AsyncParseTx, PARSETX_KEY, PARSETX_POLICY, parsetx_sim):
        yield client


def _register(name: str, body: Callable[..., AsyncIterator[Any]]) -> None:
    """Make ``body`` the async fixture of each plugin under its own name (one function
    object each: pytest-asyncio marks the function it is given)."""

    def copy() -> Callable[..., AsyncIterator[Any]]:
        return types.FunctionType(
            body.__code__, body.__globals__, name, body.__defaults__, body.__closure__
        )

    globals()[f"_{name}_on_anyio"] = pytest.fixture(copy(), name=f"_{name}_on_anyio")
    if _pytest_asyncio is not None:
        globals()[f"_{name}_on_pytest_asyncio"] = _pytest_asyncio.fixture(
            copy(), name=f"_{name}_on_pytest_asyncio"
        )


_BODIES: list[tuple[str, Callable[..., AsyncIterator[Any]]]] = [
    ("kepler_client", _kepler),
    ("deepidv_client", _deepidv),
    ("midlyr_client", _midlyr),
    ("parsetx_client", _parsetx),
    ("virtual_time", _virtual),
]
for _name, _body in _BODIES:
    _register(_name, _body)
