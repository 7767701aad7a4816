"""deepidv, MidLyr and ParseTx on the engine: happy paths, failures, contradictions, and
all four APIs on one engine. Fake time on asyncio and trio."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import anyio
import httpx
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler, JobEngine
from kepler_async.deepidv import AdverseMediaResult, AsyncDeepidv, DeepidvJobFailed, RiskLevel
from kepler_async.midlyr import AsyncMidLyr, MidLyrJobFailed, ScreenResult, UnknownResult
from kepler_async.parsetx import (
    AsyncParseTx,
    EnrichResult,
    ItemStatus,
    ParseTxJobFailed,
    QuotaExceeded,
    TokenBudgetExceeded,
)
from kepler_async.testing import (
    DEEPIDV_KEY,
    LIVE_KEY,
    MIDLYR_KEY,
    PARSETX_KEY,
    SIM_BASE_URL,
    DeepidvSimulator,
    KeplerSimulator,
    MidLyrSimulator,
    ParseTxSimulator,
    asgi_transport,
)
from tests.backends import run_on_asyncio_and_trio

PERSON: dict[str, Any] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "date_of_birth": "1815-12-10",
}


def transport(sim: object) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=sim.create_app())  # type: ignore[attr-defined]


def deepidv(sim: DeepidvSimulator, key: str = DEEPIDV_KEY, **kw: object) -> AsyncDeepidv:
    return AsyncDeepidv(key, base_url="http://deepidv.sim", transport=transport(sim), **kw)  # type: ignore[arg-type]


def midlyr(sim: MidLyrSimulator, key: str = MIDLYR_KEY, **kw: object) -> AsyncMidLyr:
    return AsyncMidLyr(key, base_url="http://midlyr.sim", transport=transport(sim), **kw)  # type: ignore[arg-type]


def parsetx(sim: ParseTxSimulator, key: str = PARSETX_KEY, **kw: object) -> AsyncParseTx:
    return AsyncParseTx(key, base_url="http://parsetx.sim", transport=transport(sim), **kw)  # type: ignore[arg-type]


# --- deepidv ------------------------------------------------------------------------------


async def test_deepidv_screening_resolves_to_a_typed_result() -> None:
    sim = DeepidvSimulator(clock=anyio.current_time, failure_rate=0)
    async with deepidv(sim) as client:
        result = await client.screen_adverse_media(**PERSON, country="gb")
    assert isinstance(result, AdverseMediaResult)
    assert isinstance(result.risk_level, RiskLevel)
    assert len(result.exposures_by_category) == 9
    job = next(iter(sim.jobs.values()))
    assert job.payload["country"] == "GB"
    assert sim.counters.polls_served >= 2


async def test_deepidv_failed_job_carries_its_error_string() -> None:
    sim = DeepidvSimulator(clock=anyio.current_time, failure_rate=1)
    async with deepidv(sim) as client:
        with pytest.raises(DeepidvJobFailed, match="timed out") as info:
            await client.screen_adverse_media(**PERSON)
    assert info.value.job_id in sim.jobs


@pytest.mark.parametrize("created_at_ms", [True, False])
async def test_deepidv_upper_case_statuses_and_either_created_at_unit(created_at_ms: bool):
    sim = DeepidvSimulator(
        clock=anyio.current_time, failure_rate=0, uppercase=True, created_at_ms=created_at_ms
    )
    async with deepidv(sim) as client:
        handle = await client.submit_adverse_media(**PERSON)
        job = await client.get_job(handle.job_id or "")
        assert job.status == "pending"
        assert isinstance(job.created_at, datetime)
        assert abs((job.created_at - sim.epoch).total_seconds()) < 5
        assert isinstance(await handle, AdverseMediaResult)  # COMPLETED counts as ready


@pytest.mark.parametrize(("status", "cls"), [(403, ka.JobForbidden), (404, ka.JobNotFound)])
async def test_deepidv_foreign_jobs_fail_whichever_status_comes(status: int, cls: type) -> None:
    sim = DeepidvSimulator(clock=anyio.current_time, foreign_job_status=status)
    async with deepidv(sim) as mine:
        handle = await mine.submit_adverse_media(**PERSON)
    async with deepidv(sim, key="deepidv_other_org") as theirs:
        with pytest.raises(cls):
            await theirs.resume(handle.job_id or "")


async def test_deepidv_idempotency_key_makes_a_retried_submit_safe() -> None:
    sim = DeepidvSimulator(clock=anyio.current_time, failure_rate=0)
    sim.add_fault("status", path="/v1/screening", method="POST", status=503, code="busy")
    async with deepidv(sim, retry=ka.RetryPolicy(initial=0.1)) as client:
        first = await client.submit_adverse_media(**PERSON, idempotency_key="k-1")
        again = await client.submit_adverse_media(**PERSON, idempotency_key="k-1")
        assert first.job_id == again.job_id
        assert first == again  # one watched job
    assert sim.counters.jobs_created == 1
    assert sim.counters.requests["POST /v1/screening/adverse-media"] == 2  # one flight


async def test_deepidv_bad_input_and_unknown_status() -> None:
    sim = DeepidvSimulator(clock=anyio.current_time)
    async with deepidv(sim) as client:
        with pytest.raises(ka.InvalidInput, match="YYYY-MM-DD"):
            await client.submit_adverse_media(**{**PERSON, "date_of_birth": "10/12/1815"})
        with pytest.raises(ka.InvalidJobId):
            client.resume("../../v1/screening")
    assert sim.counters.requests == {}
    from kepler_async.deepidv import DeepidvDialect

    with pytest.raises(ka.ProtocolError, match=r"deepidv.*'archived'"):
        DeepidvDialect().classify_poll("j1", None, {"jobId": "j1", "status": "ARCHIVED"})


# --- MidLyr -------------------------------------------------------------------------------


async def test_midlyr_screen_resolves_to_a_typed_result() -> None:
    sim = MidLyrSimulator(clock=anyio.current_time, failure_rate=0, seed=3)
    async with midlyr(sim) as client:
        results = [
            await client.screen("0% APR forever", scenario="marketing_asset") for _ in range(4)
        ]
    assert all(isinstance(r, ScreenResult) for r in results)
    cited = [f for r in results if isinstance(r, ScreenResult) for f in r.findings]
    assert cited
    assert cited[0].citations[0].regulation.title == "Regulation Z"


async def test_midlyr_unknown_result_types_are_kept_raw() -> None:
    sim = MidLyrSimulator(
        clock=anyio.current_time, failure_rate=0, result_type="analysis.new.result"
    )
    async with midlyr(sim) as client:
        result = await client.screen("text")
    assert isinstance(result, UnknownResult)
    assert result.raw["extra"] == {"x": 1}


async def test_midlyr_failure_carries_code_and_message() -> None:
    sim = MidLyrSimulator(clock=anyio.current_time, failure_rate=1)
    async with midlyr(sim) as client:
        with pytest.raises(MidLyrJobFailed, match="could not be completed") as info:
            await client.screen("text")
    assert info.value.failure_reason == "analysis_failed"


async def test_midlyr_never_resends_the_post_and_checks_input_first() -> None:
    sim = MidLyrSimulator(clock=anyio.current_time)
    sim.add_fault("status", path="/api/v1/analysis", method="POST", status=503, code="busy")
    async with midlyr(sim) as client:
        with pytest.raises(ka.ServerError):
            await client.submit_screen("text")
        assert sim.counters.requests["POST /api/v1/analysis/screen"] == 1
        with pytest.raises(ka.InvalidInput, match="empty"):
            await client.submit_screen("   ")
        with pytest.raises(ka.InvalidInput, match="scenario"):
            await client.submit_screen("text", scenario="tweet")
        with pytest.raises(ka.JobNotFound):
            await client.resume("job_0000000000000000000000000")
    assert sim.counters.jobs_created == 0


# --- ParseTx ------------------------------------------------------------------------------


async def test_parsetx_results_come_in_order_with_item_statuses() -> None:
    sim = ParseTxSimulator(clock=anyio.current_time, failure_rate=0)
    strings = ["AMZN Mktp US", "12345678", "NETFLIX.COM ON DEMAND", "UBER EATS"]
    async with parsetx(sim) as client:
        result = await client.enrich(strings)
    assert isinstance(result, EnrichResult)
    assert [item.input for item in result.items] == strings
    assert result.items[1].status is ItemStatus.REJECTED
    assert result.items[0].status is ItemStatus.COMPLETE
    assert result.items[0].merchant == "Amzn"


async def test_parsetx_batches_are_checked_before_sending() -> None:
    sim = ParseTxSimulator(clock=anyio.current_time)
    async with parsetx(sim) as client:
        for bad in ([], ["x"] * 501, "AMZN", ["ok", ""]):
            with pytest.raises(ka.InvalidInput):
                await client.submit_enrich(bad)
    assert sim.counters.requests == {}


async def test_parsetx_foreign_key_fails_the_job_not_the_client() -> None:
    sim = ParseTxSimulator(clock=anyio.current_time, failure_rate=0)
    async with parsetx(sim) as mine:
        mine_handle = await mine.submit_enrich(["AMZN Mktp US"])
    async with parsetx(sim, key="pt_live_other_key") as theirs:
        own = await theirs.submit_enrich(["UBER EATS"])
        with pytest.raises(ka.JobForbidden):
            await theirs.resume(mine_handle.job_id or "")
        assert isinstance(await own, EnrichResult)  # not failed by the 401


async def test_parsetx_quota_bodies_are_typed() -> None:
    monthly = ParseTxSimulator(clock=anyio.current_time, monthly_quota=1)
    async with parsetx(monthly) as client:
        with pytest.raises(QuotaExceeded) as info:
            await client.submit_enrich(["A", "B"])
    assert (info.value.usage, info.value.limit, info.value.plan) == (0, 1, "starter")
    daily = ParseTxSimulator(clock=anyio.current_time, daily_token_budget=1)
    async with parsetx(daily) as client:
        with pytest.raises(TokenBudgetExceeded) as budget:
            await client.submit_enrich(["A", "B"])
    assert budget.value.token_limit == 1
    assert isinstance(budget.value, ka.RateLimited)


async def test_parsetx_failed_job() -> None:
    sim = ParseTxSimulator(clock=anyio.current_time, failure_rate=1)
    async with parsetx(sim) as client:
        with pytest.raises(ParseTxJobFailed, match="support"):
            await client.enrich(["AMZN"])


# --- one engine, four APIs -------------------------------------------------------------------


def test_fault_kinds_are_checked() -> None:
    sim = DeepidvSimulator()
    with pytest.raises(ValueError, match="kind"):
        sim.add_fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_after"):
        sim.add_fault("status", retry_after=-1)


async def test_one_engine_polls_jobs_of_all_four_apis_at_once() -> None:
    kepler_sim = KeplerSimulator(
        clock=anyio.current_time, per_key_cold_per_hour=None, failure_mix={}
    )
    deepidv_sim = DeepidvSimulator(clock=anyio.current_time, failure_rate=0)
    midlyr_sim = MidLyrSimulator(clock=anyio.current_time, failure_rate=0)
    parsetx_sim = ParseTxSimulator(clock=anyio.current_time, failure_rate=0)
    async with JobEngine(max_in_flight=4) as engine:
        kepler = AsyncKepler(
            LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(kepler_sim), engine=engine
        )
        clients = (
            kepler,
            deepidv(deepidv_sim, engine=engine),
            midlyr(midlyr_sim, engine=engine),
            parsetx(parsetx_sim, engine=engine),
        )
        handles: list[object] = []
        handles += [await kepler.submit(f"d{i}.com") for i in range(10)]
        handles += [await clients[1].submit_adverse_media(**PERSON) for _ in range(10)]
        handles += [await clients[2].submit_screen(f"text {i}") for i in range(10)]
        handles += [await clients[3].submit_enrich([f"SHOP {i}"]) for i in range(10)]
        assert engine.statistics().jobs_pending == 40
        results = [await h for h in handles]  # type: ignore[misc]
        stats = engine.statistics()
        for client in clients:
            await client.aclose()
    assert [type(r).__name__ for r in results[::10]] == [
        "Score",
        "AdverseMediaResult",
        "ScreenResult",
        "EnrichResult",
    ]
    assert stats.jobs_succeeded == 40
    assert stats.max_in_flight == 4
    assert stats.polls_sent == (
        kepler_sim.counters.polls_served
        + deepidv_sim.counters.polls_served
        + midlyr_sim.counters.polls_served
        + parsetx_sim.counters.polls_served
    )


# --- journals for the other APIs -----------------------------------------------------------


async def test_vendor_jobs_are_journaled_resumed_and_served(tmp_path) -> None:
    from kepler_async import SQLiteJobStore

    path = tmp_path
    deepidv_sim = DeepidvSimulator(clock=anyio.current_time, failure_rate=0)
    midlyr_sim = MidLyrSimulator(
        clock=anyio.current_time, failure_rate=0, result_type="analysis.new.result"
    )
    parsetx_sim = ParseTxSimulator(clock=anyio.current_time, failure_rate=0)

    def clients() -> tuple[
        AsyncDeepidv, AsyncMidLyr, AsyncParseTx
    ]:  # one journal per API: a journal belongs to one base URL and key
        return (
            deepidv(deepidv_sim, journal=SQLiteJobStore(path / "d.db", threaded=False)),
            midlyr(midlyr_sim, journal=SQLiteJobStore(path / "m.db", threaded=False)),
            parsetx(parsetx_sim, journal=SQLiteJobStore(path / "p.db", threaded=False)),
        )

    async def submit_all(trio_: list[Any]) -> tuple[ka.JobHandle[Any], ...]:
        d, m, p = trio_
        return (
            await d.submit_adverse_media(**PERSON, journal_key="person-1"),
            await m.submit_screen("some text", journal_key="text-1"),
            await p.submit_enrich(["AMZN Mktp US"], journal_key="batch-1"),
        )

    async def run(*, wait: bool) -> tuple[list[ka.JobHandle[Any]], list[object]]:
        async with contextlib.AsyncExitStack() as stack:
            opened = [await stack.enter_async_context(c) for c in clients()]
            handles = list(await submit_all(opened))
            results = [await h for h in handles] if wait else []
        return handles, results

    handles, _ = await run(wait=False)  # closed with every job pending, as in a crash
    assert all(isinstance(h.exception(), ka.ClientClosed) for h in handles)
    resumed, results = await run(wait=True)
    assert [h.job_id for h in resumed] == [h.job_id for h in handles]
    created = (
        deepidv_sim.counters.jobs_created,
        midlyr_sim.counters.jobs_created,
        parsetx_sim.counters.jobs_created,
    )
    assert created == (1, 1, 1)

    requests = sum(
        sum(sim.counters.requests.values()) for sim in (deepidv_sim, midlyr_sim, parsetx_sim)
    )
    _, served = await run(wait=True)
    assert served == results  # restored from the journal, typed
    assert isinstance(served[1], UnknownResult)
    assert requests == sum(
        sum(sim.counters.requests.values()) for sim in (deepidv_sim, midlyr_sim, parsetx_sim)
    )


# --- documented contradictions, at the dialect level (pure) ---------------------------------


@pytest.mark.parametrize("status", [200, 201, 202])
def test_deepidv_any_2xx_with_a_job_id_is_a_queued_job(status: int) -> None:
    from kepler_async.deepidv import DeepidvDialect

    state = DeepidvDialect().classify_submit(status, {"jobId": "j-1", "status": "PENDING"})
    assert state.job_id == "j-1"


def test_deepidv_empty_exposures_and_a_failure_without_error_text() -> None:
    from kepler_async.deepidv import DeepidvDialect

    dialect = DeepidvDialect()
    done = dialect.classify_poll(
        "j",
        None,
        {
            "jobId": "j",
            "status": "ready",
            "createdAt": 1717593600,
            "updatedAt": "2026-05-28T10:00:00Z",
            "result": {
                "totalHits": 0,
                "riskLevel": "LOW",
                "riskScore": 0,
                "summary": "",
                "findings": [],
                "exposuresByCategory": {},
            },
        },
    )
    assert done.result.exposures_by_category == {}  # type: ignore[union-attr]
    failed = dialect.classify_poll("j", None, {"jobId": "j", "status": "failed"})
    assert "gave no reason" in str(failed.error)  # type: ignore[union-attr]
    seconds = dialect.decode_job({"jobId": "j", "status": "pending", "createdAt": 1717593600})
    millis = dialect.decode_job({"jobId": "j", "status": "pending", "createdAt": 1717593600000})
    assert seconds.created_at == millis.created_at


def test_midlyr_chunk_fields_may_be_missing_or_null() -> None:
    from kepler_async.midlyr import MidLyrDialect

    body = {
        "id": "job_1",
        "type": "screen_analysis",
        "status": "succeeded",
        "error": None,
        "result": {
            "type": "analysis.screen.result",
            "riskScore": 70,
            "findings": [
                {
                    "priority": "p2",
                    "title": "t",
                    "details": "d",
                    "citations": [
                        {
                            "regulation": {"id": "r1", "title": "Reg"},
                            "chunks": [{"text": "x", "startOffset": None}],
                        }
                    ],
                }
            ],
        },
    }
    done = MidLyrDialect().classify_poll("job_1", None, body)
    chunk = done.result.findings[0].citations[0].chunks[0]  # type: ignore[union-attr]
    assert (chunk.start_offset, chunk.end_offset, chunk.section_path) == (None, None, None)
    with pytest.raises(ka.ProtocolError, match=r"midlyr.*'queued'"):
        MidLyrDialect().classify_poll("job_1", None, {"id": "job_1", "status": "queued"})


def test_parsetx_item_count_is_absent_while_queued_and_ids_differ_by_endpoint() -> None:
    from kepler_async.parsetx import ParseTxDialect

    dialect = ParseTxDialect()
    job_id = "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f"
    assert (
        dialect.classify_submit(202, {"results": [], "job_id": job_id, "status": "queued"}).job_id
        == job_id
    )
    queued = dialect.decode_job({"id": job_id, "status": "queued", "results": []})
    assert queued.item_count is None
    with pytest.raises(ka.ProtocolError, match=r"parsetx.*'paused'"):
        dialect.classify_poll(job_id, None, {"id": job_id, "status": "paused", "results": []})
    assert "%2F" in dialect.poll_request("a/b").path  # an id never reaches a URL unescaped


run_on_asyncio_and_trio(globals(), virtual_time=True)
