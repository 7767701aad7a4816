"""Traces and metrics through OpenTelemetry's global providers, as a user's SDK gets
them: the SDK's in-memory exporter and reader, on asyncio and trio, cold jobs on
virtual time. The span tree of one ``score()``, the polls in the caller's trace
although they run in the engine's task, links for a shared job, events, metrics with
low-cardinality attributes, the switches, and never the key."""

from __future__ import annotations

import anyio
import pytest

import kepler_async as ka
from kepler_async import AsyncKepler
from kepler_async._engine import _telemetry
from kepler_async._engine._telemetry import TELEMETRY_ENV, Telemetry
from kepler_async.testing import LIVE_KEY, KeplerSimulator, simulated_client, virtual_time
from tests.backends import run_on_asyncio_and_trio
from tests.otel import Recorded, dump, recorded, tree
from tests.raw_http import Exchange, Server

__all__ = ["recorded"]  # the fixture, for pytest


def cold_sim() -> KeplerSimulator:
    sim = KeplerSimulator(seed=4, failure_mix={}, per_key_cold_per_hour=None)
    sim.script("plaid.com", duration=40)
    return sim


async def test_one_cold_score_is_one_trace_with_its_polls_under_it(recorded: Recorded) -> None:
    sim = cold_sim()
    async with virtual_time(), simulated_client(sim) as kepler:
        score = await kepler.score("plaid.com")
    spans = recorded.spans()
    assert tree(spans) == [
        "INTERNAL kepler score",
        "  CLIENT POST /v1/score",
        *["  CLIENT GET /v1/jobs/{job_id}"] * (len(spans) - 3),
        "  CLIENT GET /v1/score/{domain}",
    ]
    root = next(s for s in spans if s.name == "kepler score")
    job_id = next(iter(sim.jobs))
    assert root.attributes is not None
    assert root.attributes["kepler_async.api"] == "kepler"
    assert root.attributes["kepler_async.subject"] == "plaid.com"
    assert root.attributes["kepler_async.job_id"] == job_id
    assert root.attributes["kepler_async.outcome"] == "ok"
    assert [event.name for event in root.events] == ["kepler_async.submitted"]
    polls = [s for s in spans if s.name == "GET /v1/jobs/{job_id}"]
    assert len(polls) >= 2  # the first poll comes 32 s after the submit, the run takes 40
    for poll in polls:
        attributes = dict(poll.attributes or {})
        assert attributes["http.request.method"] == "GET"
        assert attributes["url.template"] == "/v1/jobs/{job_id}"
        assert str(attributes["url.full"]).endswith(f"/v1/jobs/{job_id}")
        assert attributes["http.response.status_code"] == 200
        assert attributes["server.port"] == 80
    assert score.domain == "plaid.com"
    assert LIVE_KEY not in dump(spans)


async def test_a_caller_joining_a_job_in_flight_links_to_the_call_that_started_it(
    recorded: Recorded,
) -> None:
    sim = cold_sim()
    async with virtual_time(), simulated_client(sim) as kepler, anyio.create_task_group() as tg:
        tg.start_soon(kepler.score, "plaid.com")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(kepler.score, "plaid.com")
    scores = [s for s in recorded.spans() if s.name == "kepler score"]
    assert len(scores) == 2
    first, second = sorted(scores, key=lambda s: s.start_time or 0)
    assert sim.counters.total_cold_runs == 1
    assert [link.context.span_id for link in second.links] == [first.context.span_id]


