"""The client against the simulator over real HTTP: uvicorn on 127.0.0.1, a free port."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import sniffio

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async.testing import LIVE_KEY, SANDBOX_KEY, KeplerSimulator
from tests.backends import only_on, run_on_asyncio_and_trio

# Over real sockets: once per HTTP wire (httpx, aiohttp).
pytestmark = pytest.mark.usefixtures("each_wire")


async def test_every_endpoint_over_http(
    kepler_sim: KeplerSimulator, kepler_sim_url: str, each_wire: str
) -> None:
    assert kepler_sim_url.startswith("http://127.0.0.1:")
    async with AsyncKepler(SANDBOX_KEY, base_url=kepler_sim_url) as kepler:
        await kepler.usage()
        on_asyncio = sniffio.current_async_library() == "asyncio"
        assert kepler.http_backend == (each_wire if on_asyncio else "httpx")
        assert (await kepler.get_score("acme.test")).composite_score == 67.2
        assert len([r async for r in kepler.iter_history("acme.test", page_size=2)]) >= 4
        assert (await kepler.cohort("cohort.test")).cohort.count == 12
        assert (await kepler.confidence("acme.test")).band is ka.ConfidenceBand.HIGH
        assert (await kepler.distribution()).universe.count == 12
        assert (await kepler.movers("30d")).gainers
        assert len((await kepler.signals()).signals) == 67
        assert (await kepler.usage()).mode == "sandbox"
    assert kepler_sim.counters.requests["GET /v1/signals"] == 1


async def test_cold_job_lifecycle_over_http(kepler_sim_url: str, kepler_sim: KeplerSimulator):
    kepler_sim.script("stripe.com", duration=0.0)
    async with httpx.AsyncClient(base_url=kepler_sim_url) as http:
        accepted = await http.post(
            "/v1/score", json={"domain": "stripe.com"}, headers={"X-API-Key": LIVE_KEY}
        )
    assert accepted.status_code == 202
    async with AsyncKepler(LIVE_KEY, base_url=kepler_sim_url) as kepler:
        job = await kepler.get_job(accepted.json()["job_id"])
        assert job.status is ka.JobStatus.COMPLETE
        assert job.score_url is not None
        assert (await kepler.get_score("stripe.com")).domain == "stripe.com"
        with pytest.raises(ka.NotFound):
            await kepler.get_score("never-scored.com")
    assert kepler_sim.counters.cold_runs_billed["stripe.com"] == 1


async def test_connection_refused_is_a_transport_error() -> None:
    import socket

    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with AsyncKepler(
        LIVE_KEY, base_url=f"http://127.0.0.1:{port}", retry=ka.RetryPolicy(attempts=1)
    ) as kepler:
        with pytest.raises(ka.TransportError) as info:
            await kepler.usage()
    assert info.value.request_sent is False
    assert LIVE_KEY not in str(info.value)


async def test_a_slow_answer_times_out_as_a_transport_error(
    kepler_sim: KeplerSimulator, kepler_sim_url: str
) -> None:
    kepler_sim.add_fault("delay", path="/v1/usage", delay=0.5)
    async with AsyncKepler(
        LIVE_KEY, base_url=kepler_sim_url, timeout=0.05, retry=ka.RetryPolicy(attempts=1)
    ) as kepler:
        with pytest.raises(ka.TransportError, match="timed out"):
            await kepler.usage()


@only_on("asyncio")
async def test_a_thousand_domains_through_score_many_over_http() -> None:
    """1,000 cold runs over uvicorn in real time, runs 100x shorter than documented
    (real time: one loop is enough)."""
    from kepler_async.testing import create_app, serve

    scale = 0.01
    sim = KeplerSimulator(seed=21, time_scale=scale, per_key_cold_per_hour=None)
    policy = ka.PollPolicy(
        first_delay=28 * scale,
        interval=5 * scale,
        multiplier=1.02,
        cap=10 * scale,
        jitter=0.1,
        deadline=None,
    )
    domains = [f"company-{i:04d}.com" for i in range(1000)]
    with serve(create_app(sim)) as url:
        async with AsyncKepler(LIVE_KEY, base_url=url, poll_policy=policy) as kepler:
            outcomes = [o async for o in kepler.score_many(domains)]
    assert len(outcomes) == 1000
    assert sorted(o.index for o in outcomes) == list(range(1000))
    assert sim.counters.total_cold_runs == 1000
    assert set(sim.counters.cold_runs_billed.values()) == {1}
    for outcome in outcomes:
        assert outcome.job_id is not None
        job = sim.jobs[outcome.job_id]
        if outcome.status == "scored":
            assert job.failure_reason is None
        else:
            assert isinstance(outcome.error, ka.JobFailed), outcome.error
            assert outcome.error.failure_reason == job.failure_reason


@only_on("asyncio")
async def test_the_real_cold_limit_over_http_stalls_nothing() -> None:
    """300 domains against the simulator's real limit (200 cold runs per key per hour),
    over real sockets on each wire: 200 billed once each, the rest not_attempted, no
    deadline hit (real time, runs 1,000x shorter: one loop is enough)."""
    from kepler_async.testing import serve

    scale = 0.001
    sim = KeplerSimulator(seed=22, time_scale=scale)  # default limits and failure mix
    policy = ka.PollPolicy(first_delay=28 * scale, interval=5 * scale, cap=10 * scale)
    with serve(sim.create_app()) as url:
        async with AsyncKepler(LIVE_KEY, base_url=url, poll_policy=policy) as kepler:
            outcomes = [o async for o in kepler.score_many(f"d{n}.com" for n in range(300))]
    statuses = Counter(o.status for o in outcomes)
    assert len(outcomes) == 300
    assert not any(isinstance(o.error, ka.DeadlineExceeded) for o in outcomes)
    assert statuses["scored"] + statuses["failed"] == sim.counters.total_cold_runs == 200
    assert set(sim.counters.cold_runs_billed.values()) == {1}
    assert statuses["not_attempted"] == 100


run_on_asyncio_and_trio(globals(), virtual_time=False)
