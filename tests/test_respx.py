"""sim.mock(respx_mock): a user's respx mock of an API's base URL answered by a simulator."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
import respx
from respx.models import AllMockedAssertionError

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async.deepidv import AsyncDeepidv
from kepler_async.deepidv._client import DEFAULT_BASE_URL as DEEPIDV_URL
from kepler_async.midlyr import AsyncMidLyr
from kepler_async.midlyr._client import DEFAULT_BASE_URL as MIDLYR_URL
from kepler_async.parsetx import AsyncParseTx
from kepler_async.parsetx._client import DEFAULT_BASE_URL as PARSETX_URL
from kepler_async.testing import (
    DEEPIDV_KEY,
    LIVE_KEY,
    MIDLYR_KEY,
    PARSETX_KEY,
    DeepidvSimulator,
    KeplerSimulator,
    MidLyrSimulator,
    ParseTxSimulator,
)

from .backends import VIRTUAL

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


@pytest.mark.parametrize(
    ("make_sim", "client_type", "key", "url"),
    [
        (DeepidvSimulator, AsyncDeepidv, DEEPIDV_KEY, DEEPIDV_URL),
        (MidLyrSimulator, AsyncMidLyr, MIDLYR_KEY, MIDLYR_URL),
        (ParseTxSimulator, AsyncParseTx, PARSETX_KEY, PARSETX_URL),
    ],
    ids=["deepidv", "midlyr", "parsetx"],
)
@virtual_time
async def test_vendor_simulators_answer_their_apis_real_base_url(
    respx_mock: respx.MockRouter, make_sim: Any, client_type: Any, key: str, url: str
) -> None:
    sim = make_sim(clock=anyio.current_time, failure_rate=0)
    assert sim.api_base_url == url
    route = sim.mock(respx_mock)
    async with client_type(key) as client:
        if client_type is AsyncDeepidv:
            result = await client.screen_adverse_media(
                first_name="Ada", last_name="Lovelace", date_of_birth="1815-12-10"
            )
        elif client_type is AsyncMidLyr:
            result = await client.screen("0% APR forever")
        else:
            result = await client.enrich(["AMZN Mktp US"])
    assert result is not None
    assert route.call_count >= 2  # the submit and at least one poll


def test_mock_needs_a_respx_router() -> None:
    with pytest.raises(TypeError, match="respx router"):
        KeplerSimulator().mock(object())
    with pytest.raises(ValueError, match="http"):
        KeplerSimulator().mock(respx.MockRouter(), base_url="ftp://x")
