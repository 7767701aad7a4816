"""Type-checked only (``mypy --strict tests/typing_api.py``), never run.

Calls every public signature so that a change to one shows up as a type error here.
"""

from __future__ import annotations

from datetime import datetime

import httpx

import kepler_async as ka
from kepler_async.testing import (
    LIVE_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    ManualClock,
    asgi_transport,
    simulated_client,
)


async def every_call() -> None:
    clock = ManualClock()
    sim = KeplerSimulator(seed=1, time_scale=0.01, clock=clock, failure_mix={"sfn_failed": 0.1})
    sim.add_key("ki_live_mine", plan="growth", account="acct_me")
    sim.seed_score("stripe.com", age=60.0)
    sim.script("stripe.com", failure_reason="sfn_timed_out", duration=30.0)
    sim.add_fault("status", path="/v1/usage", status=503, times=2)
    clock.advance(1.0)
    billed: int = sim.counters.cold_runs_billed["stripe.com"]

    kepler = ka.AsyncKepler(
        LIVE_KEY,
        base_url=SIM_BASE_URL,
        transport=asgi_transport(sim),
        timeout=10.0,
        retry=ka.RetryPolicy(attempts=2, initial=0.1, multiplier=2.0, cap=1.0, jitter=0.5),
    )
    async with kepler as k:
        score: ka.Score = await k.get_score("stripe.com")
        when: datetime = score.scored_at
        rating: ka.KIRating | str = score.ki_rating
        row: ka.KeplerJob = await k.get_job("9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f")
        page: ka.HistoryPage = await k.history("stripe.com", limit=10, cursor=None)
        async for record in k.iter_history("stripe.com", page_size=50, max_records=100):
            value: float = record.composite_score
        cohort: ka.Cohort = await k.cohort("stripe.com")
        confidence: ka.Confidence = await k.confidence("stripe.com")
        distribution: ka.Distribution = await k.distribution()
        movers: ka.Movers = await k.movers(ka.MoversWindow.DAYS_7)
        movers = await k.movers("90d")
        manifest: ka.SignalsManifest = await k.signals()
        usage: ka.Usage = await k.usage()
        scored: ka.Score = await k.score("stripe.com", force_fresh=False, deadline=60.0)
        job: ka.ScoreJob = await k.submit("stripe.com", deadline=None)
        done: bool = job.done()
        status: str = job.status
        again: ka.Score = await job
        within: ka.Score = await job.result(timeout=5.0)
        resumed: ka.ScoreJob = k.resume("9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f", domain="a.com")
        job.add_done_callback(lambda handle: None)
        cancelled: bool = resumed.cancel()
        async for outcome in k.score_many(["a.com", "b.com"], max_outstanding=10):
            item: ka.ScoreOutcome = outcome
            maybe: ka.Score | None = outcome.score
        stats: ka.EngineStatistics = k.statistics()
        value_now: ka.Score = job.result_nowait()
        async with k.score_many(["a.com"]) as batch:
            first: ka.ScoreOutcome = await batch.__anext__()
        await batch.aclose()
        del value_now, first
        policy: ka.PollPolicy = k.poll_policy.scaled(0.5).with_deadline(None)
    await kepler.aclose()
    sim_client: ka.AsyncKepler = simulated_client(sim, LIVE_KEY, max_in_flight=4)
    await sim_client.aclose()
    store = ka.SQLiteJobStore("journal.db", threaded=True)
    journaled = ka.AsyncKepler(LIVE_KEY, journal=store)
    entry: ka.JournalEntry | None = await store.get("kepler", "stripe.com")
    entries: list[ka.JournalEntry] = await store.entries()
    await journaled.aclose()
    await store.aclose()
    del entry, entries
    async with ka.JobEngine(max_in_flight=5) as engine:
        from kepler_async.deepidv import AdverseMediaResult, AsyncDeepidv
        from kepler_async.midlyr import AsyncMidLyr, MidLyrJob
        from kepler_async.parsetx import AsyncParseTx, EnrichResult

        async with AsyncDeepidv("key", engine=engine) as deepidv:
            media: AdverseMediaResult = await deepidv.screen_adverse_media(
                first_name="A", last_name="B", date_of_birth="2000-01-01"
            )
            resumed_d: ka.JobHandle[AdverseMediaResult] = deepidv.resume("job_1", deadline=5)
            per_client: ka.EngineStatistics = deepidv.statistics()
            shared: ka.JobEngine = deepidv.engine
            del resumed_d, per_client, shared
        midlyr = AsyncMidLyr("key", engine=engine)
        job_row: MidLyrJob = await midlyr.get_job("job_1")
        parsetx = AsyncParseTx("pt_live_key", engine=engine)
        handle: ka.JobHandle[EnrichResult] = await parsetx.submit_enrich(["AMZN"])
        del media, job_row, handle
    closed: bool = kepler.closed
    name: str = ka.normalize_domain("https://www.stripe.com")
    async with httpx.AsyncClient() as http:
        ka.AsyncKepler(LIVE_KEY, http_client=http)
    del billed, when, rating, row, page, value, cohort, confidence, distribution
    del movers, manifest, usage, closed, name, scored, done, status, again, within
    del cancelled, item, maybe, stats, policy


def errors(error: ka.KeplerError) -> None:
    if isinstance(error, ka.RateLimited):
        wait: float | None = error.retry_after
        reason: str | None = error.reason
        del wait, reason
    if isinstance(error, ka.JobFailed):
        retry: bool = error.retryable
        job_id: str = error.job_id
        del retry, job_id
    if isinstance(error, ka.TransportError):
        sent: bool = error.request_sent
        del sent
