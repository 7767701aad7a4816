"""AsyncKepler: construction, lifecycle, and every plain endpoint against the simulator."""

from __future__ import annotations

import logging
from datetime import datetime

import httpx
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async.testing import (
    LIVE_KEY,
    OTHER_KEY,
    SANDBOX_KEY,
    KeplerSimulator,
    ManualClock,
)
from tests.conftest import KeplerFactory, post_score

# --- construction ---------------------------------------------------------------------


def test_a_missing_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEPLER_API_KEY", raising=False)
    with pytest.raises(ka.ConfigurationError, match="KEPLER_API_KEY"):
        AsyncKepler()


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEPLER_API_KEY", SANDBOX_KEY)
    assert AsyncKepler().sandbox


@pytest.mark.parametrize(
    "key",
    ["sk_live_abcdef", "KI_LIVE_abc", "ki_live_", "ki_live_has space", "ki_test_tab\there", ""],
)
def test_a_malformed_key_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(ka.ConfigurationError) as info:
        AsyncKepler(key or "ki_live_\n")
    text = str(info.value)
    assert "ki_live_" in text  # says what was expected
    if len(key) > 8:
        assert key not in text


@pytest.mark.parametrize(
    "base_url",
    ["api.keplerinsights.us", "ftp://api.keplerinsights.us", "https://", "http://x/?q=1", "::"],
)
def test_a_base_url_without_scheme_or_host_fails_at_construction(base_url: str) -> None:
    with pytest.raises(ka.ConfigurationError, match="base_url"):
        AsyncKepler(LIVE_KEY, base_url=base_url)


def test_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEPLER_BASE_URL", "http://127.0.0.1:8000/")
    assert AsyncKepler(LIVE_KEY).base_url == "http://127.0.0.1:8000"


@pytest.mark.parametrize("timeout", [0, -1, "10", True])
def test_bad_timeouts_are_refused(timeout: object) -> None:
    with pytest.raises(ka.ConfigurationError, match="timeout"):
        AsyncKepler(LIVE_KEY, timeout=timeout)  # type: ignore[arg-type]


def test_http_client_and_transport_are_exclusive() -> None:
    with pytest.raises(ka.ConfigurationError, match="not both"):
        AsyncKepler(
            LIVE_KEY,
            http_client=httpx.AsyncClient(),
            transport=httpx.MockTransport(lambda r: None),  # type: ignore[arg-type]
        )


def test_repr_shows_state_but_never_the_key() -> None:
    secret = "ki_live_0123456789abcdef"
    client = AsyncKepler(secret, base_url="https://api.example.test")
    text = repr(client)
    assert secret not in text
    assert "0123456789" not in text
    assert text == (
        "<AsyncKepler base_url='https://api.example.test' key=ki_live_*** open, 0 jobs pending>"
    )


# --- lifecycle ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_context_manager_closes_and_a_closed_client_says_so(sim: KeplerSimulator) -> None:
    from kepler_async.testing import SIM_BASE_URL, asgi_transport

    async with AsyncKepler(SANDBOX_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim)) as k:
        assert (await k.get_score("acme.test")).composite_score == 67.2
    assert k.closed
    assert "closed" in repr(k)
    with pytest.raises(ka.ClientClosed, match="closed"):
        await k.get_score("acme.test")
    with pytest.raises(ka.ClientClosed):
        async with k:
            pass


@pytest.mark.asyncio
async def test_works_without_async_with_as_in_a_notebook(make_kepler: KeplerFactory) -> None:
    kepler = make_kepler(SANDBOX_KEY)
    assert (await kepler.usage()).mode == "sandbox"
    await kepler.aclose()
    await kepler.aclose()


@pytest.mark.asyncio
async def test_an_injected_http_client_is_not_closed(sim: KeplerSimulator) -> None:
    from kepler_async.testing import SIM_BASE_URL, asgi_transport

    async with httpx.AsyncClient(transport=asgi_transport(sim)) as http:
        async with AsyncKepler(SANDBOX_KEY, base_url=SIM_BASE_URL, http_client=http) as kepler:
            await kepler.signals()
        assert not http.is_closed


