"""Answer bodies the tests share (as the API documents them)."""

from __future__ import annotations

SCORE = {
    "domain": "stripe.com",
    "scored_at": "2026-05-12T18:30:43Z",
    "ki_rating": "KI-1+",
    "composite_score": 78.2,
    "scale_premium": 6.4,
    "buckets": {
        "team_structure": 80,
        "market_position": 81.5,
        "momentum_tailwinds": 74.3,
        "financial_health": 77.0,
    },
    "rank": {"percentile": 99, "cohort_size": 541},
    "x_kepler": {"tier": "growth", "cache_status": "cached", "freshness_window_hours": 6},
}
