"""sim.mock(respx_mock): a user's respx mock of an API's base URL answered by a simulator."""

from __future__ import annotations

import anyio
import httpx
import pytest
import respx
from respx.models import AllMockedAssertionError

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async.testing import LIVE_KEY, KeplerSimulator
from tests.apis import API_NAMES, APIS
from tests.backends import VIRTUAL

virtual_time = pytest.mark.asyncio(loop_factories=[VIRTUAL])


@virtual_time
async def test_a_users_respx_mock_serves_cached_and_cold_scores(respx_mock: respx.MockRouter):
    sim = KeplerSimulator(seed=3, clock=anyio.current_time, failure_mix={})
    route = sim.mock(respx_mock)
    sim.seed_score("stripe.com", age=60)
    async with AsyncKepler(LIVE_KEY) as kepler:  # the real base URL, no transport
        cached = await kepler.score("stripe.com")
        cold = await kepler.score("plaid.com")  # 202, polls, score read: all via respx
    assert (cached.domain, cold.domain) == ("stripe.com", "plaid.com")
    assert sim.counters.cold_runs_billed == {"plaid.com": 1}
    paths = [call.request.url.path for call in route.calls]
    assert paths.count("/v1/score") == 2
    assert any(path.startswith("/v1/jobs/") for path in paths)
    assert all(call.request.headers["x-api-key"] == LIVE_KEY for call in route.calls)


@virtual_time
async def test_requests_elsewhere_stay_unmocked(respx_mock: respx.MockRouter) -> None:
    KeplerSimulator(clock=anyio.current_time).mock(respx_mock)
    async with httpx.AsyncClient() as client:
        with pytest.raises(AllMockedAssertionError):
            await client.get("https://api.keplerinsights.us.evil.example/v1/usage")


@pytest.mark.asyncio
async def test_another_base_url_can_be_routed(respx_mock: respx.MockRouter) -> None:
    sim = KeplerSimulator()
    sim.mock(respx_mock, base_url="https://kepler.internal")
    async with AsyncKepler(LIVE_KEY, base_url="https://kepler.internal") as kepler:
        assert (await kepler.usage()).tier == ka.Tier.ENTERPRISE


@pytest.mark.parametrize("name", API_NAMES)
@virtual_time
async def test_each_simulator_answers_its_apis_real_base_url(
    respx_mock: respx.MockRouter, name: str
) -> None:
    api = APIS[name]
    sim = api.make_sim()
    assert sim.api_base_url == api.client_class._spec.default_base_url
    route = sim.mock(respx_mock)
    async with api.client_class(api.key) as client:  # the real base URL, no transport
        handle = await api.submit(client, 0, journal=False)
        assert await handle is not None
    assert route.call_count >= 2  # the submit and at least one poll
    assert api.jobs_started(sim) == 1


def test_mock_needs_a_respx_router() -> None:
    with pytest.raises(TypeError, match="respx router"):
        KeplerSimulator().mock(object())
    with pytest.raises(ValueError, match="http"):
        KeplerSimulator().mock(respx.MockRouter(), base_url="ftp://x")
