"""The Kepler simulator's read-only analytics endpoints, as a base class.

History, cohort, confidence, distribution, movers, signals and usage: answers derived
from the records the simulator keeps (live keys) or canned (sandbox keys).
"""

from __future__ import annotations

import base64
import binascii
import statistics
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from ._sim_data import (
    BUCKETS,
    SANDBOX_CONFIDENCE,
    SANDBOX_SCORED_AT,
    SANDBOX_SCORES,
    rating_for,
    signals_manifest,
    stable_rng,
    synthetic_run,
)
from ._sim_types import (
    JSON,
    SimKey,
    SimRecord,
    SimResponse,
    error,
    histogram,
    iso,
    mover,
    next_month,
    path_domain,
)

__all__ = ["KeplerReads"]

DAY = 86400.0


class KeplerReads:
    """The ``GET`` analytics of ``KeplerSimulator`` (which provides the state)."""

    seed: int | str
    _records: dict[str, list[SimRecord]]
    _meters: dict[tuple[str, str], Counter[str]]

    if TYPE_CHECKING:

        def now(self) -> float: ...
        def at_dt(self, at: float) -> datetime: ...
        def now_dt(self) -> datetime: ...
        def latest(self, domain: str) -> SimRecord | None: ...
        def _visible(self, domain: str) -> list[SimRecord]: ...
        def _period(self) -> str: ...
        def _check_test_domain(self, key: SimKey, domain: str) -> SimResponse | None: ...

    # --- history ------------------------------------------------------------------------

    def history(self, key: SimKey, raw: str, query: Mapping[str, str]) -> SimResponse:
        domain = path_domain(raw)
        if rejected := self._check_test_domain(key, domain):
            return rejected
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 500:
            return error(400, "invalid_limit", "limit must be an integer from 1 to 500")
        offset = 0
        if "cursor" in query:
            try:
                decoded = base64.urlsafe_b64decode(query["cursor"].encode()).decode()
                offset = int(decoded.removeprefix("offset:"))
                if not decoded.startswith("offset:") or offset < 0:
                    raise ValueError(decoded)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return error(400, "invalid_cursor", "drop the cursor or use next_cursor")
        sandbox = key.key.startswith("ki_test_")
        rows = self._sandbox_history(domain) if sandbox else self._live_history(domain)
        if not rows:
            return error(404, "no_history")
        page = rows[offset : offset + limit]
        body: JSON = {"domain": domain, "records": page}
        if offset + limit < len(rows):
            body["next_cursor"] = base64.urlsafe_b64encode(
                f"offset:{offset + limit}".encode()
            ).decode()
        if sandbox:
            body = {"mode": "sandbox", **body}
        return SimResponse(200, body)

    def _history_row(self, at: float, composite: float, rng_parts: tuple[object, ...]) -> JSON:
        rng = stable_rng(*rng_parts)
        return {
            "scored_at": iso(self.at_dt(at)),
            "composite_score": composite,
            "scale_premium": round(rng.uniform(0, 6), 1),
            "ki_rating": rating_for(composite),
            "momentum_index": round(rng.gauss(0, 1.5), 2),
            "buckets": {b: round(min(100, max(0, rng.gauss(composite, 5))), 1) for b in BUCKETS},
            "data_completeness_pct": int(min(100, max(35, rng.gauss(80, 10)))),
        }

    def _live_history(self, domain: str) -> list[JSON]:
        rows = []
        for record in reversed(self._visible(domain)):
            run = synthetic_run(self.seed, domain, record.run_index)
            row = self._history_row(record.at, run.composite, (self.seed, domain, record.run_index))
            row.update(
                scale_premium=run.scale_premium,
                buckets=run.buckets,
                momentum_index=run.momentum,
                data_completeness_pct=run.completeness,
            )
            rows.append(row)
        return rows

    def _sandbox_history(self, domain: str) -> list[JSON]:
        count = 4 + stable_rng("sandbox-history", domain).randrange(9)  # 4 to 12 daily runs
        latest = SANDBOX_SCORES[domain].composite
        now = self.now()
        rows = []
        for day in range(count):
            drift = stable_rng("sandbox-drift", domain, day).gauss(0, 1.2) * day**0.5
            composite = round(min(100.0, max(0.0, latest + drift)), 1) if day else latest
            rows.append(self._history_row(now - day * DAY, composite, ("sandbox", domain, day)))
        return rows

    # --- company analytics ------------------------------------------------------------------

    def cohort(self, key: SimKey, raw: str) -> SimResponse:
        domain = path_domain(raw)
        if rejected := self._check_test_domain(key, domain):
            return rejected
        sandbox = key.key.startswith("ki_test_")
        if sandbox:
            composite = SANDBOX_SCORES[domain].composite
            target_buckets = SANDBOX_SCORES[domain].buckets
            sector, geo, profile, peers = "saas", "us", "growth", 12
            member_domain = "cohort-{:02d}.test"
        else:
            record = self.latest(domain)
            if record is None:
                return error(404, "no_history")
            run = synthetic_run(self.seed, domain, record.run_index)
            composite, target_buckets = run.composite, run.buckets
            sector, geo, profile = run.sector, run.geo_scope, run.profile
            peers = stable_rng(self.seed, "peers", domain).choice([0, 3, 8, 15, 40])
            member_domain = f"{sector}-peer-{{:02d}}.example"
        rng = stable_rng(self.seed, "cohort", domain)
        drawn = [round(min(100.0, max(0.0, rng.gauss(composite, 10))), 1) for _ in range(peers)]
        scores = sorted(drawn, reverse=True)
        members = [
            {
                "domain": member_domain.format(i),
                "company_name": f"Peer {i:02d}",
                "composite_score": score,
                "ki_rating": rating_for(score),
                "business_profile": profile,
            }
            for i, score in enumerate(scores, start=1)
        ]
        stats: JSON = {"count": len(scores)}
        if scores:
            ordered = sorted(scores)
            above = sum(1 for s in scores if s > composite)
            stats.update(
                mean=round(statistics.fmean(scores), 2),
                p50=round(statistics.median(scores), 2),
                p90=round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
                stddev=round(statistics.pstdev(scores), 2),
                min=ordered[0],
                max=ordered[-1],
                rank=above + 1,
                percentile=round(100 * (len(scores) - above) / len(scores)),
            )
        bucket_means: JSON = {}
        for bucket in BUCKETS:
            target_value = float(target_buckets[bucket])
            cohort_value = round(statistics.fmean(scores), 1) if scores else target_value
            bucket_means[bucket] = {
                "target": target_value,
                "cohort": cohort_value,
                "delta": round(target_value - cohort_value, 1),
            }
        body: JSON = {
            "target": {
                "domain": domain,
                "company_name": domain.split(".")[0].capitalize(),
                "composite_score": composite,
                "ki_rating": rating_for(composite),
                "business_profile": profile,
                "context": {"sector": sector, "geo_scope": geo},
            },
            "cohort": stats,
            "bucket_means": bucket_means,
            "members": members[:200],
        }
        return SimResponse(200, {"mode": "sandbox", **body} if sandbox else body)

    def confidence(self, key: SimKey, raw: str) -> SimResponse:
        domain = path_domain(raw)
        if rejected := self._check_test_domain(key, domain):
            return rejected
        if key.key.startswith("ki_test_"):
            body: JSON = {
                "mode": "sandbox",
                "domain": domain,
                "scored_at": SANDBOX_SCORED_AT,
                **SANDBOX_CONFIDENCE[domain],
            }
            return SimResponse(200, body)
        record = self.latest(domain)
        if record is None:
            return error(404, "no score available for this domain")
        run = synthetic_run(self.seed, domain, record.run_index)
        rng = stable_rng(self.seed, "confidence", domain, record.run_index)
        failed = [f for f in ("firmographic", "people", "web", "news") if rng.random() < 0.08]
        critical = "firmographic" in failed
        if run.completeness >= 80 and not failed:
            band = "high"
        elif run.completeness < 60 or critical:
            band = "directional"
        else:
            band = "medium"
        return SimResponse(
            200,
            {
                "domain": domain,
                "scored_at": iso(self.at_dt(record.at)),
                "band": band,
                "completeness_pct": run.completeness,
                "failed_fetchers": failed,
                "data_warnings": [f"{f}_fetch_failed" for f in failed],
                "missing_signals": ["state_legislative_activity"] if band != "high" else [],
            },
        )

    # --- universe -----------------------------------------------------------------------

    def distribution(self, key: SimKey) -> SimResponse:
        sandbox = key.key.startswith("ki_test_")
        rows: list[tuple[float, float, str]] = []
        if sandbox:
            for canned in SANDBOX_SCORES.values():
                rows.append((canned.composite, canned.scale_premium, "growth"))
            rng = stable_rng("sandbox-universe")
            for _ in range(8):  # a 12-domain mini-universe
                rows.append(
                    (round(rng.uniform(20, 85), 1), round(rng.uniform(0, 8), 1), "established")
                )
        else:
            for domain in self._records:
                record = self.latest(domain)
                if record is not None:
                    run = synthetic_run(self.seed, domain, record.run_index)
                    rows.append((run.composite, run.scale_premium, run.profile))
        composites = [r[0] for r in rows]
        universe: JSON = {
            "count": len(rows),
            "mean": round(statistics.fmean(composites), 2) if rows else 0.0,
            "p50": round(statistics.median(composites), 2) if rows else 0.0,
            "p90": round(sorted(composites)[int(0.9 * (len(rows) - 1))], 2) if rows else 0.0,
            "stddev": round(statistics.pstdev(composites), 2) if rows else 0.0,
            "min": min(composites, default=0.0),
            "max": max(composites, default=0.0),
            "composite_hist": histogram(composites, width=5, bins=20),
            "scale_premium_hist": histogram([r[1] for r in rows], width=1, bins=12),
            "rating_dist": dict(Counter(rating_for(c) for c in composites)),
            "profile_split": {
                "growth": sum(1 for r in rows if r[2] == "growth"),
                "established": sum(1 for r in rows if r[2] == "established"),
                "unclassified": 0,
            },
        }
        body: JSON = {"pipeline_version": "v1", "universe": universe}
        return SimResponse(200, {"mode": "sandbox", **body} if sandbox else body)

    def movers(self, key: SimKey, window: str | None) -> SimResponse:
        days = {"7d": 7, "30d": 30, "90d": 90}.get(window or "")
        if days is None:
            return error(400, "window must be one of ['7d','30d','90d']")
        end = self.now()
        start = end - days * DAY
        sandbox = key.key.startswith("ki_test_")
        rows: list[tuple[str, float, float]] = []
        if sandbox:
            rows = [
                ("unicorn.test", 79.4, 71.2),
                ("acme.test", 67.2, 64.9),
                ("cohort.test", 45.0, 44.1),
                ("struggling.test", 32.1, 41.0),
            ]
        else:
            for domain, records in self._records.items():
                visible = [r for r in records if r.at <= end]
                inside = [r for r in visible if r.at >= start]
                before = [r for r in visible if r.at < start]
                if inside and before:
                    now_run = synthetic_run(self.seed, domain, inside[-1].run_index)
                    then_run = synthetic_run(self.seed, domain, before[-1].run_index)
                    rows.append((domain, now_run.composite, then_run.composite))
        limit = 5 if sandbox else 20
        by_change = sorted(rows, key=lambda r: abs(r[1] - r[2]), reverse=True)
        gainers = [mover(*r) for r in by_change if r[1] > r[2]]
        decliners = [mover(*r) for r in by_change if r[1] < r[2]]
        body: JSON = {
            "window": window,
            "window_start": iso(self.at_dt(start)),
            "window_end": iso(self.at_dt(end)),
            "gainers": gainers[:limit],
            "decliners": decliners[:limit],
        }
        return SimResponse(200, {"mode": "sandbox", **body} if sandbox else body)

    # --- meta ---------------------------------------------------------------------------

    def signals(self, key: SimKey) -> SimResponse:
        return SimResponse(200, signals_manifest())  # no `mode`, even in the sandbox

    def usage(self, key: SimKey) -> SimResponse:
        now = self.now_dt()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        plan = key.plan
        if key.key.startswith("ki_test_"):
            cold = 0 if plan.cold_included is None else plan.cold_included // 3
            cached = 0 if plan.cached_included is None else plan.cached_included * 2 // 5
        else:
            meter = self._meters[(key.account, self._period())]
            cold, cached = meter["cold"], meter["cached"]
        body: JSON = {
            "user_id": key.account,
            "period": self._period(),
            "tier": plan.tier,
            "total_calls": cold + cached,
            "cold_calls": cold,
            "cached_calls": cached,
            "last_reset": iso(month_start),
            "next_reset": iso(next_month(now)),
            "tier_limits": {
                "cached_calls_included": plan.cached_included,
                "cold_calls_included": plan.cold_included,
                "freshness_window_hours": plan.freshness_window_hours,
            },
        }
        if key.key.startswith("ki_test_"):
            body = {"mode": "sandbox", **body}
        return SimResponse(200, body)