# --- bad input never reaches the wire ---------------------------------------------------


def _exploding_transport() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request should be sent, got {request.url}")

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    "call",
    [
        lambda k: k.get_score("not a domain"),
        lambda k: k.get_score("../../v1/usage"),
        lambda k: k.history(""),
        lambda k: k.history("a.com", limit=0),
        lambda k: k.history("a.com", limit=501),
        lambda k: k.history("a.com", cursor=""),
        lambda k: k.cohort("a/b"),
        lambda k: k.confidence("x"),
        lambda k: k.movers("1y"),
        lambda k: k.get_job("not-a-uuid"),
        lambda k: k.get_job("../score/a.com"),
    ],
)
@pytest.mark.asyncio
async def test_invalid_input_raises_before_any_request(call) -> None:
    async with AsyncKepler(LIVE_KEY, transport=_exploding_transport()) as kepler:
        with pytest.raises(ka.InvalidInput):
            await call(kepler)


@pytest.mark.asyncio
async def test_iter_history_checks_page_size_before_any_request() -> None:
    async with AsyncKepler(LIVE_KEY, transport=_exploding_transport()) as kepler:
        with pytest.raises(ka.InvalidInput):
            async for _ in kepler.iter_history("a.com", page_size=1000):
                pass


# --- sandbox endpoints ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_sandbox_score_for_the_four_canned_domains(sandbox: AsyncKepler) -> None:
    expected = {
        "acme.test": ("KI-1", 67.2),
        "unicorn.test": ("KI-1+", 79.4),
        "struggling.test": ("KI-4", 32.1),
        "cohort.test": ("KI-3", 45.0),
    }
    for domain, (rating, composite) in expected.items():
        score = await sandbox.get_score(f"https://www.{domain.upper()}/")
        assert score.domain == domain
        assert score.ki_rating == rating
        assert score.composite_score == composite
        assert score.sandbox


@pytest.mark.asyncio
async def test_sandbox_rejects_real_domains(sandbox: AsyncKepler) -> None:
    with pytest.raises(ka.BadRequest, match="sandbox: only"):
        await sandbox.get_score("stripe.com")


@pytest.mark.asyncio
async def test_sandbox_jobs_do_not_exist(sandbox: AsyncKepler) -> None:
    with pytest.raises(ka.JobNotFound):
        await sandbox.get_job("9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f")


@pytest.mark.asyncio
async def test_sandbox_analytics(sandbox: AsyncKepler) -> None:
    cohort = await sandbox.cohort("cohort.test")
    assert cohort.cohort.count == 12
    assert [m.domain for m in cohort.members][:1][0].startswith("cohort-")
    scores = [m.composite_score or 0.0 for m in cohort.members]
    assert scores == sorted(scores, reverse=True)

    confidence = await sandbox.confidence("struggling.test")
    assert confidence.band is ka.ConfidenceBand.DIRECTIONAL
    assert confidence.failed_fetchers

    distribution = await sandbox.distribution()
    assert distribution.universe.count == 12
    assert len(distribution.universe.composite_hist) == 20
    assert len(distribution.universe.scale_premium_hist) == 12

    for window in ("7d", "30d", ka.MoversWindow.DAYS_90):
        movers = await sandbox.movers(window)
        assert movers.gainers[0].domain == "unicorn.test"
        assert movers.decliners[0].domain == "struggling.test"
        assert movers.decliners[0].delta == pytest.approx(-8.9)

    manifest = await sandbox.signals()
    assert len(manifest.signals) == 67

    usage = await sandbox.usage()
    assert usage.sandbox if hasattr(usage, "sandbox") else usage.mode == "sandbox"