async def test_a_deadline_and_a_429_show_on_the_trace(recorded: Recorded) -> None:
    sim = KeplerSimulator(seed=4, failure_mix={}, per_key_cold_per_hour=None)
    sim.script("slow.com", duration=10_000)
    sim.add_fault("status", path="/v1/jobs", status=429, retry_after=5, times=1)
    async with virtual_time(), simulated_client(sim) as kepler:
        with pytest.raises(ka.DeadlineExceeded):
            await kepler.score("slow.com", deadline=60)
    spans = recorded.spans()
    root = next(s for s in spans if s.name == "kepler score")
    attributes = dict(root.attributes or {})
    assert attributes["error.type"] == "DeadlineExceeded"
    assert attributes["kepler_async.outcome"] == "deadline_exceeded"
    assert root.status.status_code.name == "ERROR"
    assert [e.name for e in root.events] == [
        "kepler_async.submitted",
        "kepler_async.deadline_exceeded",
    ]
    throttled = [
        s for s in spans if dict(s.attributes or {}).get("http.response.status_code") == 429
    ]
    assert len(throttled) == 1
    assert dict(throttled[0].attributes or {})["error.type"] == "429"
    assert [e.name for e in throttled[0].events] == ["kepler_async.throttled"]
    assert dict(throttled[0].events[0].attributes or {})["kepler_async.retry_after"] == 5
    counted = recorded.metrics()
    assert counted["kepler_async.deadlines_exceeded"] == [({"kepler_async.api": "kepler"}, 1)]


async def test_the_metrics_of_a_cold_score_have_no_ids_keys_or_domains(
    recorded: Recorded,
) -> None:
    sim = cold_sim()
    sim.seed_score("stripe.com", age=60)
    async with virtual_time(), simulated_client(sim) as kepler:
        await kepler.score("plaid.com")
        await kepler.score("stripe.com")  # cached: answered inline
    counted = recorded.metrics()
    submits = {a["kepler_async.outcome"]: v for a, v in counted["kepler_async.submits"]}
    assert submits == {"accepted": 1, "inline": 1}
    assert counted["kepler_async.jobs.started"] == [({"kepler_async.api": "kepler"}, 1)]
    assert counted["kepler_async.jobs.pending"] == [({"kepler_async.api": "kepler"}, 0)]
    [(attributes, (count, seconds))] = counted["kepler_async.job.duration"]
    assert attributes == {"kepler_async.api": "kepler", "kepler_async.outcome": "succeeded"}
    assert count == 1
    assert 40 <= seconds <= 60  # the 40 s run, found by the next poll (virtual time)
    [(_, (jobs, polls))] = counted["kepler_async.job.polls"]
    assert jobs == 1
    assert polls >= 2
    routes = {a["url.template"] for a, _ in counted["http.client.request.duration"]}
    assert routes == {"/v1/score", "/v1/jobs/{job_id}", "/v1/score/{domain}"}
    everything = repr(counted)
    for secret in (LIVE_KEY, "plaid.com", next(iter(sim.jobs))):
        assert secret not in everything


