"""Data the Kepler simulator serves: plans, sandbox canned bodies, the signal manifest,
and deterministic synthetic scores for live domains.

Figures for the sandbox domains come from the vendor's docs (see the project's
``reference/kepler-api.md`` section 5); the rest is invented but keeps the documented
shapes and invariants (bucket weights, rating bands, histogram bins).
"""

from __future__ import annotations

import hashlib
import random

import attrs

__all__ = [
    "BUCKETS",
    "PLANS",
    "SANDBOX_CONFIDENCE",
    "SANDBOX_DOMAINS",
    "SANDBOX_SCORES",
    "CannedScore",
    "Plan",
    "SyntheticRun",
    "rating_for",
    "signals_manifest",
    "stable_rng",
    "synthetic_run",
]

BUCKETS = ("team_structure", "market_position", "momentum_tailwinds", "financial_health")
SANDBOX_DOMAINS = ("acme.test", "cohort.test", "struggling.test", "unicorn.test")
SANDBOX_SCORED_AT = "2026-05-12T18:30:00Z"


@attrs.frozen(kw_only=True)
class Plan:
    """A plan as the simulator enforces it. ``None`` limits are unmetered."""

    tier: str
    cached_included: int | None
    cold_included: int | None
    freshness_window_hours: float
    live_cold: bool = True
    force_fresh: bool = False


#: The OpenAPI file's tier names (the tiers page has newer ones; the spec's enum wins
#: here so simulator bodies validate against it).
PLANS: dict[str, Plan] = {
    "free": Plan(
        tier="free",
        cached_included=25,
        cold_included=5,
        freshness_window_hours=168,
        live_cold=False,
    ),
    "starter": Plan(
        tier="starter", cached_included=500, cold_included=50, freshness_window_hours=24
    ),
    "growth": Plan(
        tier="growth", cached_included=5000, cold_included=250, freshness_window_hours=6
    ),
    "scale": Plan(
        tier="scale", cached_included=25000, cold_included=1000, freshness_window_hours=1
    ),
    "enterprise": Plan(
        tier="enterprise",
        cached_included=None,
        cold_included=None,
        freshness_window_hours=0.25,
        force_fresh=True,
    ),
}


def stable_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from ``parts``, the same in every process."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def rating_for(composite: float) -> str:
    """Rating bands that agree with every documented example (acme 67.2 is KI-1...)."""
    for floor, rating in ((75, "KI-1+"), (62, "KI-1"), (56, "KI-2+"), (50, "KI-2"), (40, "KI-3")):
        if composite >= floor:
            return rating
    return "KI-4" if composite >= 28 else "KI-5"


@attrs.frozen
class CannedScore:
    """A sandbox domain's fixed figures."""

    composite: float
    scale_premium: float
    buckets: dict[str, float]
    percentile: int

    def body(self, domain: str) -> dict[str, object]:
        return {
            "domain": domain,
            "scored_at": SANDBOX_SCORED_AT,
            "ki_rating": rating_for(self.composite),
            "composite_score": self.composite,
            "scale_premium": self.scale_premium,
            "buckets": dict(self.buckets),
            "rank": {"percentile": self.percentile, "cohort_size": 540},
        }


def _buckets(team: float, market: float, momentum: float, financial: float) -> dict[str, float]:
    return dict(zip(BUCKETS, (team, market, momentum, financial), strict=True))


SANDBOX_SCORES: dict[str, CannedScore] = {
    "acme.test": CannedScore(67.2, 4.1, _buckets(68.0, 71.5, 64.3, 61.0), 92),
    "unicorn.test": CannedScore(79.4, 7.8, _buckets(81.2, 84.0, 77.5, 70.3), 99),
    "struggling.test": CannedScore(32.1, 0.4, _buckets(38.5, 30.2, 27.9, 31.0), 11),
    "cohort.test": CannedScore(45.0, 1.9, _buckets(47.1, 44.0, 43.2, 45.6), 48),
}

SANDBOX_CONFIDENCE: dict[str, dict[str, object]] = {
    "acme.test": {
        "band": "high",
        "completeness_pct": 87,
        "failed_fetchers": [],
        "data_warnings": [],
        "missing_signals": ["state_legislative_activity"],
    },
    "unicorn.test": {
        "band": "high",
        "completeness_pct": 94,
        "failed_fetchers": [],
        "data_warnings": [],
        "missing_signals": [],
    },
    "struggling.test": {
        "band": "directional",
        "completeness_pct": 52,
        "failed_fetchers": ["people", "news"],
        "data_warnings": ["people_no_founder_data", "news_fetch_failed"],
        "missing_signals": [
            "founder_years_experience",
            "press_mention_velocity",
            "executive_turnover",
        ],
    },
    "cohort.test": {
        "band": "medium",
        "completeness_pct": 71,
        "failed_fetchers": ["web"],
        "data_warnings": ["web_traffic_estimate_missing"],
        "missing_signals": ["web_traffic_growth"],
    },
}


@attrs.frozen(kw_only=True)
class SyntheticRun:
    """One scoring run's figures for a live domain."""

    composite: float
    scale_premium: float
    buckets: dict[str, float]
    momentum: float
    completeness: int
    sector: str
    geo_scope: str
    profile: str


