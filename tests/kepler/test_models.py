"""Bodies decode into frozen attrs models: strict on shape, lenient on novelty."""

from __future__ import annotations

from datetime import timezone

import attrs
import pytest

import kepler_async as ka
from kepler_async._serde import decode, parse_json
from tests.bodies import SCORE


def test_score_decodes_with_aware_datetimes_and_enums() -> None:
    score = decode(ka.Score, SCORE, what="test")
    assert score.ki_rating is ka.KIRating.KI_1_PLUS
    assert score.scored_at.tzinfo is not None
    assert score.scored_at.utcoffset() == timezone.utc.utcoffset(None)
    assert score.buckets.team_structure == 80.0
    assert isinstance(score.buckets.team_structure, float)
    assert score.x_kepler == ka.XKepler(
        tier=ka.Tier.GROWTH, cache_status=ka.CacheStatus.CACHED, freshness_window_hours=6.0
    )
    assert not score.sandbox
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        score.domain = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ki_rating", "KI-0"),
        ("x_kepler", {"tier": "standard-plus", "cache_status": "fresh-ish"}),
    ],
)
def test_unknown_enum_values_are_kept_as_raw_strings(field: str, value: object) -> None:
    score = decode(ka.Score, {**SCORE, field: value}, what="test")
    if field == "ki_rating":
        assert score.ki_rating == "KI-0"
        assert not isinstance(score.ki_rating, ka.KIRating)
    else:
        assert score.x_kepler is not None
        assert score.x_kepler.tier == "standard-plus"
        assert score.x_kepler.cache_status == "fresh-ish"


def test_documented_alternative_enum_values_are_known() -> None:
    meta = {"tier": "standard", "cache_status": "fresh"}
    score = decode(ka.Score, {**SCORE, "x_kepler": meta}, what="test")
    assert score.x_kepler is not None
    assert score.x_kepler.tier is ka.Tier.STANDARD
    assert score.x_kepler.cache_status is ka.CacheStatus.FRESH


def test_unknown_fields_are_ignored() -> None:
    score = decode(ka.Score, {**SCORE, "signal_scores": {"a": 1}, "mode": "sandbox"}, what="t")
    assert score.sandbox


def test_naive_and_offset_timestamps_become_aware() -> None:
    naive = decode(ka.Score, {**SCORE, "scored_at": "2026-05-12T18:30:43"}, what="t")
    offset = decode(ka.Score, {**SCORE, "scored_at": "2026-05-12T20:30:43+02:00"}, what="t")
    assert naive.scored_at == offset.scored_at


def test_job_with_unknown_failure_reason_and_nulls() -> None:
    job = decode(
        ka.KeplerJob,
        {
            "job_id": "9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f",
            "status": "failed",
            "domain": "stripe.com",
            "created_at": "2026-05-12T18:30:00Z",
            "completed_at": None,
            "result_ref": None,
            "score_url": None,
            "failure_reason": "quota_vanished",
        },
        what="t",
    )
    assert job.status is ka.JobStatus.FAILED
    assert job.failure_reason == "quota_vanished"
    assert job.completed_at is None


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        pytest.param({"domain": None}, "domain", id="null-required"),
        pytest.param({"composite_score": "78.2"}, "composite_score", id="number-as-string"),
        pytest.param({"composite_score": True}, "composite_score", id="bool-as-number"),
        pytest.param({"buckets": [1, 2, 3, 4]}, "buckets", id="list-for-object"),
        pytest.param({"scored_at": "yesterday"}, "scored_at", id="bad-timestamp"),
        pytest.param({"rank": {"percentile": 9.5, "cohort_size": 1}}, "percentile", id="float-int"),
        pytest.param({"ki_rating": 1}, "ki_rating", id="enum-not-string"),
    ],
)
def test_wrong_shapes_raise_protocol_error_naming_the_field(change, needle) -> None:
    with pytest.raises(ka.ProtocolError, match=r"GET /v1/score/stripe\.com") as info:
        decode(ka.Score, {**SCORE, **change}, what="GET /v1/score/stripe.com")
    assert needle in str(info.value)
    assert "KeyError" not in type(info.value).__name__


def test_missing_field_is_a_protocol_error_not_a_key_error() -> None:
    body = dict(SCORE)
    del body["buckets"]
    with pytest.raises(ka.ProtocolError, match="buckets"):
        decode(ka.Score, body, what="t")


@pytest.mark.parametrize("body", [[1, 2], "text", 3, None])
def test_non_object_bodies_are_protocol_errors(body: object) -> None:
    with pytest.raises(ka.ProtocolError, match="expected a JSON object"):
        decode(ka.Score, body, what="t")


def test_non_json_is_a_protocol_error_with_a_short_excerpt() -> None:
    raw = b"<html>" + b"x" * 5000 + b"</html>"
    with pytest.raises(ka.ProtocolError) as info:
        parse_json(raw, what="GET /v1/usage -> 200")
    assert "<html>" in str(info.value)
    assert len(str(info.value)) < 250


def test_history_cohort_distribution_movers_signals_usage_decode() -> None:
    page = decode(
        ka.HistoryPage,
        {
            "domain": "a.com",
            "records": [
                {"scored_at": "2026-05-12T18:30:00Z", "composite_score": 50, "ki_rating": "KI-2"}
            ],
            "next_cursor": "abc",
        },
        what="t",
    )
    assert isinstance(page.records, tuple)
    assert page.records[0].ki_rating is ka.KIRating.KI_2
    usage = decode(
        ka.Usage,
        {
            "period": "2026-05",
            "tier": "standard",
            "total_calls": 3,
            "cold_calls": 1,
            "cached_calls": 2,
            "tier_limits": {"cached_calls_included": None, "cold_calls_included": None},
        },
        what="t",
    )
    assert usage.tier is ka.Tier.STANDARD
    assert usage.tier_limits == ka.TierLimits()


def test_enums_print_as_their_wire_values() -> None:
    assert str(ka.KIRating.KI_1_PLUS) == "KI-1+"
    assert f"{ka.JobStatus.COMPLETE}" == "complete"
    assert str(ka.Tier.GROWTH) == "growth"
