"""Backoff and Retry-After are pure functions; tables pin them down."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

import kepler_async as ka
from kepler_async import PollPolicy, RetryPolicy
from kepler_async._policies import MIN_POLL_INTERVAL, backoff_delay, parse_retry_after

NOW = datetime(2026, 5, 12, 18, 30, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("120", 120.0, id="seconds"),
        pytest.param(" 7 ", 7.0, id="padded"),
        pytest.param("1.5", 1.5, id="fractional"),
        pytest.param("-3", 0.0, id="negative-clamped"),
        pytest.param("Tue, 12 May 2026 18:31:00 GMT", 60.0, id="http-date"),
        pytest.param("Tue, 12 May 2026 18:29:00 GMT", 0.0, id="http-date-past"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("nan", None, id="nan"),
        pytest.param("inf", None, id="inf"),
    ],
)
def test_parse_retry_after(value, expected) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 1.0),
        (1, 0.0, 2.0),
        (2, 0.0, 4.0),
        (3, 0.0, 5.0),  # capped
        (50, 0.0, 5.0),  # no overflow
        (2, 0.999999, 2.000002),  # jitter takes up to half off
        (2, 0.5, 3.0),
    ],
)
def test_backoff_grows_caps_and_jitters(attempt, rand, expected) -> None:
    delay = backoff_delay(
        attempt, initial=1.0, multiplier=2.0, cap=5.0, jitter=0.5, rand=lambda: rand
    )
    assert math.isclose(delay, expected, rel_tol=1e-5)


def test_backoff_never_exceeds_cap_whatever_the_draw() -> None:
    for attempt in range(12):
        for draw in (0.0, 0.3, 0.99):

            def fixed(value: float = draw) -> float:
                return value

            d = backoff_delay(attempt, initial=0.5, multiplier=3, cap=8, jitter=1.0, rand=fixed)
            assert 0.0 <= d <= 8.0


def test_retry_policy_prefers_a_longer_retry_after_up_to_its_cap() -> None:
    policy = RetryPolicy(initial=1.0, multiplier=2.0, cap=10.0, jitter=0.0, max_retry_after=30)
    assert policy.delay(1) == 1.0
    assert policy.delay(2) == 2.0
    assert policy.delay(1, retry_after=5.0) == 5.0
    assert policy.delay(1, retry_after=0.2) == 1.0
    assert policy.delay(1, retry_after=3600.0) == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"attempts": True},
        {"initial": -1.0},
        {"initial": math.nan},
        {"cap": math.inf},
        {"multiplier": math.nan},
        {"jitter": 1.5},
        {"max_retry_after": -2},
    ],
    ids=str,
)
def test_retry_policy_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        pytest.param({"interval": math.nan}, "interval", id="nan-interval"),
        pytest.param({"interval": 0}, "interval", id="zero-interval"),
        pytest.param({"interval": -1}, "interval", id="negative-interval"),
        pytest.param({"interval": 0.0001}, "interval", id="below-the-floor"),
        pytest.param({"cap": 0}, "cap", id="cap-zero"),
        pytest.param({"interval": 5, "cap": 2}, "cap", id="cap-below-interval"),
        pytest.param({"first_delay": math.inf}, "first_delay", id="infinite-first-delay"),
        pytest.param({"first_delay": 10**400}, "first_delay", id="too-large-for-a-float"),
        pytest.param({"deadline": math.inf}, "deadline", id="infinite-deadline"),
        pytest.param({"deadline": math.nan}, "deadline", id="nan-deadline"),
        pytest.param({"deadline": 10**400}, "deadline", id="huge-deadline"),
        pytest.param({"deadline": 0}, "deadline", id="zero-deadline"),
        pytest.param({"multiplier": True}, "multiplier", id="bool-multiplier"),
    ],
)
def test_poll_policy_rejects_values_that_make_no_sense(kwargs, named: str) -> None:
    with pytest.raises(ka.ConfigurationError, match=named) as info:
        PollPolicy(**kwargs)
    assert isinstance(info.value, ValueError)
    assert len(str(info.value)) < 200  # a 400-digit number is not quoted whole


def test_the_poll_interval_floor_is_documented_and_kept_when_scaling() -> None:
    assert MIN_POLL_INTERVAL == 0.001
    PollPolicy(interval=MIN_POLL_INTERVAL, cap=MIN_POLL_INTERVAL)
    scaled = PollPolicy().scaled(1e-9)
    assert scaled.interval == scaled.cap == MIN_POLL_INTERVAL


@pytest.mark.parametrize(
    "timeout",
    [math.nan, math.inf, 0, -1, 10**400, True, "5"],
    ids=["nan", "inf", "zero", "negative", "huge", "bool", "str"],
)
def test_a_client_refuses_a_timeout_that_makes_no_sense(timeout: object) -> None:
    with pytest.raises(ka.ConfigurationError, match="timeout"):
        ka.AsyncKepler("ki_test_x1", timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "deadline", [math.nan, math.inf, 0, -5, 10**400], ids=["nan", "inf", "zero", "neg", "huge"]
)
@pytest.mark.asyncio
async def test_a_call_refuses_a_deadline_that_makes_no_sense(deadline: object) -> None:
    async with ka.AsyncKepler("ki_test_x1", base_url="http://127.0.0.1:9") as kepler:
        with pytest.raises(ka.ConfigurationError, match="deadline"):
            await kepler.score("stripe.com", deadline=deadline)  # type: ignore[arg-type]


def test_one_default_policy_reachable_by_name() -> None:
    """``PollPolicy()`` is the Kepler client's default, and has a name (they were two
    different policies: 20 s / 4 s / 1.1 / 10 % against 32 s / 4.3 s / 1.01 / 5 %)."""
    client = ka.AsyncKepler("ki_test_x", base_url="http://kepler.test")
    assert PollPolicy() == ka.KEPLER_POLICY == client.poll_policy
    assert ka.KEPLER_POLICY.scaled(0.01).first_delay == pytest.approx(0.32)