_SECTORS = ("saas", "fintech", "healthcare", "marketplace", "devtools", "ecommerce")
_GEOS = ("us", "eu", "global")


def synthetic_run(seed: object, domain: str, run_index: int) -> SyntheticRun:
    """Deterministic figures for run ``run_index`` of ``domain`` (drifting run to run)."""
    base = stable_rng(seed, domain)
    composite0 = min(92.0, max(12.0, base.gauss(52.0, 14.0)))
    profile = "established" if base.random() < 0.4 else "growth"
    sector = base.choice(_SECTORS)
    geo = base.choice(_GEOS)
    run = stable_rng(seed, domain, run_index)
    composite = round(min(100.0, max(0.0, composite0 + run.gauss(0.0, 2.0) * run_index**0.5)), 1)
    premium_cap = 12.0 if profile == "established" else 6.0
    return SyntheticRun(
        composite=composite,
        scale_premium=round(run.uniform(0.0, premium_cap), 1),
        buckets={b: round(min(100.0, max(0.0, run.gauss(composite, 6.0))), 1) for b in BUCKETS},
        momentum=round(run.gauss(0.0, 1.5), 2),
        completeness=int(min(100, max(35, run.gauss(80, 12)))),
        sector=sector,
        geo_scope=geo,
        profile=profile,
    )


_SIGNALS: dict[str, dict[str, list[str]]] = {
    "team_structure": {
        "founders": [
            "founder_years_experience",
            "founder_prior_exits",
            "founder_domain_expertise",
            "founder_count",
        ],
        "leadership": [
            "executive_turnover",
            "leadership_depth",
            "board_composition",
            "advisor_quality",
        ],
        "hiring": [
            "headcount_growth",
            "engineering_ratio",
            "senior_hire_rate",
            "attrition_estimate",
            "open_roles_velocity",
        ],
        "culture": ["employee_sentiment", "remote_readiness", "tenure_median", "diversity_index"],
    },
    "market_position": {
        "market": [
            "tam_estimate",
            "market_growth_rate",
            "category_maturity",
            "regulatory_exposure",
        ],
        "competition": [
            "competitor_density",
            "differentiation_score",
            "pricing_power",
            "switching_costs",
        ],
        "customers": [
            "customer_concentration",
            "enterprise_logo_count",
            "net_revenue_retention_proxy",
            "review_sentiment",
        ],
        "brand": [
            "web_traffic_rank",
            "search_interest",
            "social_following",
            "press_mention_volume",
            "analyst_coverage",
        ],
    },
    "momentum_tailwinds": {
        "traction": [
            "web_traffic_growth",
            "press_mention_velocity",
            "product_release_cadence",
            "app_download_growth",
        ],
        "funding": ["last_round_recency", "investor_tier", "funding_velocity", "round_step_up"],
        "tailwinds": [
            "sector_funding_climate",
            "policy_tailwinds",
            "state_legislative_activity",
            "macro_sensitivity",
        ],
        "ecosystem": [
            "partner_integrations",
            "developer_activity",
            "community_growth",
            "open_source_stars",
        ],
    },
    "financial_health": {
        "revenue": ["revenue_estimate", "revenue_growth", "revenue_quality", "gross_margin_proxy"],
        "efficiency": [
            "burn_multiple_proxy",
            "runway_estimate",
            "capital_efficiency",
            "opex_growth",
        ],
        "risk": [
            "debt_exposure",
            "litigation_flags",
            "payment_delinquency",
            "credit_signal",
            "going_concern_flags",
        ],
        "scale": [
            "employee_count_band",
            "office_footprint",
            "geographic_reach",
            "customer_count_band",
        ],
    },
}

_IMMUTABLE = {"founder_count", "founder_prior_exits", "tam_estimate", "category_maturity"}
_SLOW = {"board_composition", "investor_tier", "geographic_reach", "office_footprint"}


def _weights(count: int) -> list[float]:
    """``count`` weights with one decimal that add up to exactly 100."""
    share = round(100.0 / count, 1)
    weights = [share] * count
    weights[-1] = round(100.0 - share * (count - 1), 1)
    return weights


def signals_manifest() -> dict[str, object]:
    """The 67-signal manifest. Signal weights sum to 100 within each category."""
    signals: list[dict[str, object]] = []
    for bucket, categories in _SIGNALS.items():
        for category, keys in categories.items():
            for key, weight in zip(keys, _weights(len(keys)), strict=True):
                if key in _IMMUTABLE:
                    actionability = "immutable"
                elif key in _SLOW:
                    actionability = "slow_actionable"
                else:
                    actionability = "actionable"
                signals.append(
                    {
                        "key": key,
                        "label": key.replace("_", " ").capitalize(),
                        "bucket": bucket,
                        "category": category,
                        "weight": weight,
                        "actionability": actionability,
                        "description": f"{key.replace('_', ' ').capitalize()} ({category}).",
                    }
                )
    assert len(signals) == 67, len(signals)
    return {"version": "2026-05-12", "signals": signals}
