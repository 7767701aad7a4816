"""The duration model behind PollPolicy(adaptive=True): pure, table-tested."""

from __future__ import annotations

import itertools
import random

import pytest

from kepler_async._engine._adaptive import DurationModel


def uniform_model(n: int = 400, low: float = 25.0, high: float = 90.0) -> DurationModel:
    rng = random.Random(1)
    model = DurationModel(window=n, min_samples=20, share=0.12)
    for _ in range(n):
        model.observe(rng.uniform(low, high))
    return model


def test_not_ready_until_enough_samples() -> None:
    model = DurationModel(min_samples=3)
    for value in (30.0, 40.0):
        model.observe(value)
        assert not model.ready
        assert model.next_age(0.0, min_gap=1.0) is None
    model.observe(50.0)
    assert model.ready


def test_first_poll_waits_until_some_jobs_can_be_done() -> None:
    first = uniform_model().next_age(0.0, min_gap=1.0)
    assert first is not None
    assert 25 + 0.08 * 65 < first < 25 + 0.16 * 65  # ~the 12th percentile


def test_gaps_shrink_towards_the_end_of_the_range() -> None:
    model = uniform_model()
    ages = [0.0]
    while (nxt := model.next_age(ages[-1], min_gap=1.0)) is not None:
        ages.append(nxt)
    gaps = [b - a for a, b in itertools.pairwise(ages[1:])]
    assert gaps[0] > gaps[len(gaps) // 2] >= 1.0
    assert all(g >= 1.0 - 1e-9 for g in gaps)
    assert ages[-1] <= 91.0  # the last gap is at least min_gap
    assert 10 <= len(ages) <= 40


def test_past_every_sample_it_hands_back_to_backoff() -> None:
    assert uniform_model().next_age(95.0, min_gap=1.0) is None


def test_the_window_forgets_old_durations() -> None:
    model = DurationModel(window=50, min_samples=20)
    for _ in range(50):
        model.observe(100.0)
    for _ in range(50):
        model.observe(10.0)
    assert len(model) == 50
    first = model.next_age(0.0, min_gap=0.5)
    assert first is not None
    assert first <= 10.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_nonsense_durations_are_ignored(bad: float) -> None:
    model = DurationModel(min_samples=1)
    model.observe(bad)
    assert len(model) == 0


@pytest.mark.parametrize(
    "kwargs", [{"window": 5, "min_samples": 10}, {"min_samples": 0}, {"share": 0}, {"share": 1}]
)
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message differs
        DurationModel(**kwargs)  # type: ignore[arg-type]
