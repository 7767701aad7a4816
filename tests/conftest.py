from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from kepler_async import AsyncKepler
from kepler_async.testing import (
    LIVE_KEY,
    SANDBOX_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    ManualClock,
    asgi_transport,
)

from .postgres_server import Unavailable, postgres_server

pytest_plugins = ["kepler_async.testing.fixtures"]

KeplerFactory = Callable[..., AsyncKepler]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio unless a module parametrizes this for trio too."""
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(clock: ManualClock) -> KeplerSimulator:
    """A simulator whose time moves only with ``clock.advance``."""
    return KeplerSimulator(seed=7, clock=clock)


@pytest.fixture
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


@pytest.fixture
async def live(make_kepler: KeplerFactory) -> AsyncKepler:
    return make_kepler(LIVE_KEY)


@pytest.fixture
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
        with postgres_server() as dsn:
            yield dsn
    except Unavailable as why:
        pytest.skip(f"PostgreSQL: {why}")
