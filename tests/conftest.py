from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from kepler_async import AsyncKepler, PostgresJobStore, SQLiteJobStore
from kepler_async._engine.wires import HTTP_BACKEND_ENV
from kepler_async.testing import (
    LIVE_KEY,
    SANDBOX_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    ManualClock,
    asgi_transport,
)

from .backends import VIRTUAL
from .postgres_server import PostgresServer, Unavailable, postgres_server
from .virtual_time import VirtualTimeLoop

pytest_plugins = ["kepler_async.testing.fixtures"]

KeplerFactory = Callable[..., AsyncKepler]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's loop for each asyncio test: ``VirtualTimeLoop`` where the test's
    marker asks for ``loop_factories=["virtual"]`` (tests/backends.py), else a plain one."""
    marker = item.get_closest_marker("asyncio")
    if marker is not None and VIRTUAL in marker.kwargs.get("loop_factories", ()):
        return {VIRTUAL: VirtualTimeLoop}
    return {"asyncio": asyncio.new_event_loop}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each async test belongs to exactly one plugin (pyproject.toml says why): asyncio
    tests to pytest-asyncio, trio copies to anyio's plugin. Collection fails otherwise."""
    wrong = []
    for item in items:
        if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(item.function):
            continue
        on_asyncio = item.get_closest_marker("asyncio") is not None
        on_anyio = item.get_closest_marker("anyio") is not None
        uses_anyio = "anyio_backend" in item.fixturenames
        if on_asyncio in (on_anyio, uses_anyio):
            wrong.append(item.nodeid)
    if wrong:
        raise pytest.UsageError(f"async tests claimed by no plugin or by both: {wrong}")


@pytest.fixture(params=["httpx", "aiohttp"])
def each_wire(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per HTTP wire: clients built without `http_backend` (and the
    processes the test starts) send with it (on trio, httpx sends either way)."""
    monkeypatch.setenv(HTTP_BACKEND_ENV, str(request.param))
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> KeplerSimulator:
    """A simulator whose time moves only with ``clock.advance``."""
    return KeplerSimulator(seed=7, clock=clock)


@pytest_asyncio.fixture
async def make_kepler(sim: KeplerSimulator) -> AsyncIterator[KeplerFactory]:
    """Build in-process clients wired to ``sim``; all are closed after the test."""
    made: list[AsyncKepler] = []

    def factory(api_key: str = LIVE_KEY, **kwargs: object) -> AsyncKepler:
        client = AsyncKepler(
            api_key,
            base_url=SIM_BASE_URL,
            transport=asgi_transport(sim),
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


@pytest_asyncio.fixture
async def live(make_kepler: KeplerFactory) -> AsyncKepler:
    return make_kepler(LIVE_KEY)


@pytest_asyncio.fixture
async def sandbox(make_kepler: KeplerFactory) -> AsyncKepler:
    return make_kepler(SANDBOX_KEY)


async def post_score(sim: KeplerSimulator, key: str, body: object) -> httpx.Response:
    """Send ``POST /v1/score`` straight to the simulator (``score()`` is the engine's job)."""
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url=SIM_BASE_URL, headers={"X-API-Key": key}
    ) as client:
        return await client.post("/v1/score", json=body)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server started for the test session (skipped, with the reason,
    only where none can be started)."""
    try:
        with postgres_server() as server:
            yield server.dsn
    except Unavailable as why:
        pytest.skip(f"PostgreSQL: {why}")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server of the module's own, for tests that stop or break it."""
    try:
        with postgres_server() as server:
            yield server
    except Unavailable as why:
        pytest.skip(f"PostgreSQL: {why}")


#: Makes a journal store; each call is another process's view of the same journal.
StoreFactory = Callable[[], Any]


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Stores on one journal: each call is another process's view of it. All are
    closed after the test."""
    made: list[Any] = []
    if request.param == "sqlite":
        path = tmp_path / "journal.db"

        def make() -> Any:
            made.append(SQLiteJobStore(path))
            return made[-1]
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        prefix = f"t{uuid.uuid4().hex[:12]}_"

        def make() -> Any:
            made.append(PostgresJobStore(dsn, prefix=prefix))
            return made[-1]

    yield make
    for store in made:
        await store.aclose()