async def test_subjects_can_be_left_out_and_telemetry_turned_off(
    recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = KeplerSimulator(seed=4)
    sim.seed_score("stripe.com", age=60)
    async with simulated_client(sim, telemetry_subjects=False) as kepler:
        await kepler.score("stripe.com")
    [root] = [s for s in recorded.spans() if s.name == "kepler score"]
    assert "kepler_async.subject" not in dict(root.attributes or {})
    recorded.exporter.clear()
    async with simulated_client(sim, telemetry=False) as kepler:
        await kepler.score("stripe.com")
    monkeypatch.setenv(TELEMETRY_ENV, "off")
    async with simulated_client(sim) as kepler:
        await kepler.score("stripe.com")
    assert recorded.spans() == []


async def test_a_key_a_hostile_server_echoes_stays_out_of_the_spans(recorded: Recorded) -> None:
    """A server (not the simulator) that quotes the key back in its error answers, as
    text and as JSON: the spans say what went wrong without it."""

    async def echo(x: Exchange) -> bool:
        key = x.headers.get("x-api-key", "")
        if x.method == "POST":
            return await x.send(500, f"upstream rejected {key}".encode())
        return await x.json(502, {"error": "bad_gateway", "message": f"key {key} refused"})

    server = Server(echo)
    async with (
        server.running() as url,
        AsyncKepler(LIVE_KEY, base_url=url, allow_plain_http=True) as kepler,
    ):
        with pytest.raises(ka.ServerError):
            await kepler.get_score("stripe.com")
        with pytest.raises(ka.KeplerError):
            await kepler.score("stripe.com")
    text = dump(recorded.spans())
    assert "GET /v1/score/{domain}" in text
    assert "POST /v1/score" in text
    assert LIVE_KEY not in text
    assert all(x.headers["x-api-key"] == LIVE_KEY for x in server.requests)  # it was sent


async def test_each_fan_out_input_has_a_span_with_its_requests_under_it(
    recorded: Recorded,
) -> None:
    sim = cold_sim()
    sim.script("ramp.com", duration=30)
    sim.seed_score("stripe.com", age=60)
    domains = ["plaid.com", "ramp.com", "stripe.com", "PLAID.com", "not a domain"]
    async with virtual_time(), simulated_client(sim) as kepler:
        outcomes = await kepler.score_many(domains).collect()
    assert sorted(o.status for o in outcomes) == ["failed", "scored", "scored", "scored", "scored"]
    spans = recorded.spans()
    items = {
        dict(s.attributes or {})["kepler_async.subject"]: s
        for s in spans
        if s.name == "kepler fan-out item"
    }
    assert set(items) == {"plaid.com", "ramp.com", "stripe.com"}  # PLAID.com shares plaid.com's
    by_parent: dict[int, list[str]] = {}
    for span in spans:
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span.name)
    plaid = items["plaid.com"]
    assert dict(plaid.attributes or {})["kepler_async.outcome"] == "done"
    assert dict(plaid.attributes or {})["kepler_async.job_id"] in sim.jobs
    under_plaid = by_parent[plaid.context.span_id]
    assert under_plaid[0] == "POST /v1/score"
    assert "GET /v1/jobs/{job_id}" in under_plaid
    assert by_parent[items["stripe.com"].context.span_id] == ["POST /v1/score"]  # cached


async def test_closing_while_300_callers_wait_ends_every_span_and_count(
    recorded: Recorded,
) -> None:
    """``aclose()`` with 300 callers waiting on cold jobs, the SDK recording: each
    caller's span ends with ``ClientClosed``, the pending gauge returns to 0."""
    sim = KeplerSimulator(seed=4, failure_mix={}, per_key_cold_per_hour=None)
    errors: list[BaseException] = []
    async with virtual_time():
        kepler = simulated_client(sim)
        async with kepler:

            async def wait_for(n: int) -> None:
                try:
                    await kepler.score(f"waiting-{n:03d}.com")
                except ka.KeplerError as error:
                    errors.append(error)

            async with anyio.create_task_group() as tg:
                for n in range(300):
                    tg.start_soon(wait_for, n)
                await anyio.wait_all_tasks_blocked()  # every submit answered, polls due
                assert sim.counters.total_cold_runs == 300
                await kepler.aclose()
    assert len(errors) == 300
    assert all(isinstance(error, ka.ClientClosed) for error in errors)
    scores = [s for s in recorded.spans() if s.name == "kepler score"]
    assert len(scores) == 300
    assert {dict(s.attributes or {})["error.type"] for s in scores} == {"ClientClosed"}
    assert recorded.metrics()["kepler_async.jobs.pending"] == [({"kepler_async.api": "kepler"}, 0)]


def test_with_no_provider_set_nothing_is_recorded_or_built() -> None:
    telemetry = Telemetry("kepler", "https://api.example.com")
    assert telemetry.enabled  # installed, not turned off
    assert not telemetry.tracing()
    assert not telemetry.metering()
    assert (
        telemetry.http_call("GET", "/v1/usage", "https://api.example.com/v1/usage", 1, None) is None
    )


def test_without_the_package_telemetry_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_telemetry, "_INSTALLED", False)
    assert not Telemetry("kepler", "https://api.example.com").enabled


run_on_asyncio_and_trio(globals(), virtual_time=False)