@pytest.mark.asyncio
async def test_sandbox_history_has_4_to_12_daily_records(sandbox: AsyncKepler) -> None:
    for domain in ("acme.test", "unicorn.test", "struggling.test", "cohort.test"):
        records = [r async for r in sandbox.iter_history(domain, page_size=3)]
        assert 4 <= len(records) <= 12
        stamps = [r.scored_at for r in records]
        assert stamps == sorted(stamps, reverse=True)


# --- live endpoints -------------------------------------------------------------------


async def _cold_run(sim: KeplerSimulator, clock: ManualClock, domain: str) -> str:
    response = await post_score(sim, LIVE_KEY, {"domain": domain})
    assert response.status_code == 202, response.text
    clock.advance(200)
    return str(response.json()["job_id"])


@pytest.mark.asyncio
async def test_live_score_and_job_after_a_cold_run(
    live: AsyncKepler, sim: KeplerSimulator, clock: ManualClock
) -> None:
    with pytest.raises(ka.NotFound):
        await live.get_score("stripe.com")
    sim.script("stripe.com", failure_reason=None, duration=40)
    job_id = await _cold_run(sim, clock, "stripe.com")
    job = await live.get_job(job_id.upper())
    assert job.status is ka.JobStatus.COMPLETE
    assert job.score_url == "/v1/score/stripe.com"
    assert job.result_ref is not None
    assert isinstance(job.created_at, datetime)
    assert job.completed_at is not None
    assert (job.completed_at - job.created_at).total_seconds() == pytest.approx(40)
    score = await live.get_score("www.stripe.com")
    assert score.domain == "stripe.com"
    assert score.scored_at == job.result_ref.scored_at
    assert not score.sandbox


@pytest.mark.asyncio
async def test_live_failed_job_reports_its_reason(
    live: AsyncKepler, sim: KeplerSimulator, clock: ManualClock
) -> None:
    sim.script("broken.io", failure_reason="sfn_timed_out")
    job = await live.get_job(await _cold_run(sim, clock, "broken.io"))
    assert job.status is ka.JobStatus.FAILED
    assert job.failure_reason is ka.FailureReason.SFN_TIMED_OUT
    assert job.score_url is None


@pytest.mark.asyncio
async def test_another_accounts_job_is_forbidden(
    make_kepler: KeplerFactory, sim: KeplerSimulator, clock: ManualClock
) -> None:
    job_id = await _cold_run(sim, clock, "stripe.com")
    with pytest.raises(ka.JobForbidden):
        await make_kepler(OTHER_KEY).get_job(job_id)


@pytest.mark.asyncio
async def test_unknown_job_is_not_found(live: AsyncKepler) -> None:
    with pytest.raises(ka.JobNotFound):
        await live.get_job("9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f")


@pytest.mark.asyncio
async def test_live_history_pages_follow_the_cursor(
    live: AsyncKepler, sim: KeplerSimulator
) -> None:
    for age in range(7):
        sim.seed_score("stripe.com", age=age * 86400.0)
    page = await live.history("stripe.com", limit=3)
    assert len(page.records) == 3
    assert page.next_cursor
    records = [r async for r in live.iter_history("stripe.com", page_size=3)]
    assert len(records) == 7
    assert [r.scored_at for r in records] == sorted((r.scored_at for r in records), reverse=True)
    capped = [r async for r in live.iter_history("stripe.com", page_size=2, max_records=5)]
    assert len(capped) == 5
    with pytest.raises(ka.BadRequest, match="invalid_cursor"):
        await live.history("stripe.com", cursor="bm90LWEtY3Vyc29y")
    with pytest.raises(ka.NotFound):
        await live.history("never-scored.com")


@pytest.mark.asyncio
async def test_live_company_and_universe_endpoints(live: AsyncKepler, sim: KeplerSimulator) -> None:
    sim.seed_score("stripe.com", age=40 * 86400.0)
    sim.seed_score("stripe.com", age=3600.0)
    sim.seed_score("plaid.com", age=100.0)
    cohort = await live.cohort("stripe.com")
    assert cohort.target.domain == "stripe.com"
    assert cohort.cohort.count == len(cohort.members)
    confidence = await live.confidence("stripe.com")
    assert 0 <= confidence.completeness_pct <= 100
    distribution = await live.distribution()
    assert distribution.universe.count == 2
    movers = await live.movers("30d")
    assert {m.domain for m in movers.gainers + movers.decliners} == {"stripe.com"}
    with pytest.raises(ka.NotFound):
        await live.cohort("never-scored.com")
    with pytest.raises(ka.NotFound):
        await live.confidence("never-scored.com")


