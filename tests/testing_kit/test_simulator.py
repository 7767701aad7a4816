"""The simulator keeps the documented rules of the Kepler API."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from kepler_async.testing import (
    FREE_KEY,
    LIVE_KEY,
    OTHER_KEY,
    SANDBOX_KEY,
    SIM_BASE_URL,
    KeplerSimulator,
    ManualClock,
    asgi_transport,
)
from kepler_async.testing._sim_types import SimKey
from tests.conftest import post_score

HOUR = 3600.0
SANDBOX_ONLY = (
    "sandbox: only ['acme.test', 'cohort.test', 'struggling.test', 'unicorn.test'] supported"
)


def key(sim: KeplerSimulator, name: str) -> SimKey:
    return sim.keys[name]


def submit(sim: KeplerSimulator, name: str, domain: str, **extra: object):
    return sim.post_score(key(sim, name), {"domain": domain, **extra})


# --- POST /v1/score ---------------------------------------------------------------------


def test_cold_domain_gets_202_and_is_billed_once(sim: KeplerSimulator) -> None:
    answer = submit(sim, LIVE_KEY, "Stripe.com")
    assert answer.status == 202
    assert answer.body["status"] == "pending"
    assert answer.body["domain"] == "stripe.com"
    assert answer.body["poll_url"] == f"/v1/jobs/{answer.body['job_id']}"
    assert sim.counters.cold_runs_billed == Counter({"stripe.com": 1})


def test_fresh_record_is_served_inline_and_stale_one_starts_a_run(sim: KeplerSimulator) -> None:
    sim.add_key("ki_live_growth", plan="growth")
    sim.seed_score("fresh.com", age=5 * HOUR)
    sim.seed_score("stale.com", age=7 * HOUR)
    fresh = submit(sim, "ki_live_growth", "fresh.com")
    assert fresh.status == 200
    assert fresh.body["x_kepler"] == {
        "tier": "growth",
        "cache_status": "cached",
        "freshness_window_hours": 6,
    }
    assert submit(sim, "ki_live_growth", "stale.com").status == 202
    assert sim.counters.total_cold_runs == 1


def test_force_fresh_only_counts_on_enterprise(sim: KeplerSimulator) -> None:
    sim.add_key("ki_live_growth", plan="growth")
    sim.seed_score("stripe.com", age=60)
    assert submit(sim, "ki_live_growth", "stripe.com", force_fresh=True).status == 200
    sim.seed_score("stripe.com", age=0)
    assert submit(sim, LIVE_KEY, "stripe.com", force_fresh=True).status == 202


def test_concurrent_cold_posts_each_start_and_bill_a_run(sim: KeplerSimulator) -> None:
    """The docs leave this open; the simulator takes the costly reading, so tests catch it."""
    first = submit(sim, LIVE_KEY, "stripe.com")
    second = submit(sim, LIVE_KEY, "stripe.com")
    assert first.body["job_id"] != second.body["job_id"]
    assert sim.counters.cold_runs_billed["stripe.com"] == 2


@pytest.mark.parametrize(
    ("api_key", "body", "status", "error"),
    [
        (LIVE_KEY, {}, 400, "body.domain required"),
        (LIVE_KEY, {"domain": ""}, 400, "body.domain required"),
        (LIVE_KEY, {"domain": 42}, 400, "body.domain required"),
        (LIVE_KEY, None, 400, "body.domain required"),
        (LIVE_KEY, {"domain": "not a domain"}, 400, "invalid domain"),
        (LIVE_KEY, {"domain": "acme.test"}, 400, "test domains require a ki_test_ key"),
        (
            SANDBOX_KEY,
            {"domain": "stripe.com"},
            400,
            SANDBOX_ONLY,
        ),
        (FREE_KEY, {"domain": "stripe.com"}, 403, "free_tier_sandbox_only"),
    ],
)
def test_rejections(sim: KeplerSimulator, api_key: str, body: object, status: int, error: str):
    answer = sim.post_score(key(sim, api_key), body)
    assert (answer.status, answer.body["error"]) == (status, error)
    assert sim.counters.total_cold_runs == 0


def test_free_tier_403_carries_the_tier(sim: KeplerSimulator) -> None:
    assert submit(sim, FREE_KEY, "stripe.com").body["tier"] == "free"


def test_sandbox_always_answers_inline(sim: KeplerSimulator) -> None:
    answer = submit(sim, SANDBOX_KEY, "acme.test")
    assert answer.status == 200
    assert answer.body["mode"] == "sandbox"
    assert answer.body["composite_score"] == 67.2


# --- jobs -----------------------------------------------------------------------------


def test_jobs_settle_lazily_on_the_first_poll_after_the_run(
    sim: KeplerSimulator, clock: ManualClock
) -> None:
    sim.script("stripe.com", duration=30)
    job_id = submit(sim, LIVE_KEY, "stripe.com").body["job_id"]
    clock.advance(29)
    assert sim.get_job(key(sim, LIVE_KEY), job_id).body["status"] == "pending"
    assert sim.latest("stripe.com") is None
    clock.advance(2)
    assert sim.latest("stripe.com") is not None  # the record exists before anyone polls
    assert sim.jobs[job_id].status == "pending"  # ... but the row settles lazily
    body = sim.get_job(key(sim, LIVE_KEY), job_id).body
    assert body["status"] == "complete"
    assert body["score_url"] == "/v1/score/stripe.com"
    assert sim.jobs[job_id].status == "complete"


@pytest.mark.parametrize(
    "reason", ["sfn_failed", "sfn_timed_out", "sfn_aborted", "scoring_completed_no_record"]
)
def test_scripted_failures(sim: KeplerSimulator, clock: ManualClock, reason: str) -> None:
    sim.script("broken.io", failure_reason=reason, duration=10)
    job_id = submit(sim, LIVE_KEY, "broken.io").body["job_id"]
    clock.advance(11)
    body = sim.get_job(key(sim, LIVE_KEY), job_id).body
    assert (body["status"], body["failure_reason"]) == ("failed", reason)
    assert body["result_ref"] is None
    assert sim.latest("broken.io") is None


def test_jobs_expire_after_30_days(sim: KeplerSimulator, clock: ManualClock) -> None:
    job_id = submit(sim, LIVE_KEY, "stripe.com").body["job_id"]
    clock.advance(30 * 86400 - 1)
    assert sim.get_job(key(sim, LIVE_KEY), job_id).status == 200
    clock.advance(2)
    answer = sim.get_job(key(sim, LIVE_KEY), job_id)
    assert (answer.status, answer.body["error"]) == (404, "job not found")


def test_job_ids_are_bound_to_the_key(sim: KeplerSimulator) -> None:
    job_id = submit(sim, LIVE_KEY, "stripe.com").body["job_id"]
    answer = sim.get_job(key(sim, OTHER_KEY), job_id)
    assert (answer.status, answer.body) == (403, {"error": "forbidden"})
    sim.add_key("ki_live_same_account_other_key", plan="enterprise", account="acct_simulator")
    assert sim.get_job(key(sim, "ki_live_same_account_other_key"), job_id).status == 403


def test_account_scope_lets_sibling_keys_poll(clock: ManualClock) -> None:
    sim = KeplerSimulator(clock=clock, job_scope="account")
    sim.add_key("ki_live_sibling", plan="enterprise", account="acct_simulator")
    job_id = submit(sim, LIVE_KEY, "stripe.com").body["job_id"]
    assert sim.get_job(key(sim, "ki_live_sibling"), job_id).status == 200
    assert sim.get_job(key(sim, OTHER_KEY), job_id).status == 403


def test_polls_are_counted(sim: KeplerSimulator) -> None:
    job_id = submit(sim, LIVE_KEY, "stripe.com").body["job_id"]
    for _ in range(3):
        sim.get_job(key(sim, LIVE_KEY), job_id)
    assert sim.counters.polls_served == 3


# --- breakers ---------------------------------------------------------------------------


def test_per_key_hourly_breaker_with_retry_after(clock: ManualClock) -> None:
    sim = KeplerSimulator(clock=clock, per_key_cold_per_hour=3)
    for i in range(3):
        assert submit(sim, LIVE_KEY, f"d{i}.com").status == 202
        clock.advance(60)
    limited = submit(sim, LIVE_KEY, "d3.com")
    assert limited.status == 429
    assert limited.body == {
        "error": "rate limited",
        "message": "too many cold calls for this key in the last hour",
        "reason": "per_key_cold_1h",
    }
    assert limited.headers["Retry-After"] == str(3600 - 180)
    assert sim.counters.total_cold_runs == 3  # a tripped breaker costs nothing
    clock.advance(3600 - 180)
    assert submit(sim, LIVE_KEY, "d3.com").status == 202


def test_monthly_cap_and_account_breaker(clock: ManualClock) -> None:
    sim = KeplerSimulator(clock=clock, per_key_cold_per_hour=None)
    sim.add_key("ki_live_starter", plan="starter", account="acct_small")
    for i in range(50):
        assert submit(sim, "ki_live_starter", f"d{i}.com").status == 202
    capped = submit(sim, "ki_live_starter", "one-more.com")
    assert (capped.status, capped.body["error"], capped.body["reason"]) == (
        429,
        "cold_budget_exhausted",
        "monthly_cap",
    )
    assert int(capped.headers["Retry-After"]) > 0


def test_account_24h_breaker_trips_at_twice_the_monthly_cap(clock: ManualClock) -> None:
    sim = KeplerSimulator(clock=clock, per_key_cold_per_hour=None)
    sim.add_key("ki_live_starter", plan="starter", account="acct_small")
    # Fill the 24 h window with runs billed last month, so the monthly cap is fresh.
    sim._cold_starts_by_account["acct_small"] = [sim.now()] * 100
    limited = submit(sim, "ki_live_starter", "x.com")
    assert (limited.status, limited.body["reason"]) == (429, "account_cold_24h")
    assert limited.headers["Retry-After"] == str(86400)


def test_retry_after_is_scaled_to_real_seconds(clock: ManualClock) -> None:
    sim = KeplerSimulator(clock=clock, per_key_cold_per_hour=1, time_scale=0.01)
    submit(sim, LIVE_KEY, "a.com")
    assert submit(sim, LIVE_KEY, "b.com").headers["Retry-After"] == "36"


# --- time, seeds and the failure mix ------------------------------------------------------


def test_time_scale_makes_runs_fast(clock: ManualClock) -> None:
    sim = KeplerSimulator(clock=clock, time_scale=0.01, cold_duration=(60.0, 60.0))
    job_id = submit(sim, LIVE_KEY, "stripe.com").body["job_id"]
    clock.advance(0.59)
    assert sim.get_job(key(sim, LIVE_KEY), job_id).body["status"] == "pending"
    clock.advance(0.02)
    assert sim.get_job(key(sim, LIVE_KEY), job_id).body["status"] in ("complete", "failed")


def test_durations_stay_in_the_documented_range(sim: KeplerSimulator) -> None:
    for i in range(200):
        submit(sim, LIVE_KEY, f"d{i}.com")
    durations = [job.finishes - job.created for job in sim.jobs.values()]
    assert min(durations) >= 25
    assert max(durations) <= 90


def _outcomes(seed: int, clock: ManualClock, domains: list[str]) -> dict[str, object]:
    sim = KeplerSimulator(seed=seed, clock=clock, per_key_cold_per_hour=None)
    for d in domains:
        submit(sim, LIVE_KEY, d)
    return {j.domain: (j.job_id, j.failure_reason, j.finishes) for j in sim.jobs.values()}


def test_same_seed_same_outcomes_whatever_the_order(clock: ManualClock) -> None:
    domains = [f"d{i}.com" for i in range(300)]
    forward = _outcomes(3, clock, domains)
    assert forward == _outcomes(3, clock, list(reversed(domains)))
    assert forward != _outcomes(4, clock, domains)


def test_failure_mix_is_honoured(clock: ManualClock) -> None:
    sim = KeplerSimulator(
        clock=clock,
        per_key_cold_per_hour=None,
        failure_mix={"sfn_failed": 0.2, "sfn_timed_out": 0.1},
    )
    for i in range(2000):
        submit(sim, LIVE_KEY, f"d{i}.com")
    reasons = Counter(job.failure_reason for job in sim.jobs.values())
    assert 0.16 < reasons["sfn_failed"] / 2000 < 0.24
    assert 0.07 < reasons["sfn_timed_out"] / 2000 < 0.13
    assert 0.65 < reasons[None] / 2000 < 0.75
    assert set(reasons) == {None, "sfn_failed", "sfn_timed_out"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_scale": 0},
        {"time_scale": float("nan")},
        {"failure_mix": {"sfn_failed": 0.8, "sfn_aborted": 0.5}},
        {"failure_mix": {"made_up": 0.1}},
        {"failure_mix": {"sfn_failed": -0.1}},
        {"job_scope": "planet"},
    ],
    ids=str,
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"time_scale|failure_mix|job_scope"):
        KeplerSimulator(**kwargs)  # type: ignore[arg-type]


def test_keys_must_look_like_kepler_keys() -> None:
    with pytest.raises(ValueError, match="ki_live_"):
        KeplerSimulator().add_key("sk_live_nope")
    with pytest.raises(ValueError, match="plan"):
        KeplerSimulator().add_key("ki_live_x", plan="platinum")


# --- over the app -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_app_requires_a_key_on_every_route(sim: KeplerSimulator) -> None:
    import httpx

    from kepler_async.testing import SIM_BASE_URL, asgi_transport

    async with httpx.AsyncClient(transport=asgi_transport(sim), base_url=SIM_BASE_URL) as http:
        for path in ("/v1/usage", "/v1/signals", "/v1/score/a.com", "/v1/distribution"):
            response = await http.get(path)
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
        response = await http.get("/v1/nope", headers={"X-API-Key": LIVE_KEY})
        assert (response.status_code, response.json()) == (404, {"error": "not found"})


@pytest.mark.asyncio
async def test_app_fault_after_processing_bills_but_loses_the_answer(
    sim: KeplerSimulator,
) -> None:
    sim.add_fault("status", path="/v1/score", method="POST", after_processing=True)
    response = await post_score(sim, LIVE_KEY, {"domain": "stripe.com"})
    assert response.status_code == 500
    assert sim.counters.cold_runs_billed["stripe.com"] == 1
    response = await post_score(sim, LIVE_KEY, {"domain": "plaid.com"})
    assert response.status_code == 202


@pytest.mark.asyncio
async def test_app_counts_requests_by_route(sim: KeplerSimulator) -> None:
    await post_score(sim, LIVE_KEY, {"domain": "stripe.com"})
    await post_score(sim, LIVE_KEY, "not json at all")
    assert sim.counters.requests["POST /v1/score"] == 2


# --- faithful to the vendor's documents (OpenAPI DomainPath, RFC 9110, JSON types) ------


@pytest.mark.asyncio
async def test_get_score_strips_a_scheme_and_www_as_the_spec_says() -> None:
    sim = KeplerSimulator(clock=lambda: 0.0)
    sim.seed_score("stripe.com", age=10)
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url=SIM_BASE_URL, headers={"X-API-Key": LIVE_KEY}
    ) as client:
        for raw in ("https://stripe.com", "www.stripe.com", "https://www.stripe.com/"):
            answer = await client.get(f"/v1/score/{raw}")
            assert answer.status_code == 200, raw
            assert answer.json()["domain"] == "stripe.com"


@pytest.mark.asyncio
async def test_a_405_names_the_allowed_methods() -> None:
    sim = KeplerSimulator(clock=lambda: 0.0)
    async with httpx.AsyncClient(transport=asgi_transport(sim), base_url=SIM_BASE_URL) as client:
        answer = await client.delete("/v1/score")
    assert answer.status_code == 405
    assert "POST" in answer.headers["allow"]


@pytest.mark.asyncio
@pytest.mark.parametrize("value", ["false", "true", 1, 0, None])
async def test_force_fresh_must_be_a_json_boolean(value: object) -> None:
    sim = KeplerSimulator(clock=lambda: 0.0)
    answer = await post_score(sim, LIVE_KEY, {"domain": "stripe.com", "force_fresh": value})
    assert answer.status_code == 400
    assert sim.counters.total_cold_runs == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("value", ["false", {}, 0])
async def test_the_deprecated_wait_is_ignored_but_must_be_a_boolean(value: object) -> None:
    """Found by tests/testing_kit/test_schema_fuzz.py: `"wait": {}` started a billed run."""
    sim = KeplerSimulator(clock=lambda: 0.0)
    answer = await post_score(sim, LIVE_KEY, {"domain": "stripe.com", "wait": value})
    assert answer.status_code == 400
    assert sim.counters.total_cold_runs == 0
    accepted = await post_score(sim, LIVE_KEY, {"domain": "stripe.com", "wait": False})
    assert accepted.status_code == 202


@pytest.mark.asyncio
async def test_a_deeply_nested_request_body_is_a_400_not_a_500() -> None:
    sim = KeplerSimulator(clock=lambda: 0.0)
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url=SIM_BASE_URL, headers={"X-API-Key": LIVE_KEY}
    ) as client:
        answer = await client.post(
            "/v1/score",
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid JSON"


@pytest.mark.asyncio
async def test_the_account_and_monthly_limits_can_be_set() -> None:
    clock = ManualClock()
    sim = KeplerSimulator(clock=clock, per_key_cold_per_hour=None, per_account_cold_per_day=2)
    codes = [
        (await post_score(sim, LIVE_KEY, {"domain": d})).status_code
        for d in ("a.com", "b.com", "c.com")
    ]
    assert codes == [202, 202, 429]
    clock.advance(24 * 3600)
    assert (await post_score(sim, LIVE_KEY, {"domain": "c.com"})).status_code == 202
    monthly = KeplerSimulator(clock=clock, monthly_cold_budget=1)
    assert (await post_score(monthly, LIVE_KEY, {"domain": "a.com"})).status_code == 202
    answer = await post_score(monthly, LIVE_KEY, {"domain": "b.com"})
    assert (answer.status_code, answer.json()["reason"]) == (429, "monthly_cap")
    with pytest.raises(ValueError, match="monthly_cold_budget"):
        KeplerSimulator(monthly_cold_budget=-1)