@pytest.mark.asyncio
async def test_live_usage_counts_cached_and_cold_calls(
    live: AsyncKepler, sim: KeplerSimulator, clock: ManualClock
) -> None:
    await _cold_run(sim, clock, "stripe.com")
    await live.get_score("stripe.com")
    usage = await live.usage()
    assert (usage.cold_calls, usage.cached_calls, usage.total_calls) == (1, 1, 2)
    assert usage.tier is ka.Tier.ENTERPRISE
    assert usage.tier_limits is not None
    assert usage.tier_limits.cold_calls_included is None


@pytest.mark.asyncio
async def test_a_wrong_key_is_an_authentication_error(make_kepler: KeplerFactory) -> None:
    with pytest.raises(ka.AuthenticationError):
        await make_kepler("ki_live_unknown_key").usage()


@pytest.mark.asyncio
async def test_faults_surface_as_typed_errors(
    make_kepler: KeplerFactory, sim: KeplerSimulator
) -> None:
    kepler = make_kepler(LIVE_KEY, retry=ka.RetryPolicy(attempts=1))
    sim.add_fault("malformed", path="/v1/usage")
    with pytest.raises(ka.ProtocolError, match="not JSON"):
        await kepler.usage()
    sim.add_fault("status", path="/v1/usage", status=503, code="unavailable")
    with pytest.raises(ka.ServerError):
        await kepler.usage()
    assert (await kepler.usage()).period


@pytest.mark.asyncio
async def test_transient_faults_are_retried_for_reads(
    make_kepler: KeplerFactory, sim: KeplerSimulator
) -> None:
    kepler = make_kepler(LIVE_KEY, retry=ka.RetryPolicy(attempts=3, initial=0.0))
    sim.add_fault("status", path="/v1/signals", status=502, times=2)
    assert len((await kepler.signals()).signals) == 67
    assert sim.counters.requests["GET /v1/signals"] == 3


@pytest.mark.asyncio
async def test_the_key_never_reaches_the_logs(
    make_kepler: KeplerFactory, sim: KeplerSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kepler = make_kepler(LIVE_KEY, retry=ka.RetryPolicy(attempts=2, initial=0.0))
    sim.add_fault("status", path="/v1/usage", status=500)
    await kepler.usage()
    with pytest.raises(ka.NotFound) as info:
        await kepler.get_score("never-scored.com")
    assert caplog.records, "expected debug logging of the retry"
    assert all(LIVE_KEY not in r.getMessage() for r in caplog.records)
    assert LIVE_KEY not in str(info.value)
    assert LIVE_KEY not in repr(info.value)
    assert LIVE_KEY not in repr(kepler)


@pytest.mark.parametrize(
    "url",
    ["https://api.keplerinsights.us/v1", "https://api.keplerinsights.us/v1/score"],
)
def test_a_base_url_with_a_path_is_refused_with_what_to_do(url: str) -> None:
    with pytest.raises(ka.ConfigurationError, match="give the API's origin only"):
        AsyncKepler(SANDBOX_KEY, base_url=url)


def test_plain_http_to_a_remote_host_needs_an_explicit_opt_in() -> None:
    with pytest.raises(ka.ConfigurationError, match="allow_plain_http=True"):
        AsyncKepler(SANDBOX_KEY, base_url="http://api.keplerinsights.us")
    AsyncKepler(SANDBOX_KEY, base_url="http://api.keplerinsights.us", allow_plain_http=True)
    for local in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        AsyncKepler(SANDBOX_KEY, base_url=local)  # this machine: no opt-in needed
