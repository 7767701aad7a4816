"""The Kepler simulator's state and rules, without any web framework.

``KeplerSimulator`` keeps keys, accounts, records and jobs, and answers each endpoint as
a ``SimResponse`` (status, JSON body, headers). ``_sim_app`` wires it to Starlette.

Time: the simulator reads ``clock()`` (real seconds, ``time.monotonic`` by default) and
runs ``1 / time_scale`` times faster: with ``time_scale=0.01`` a 60 s cold run takes
0.6 s. ``Retry-After`` headers are given in real seconds. Randomness is drawn from
``seed``, the domain and the run number, so outcomes do not depend on request order.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone

import attrs

from ._faults import Fault, FaultKind, FaultPlan
from ._sim_data import (
    BUCKETS,
    PLANS,
    SANDBOX_CONFIDENCE,
    SANDBOX_DOMAINS,
    SANDBOX_SCORED_AT,
    SANDBOX_SCORES,
    Plan,
    rating_for,
    signals_manifest,
    stable_rng,
    synthetic_run,
)

__all__ = [
    "DEFAULT_FAILURE_MIX",
    "FREE_KEY",
    "LIVE_KEY",
    "OTHER_KEY",
    "SANDBOX_KEY",
    "KeplerSimulator",
    "SimCounters",
    "SimJob",
    "SimResponse",
]

SANDBOX_KEY = "ki_test_simulator"
LIVE_KEY = "ki_live_simulator"
OTHER_KEY = "ki_live_simulator_other_account"
FREE_KEY = "ki_live_simulator_free_plan"

#: Probability of each ``failure_reason`` per cold run; the rest complete.
DEFAULT_FAILURE_MIX: Mapping[str, float] = {
    "sfn_failed": 0.02,
    "sfn_timed_out": 0.03,
    "sfn_aborted": 0.005,
    "scoring_completed_no_record": 0.02,
}
FAILURE_REASONS = frozenset(DEFAULT_FAILURE_MIX)
JOB_TTL = 30 * 86400.0
HOUR = 3600.0
DAY = 86400.0
_SANDBOX_ONLY = (
    "sandbox: only ['acme.test', 'cohort.test', 'struggling.test', 'unicorn.test'] supported"
)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")

JSON = dict[str, object]


@attrs.frozen
class SimResponse:
    status: int
    body: object
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.define
class SimKey:
    key: str
    account: str
    plan: Plan


@attrs.define
class SimRecord:
    """One stored scoring run. ``at`` is simulator seconds (negative: before start)."""

    domain: str
    at: float
    run_index: int


@attrs.define
class SimJob:
    """A cold job as the server keeps it; ``outcome`` is decided at creation."""

    job_id: str
    domain: str
    key: str
    account: str
    created: float
    finishes: float
    failure_reason: str | None
    status: str = "pending"


@attrs.define
class SimCounters:
    """What tests assert on. Read them any time; the simulator only adds."""

    cold_runs_billed: Counter[str] = attrs.field(factory=Counter)
    polls_served: int = 0
    cached_served: int = 0
    requests: Counter[str] = attrs.field(factory=Counter)
    rejected_429: Counter[str] = attrs.field(factory=Counter)

    @property
    def total_cold_runs(self) -> int:
        return sum(self.cold_runs_billed.values())


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _error(status: int, error: str, message: str | None = None, **extra: object) -> SimResponse:
    body: JSON = {"error": error}
    if message:
        body["message"] = message
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    body.update(extra)
    return SimResponse(status, body, headers)


UNAUTHORIZED = _error(401, "unauthorized", "missing or invalid X-API-Key")


def _path_domain(raw: str) -> str:
    """The server's own light normalisation of a path or body domain."""
    text = raw.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    text = text.split("/", 1)[0].rstrip(".")
    return text[4:] if text.startswith("www.") else text


class KeplerSimulator:
    """A faithful, deterministic stand-in for the Kepler API (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: int | str = 0,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        epoch: datetime | None = None,
        cold_duration: tuple[float, float] | Callable[[str, int], float] = (25.0, 90.0),
        failure_mix: Mapping[str, float] | None = None,
        per_key_cold_per_hour: int | None = 200,
        job_scope: str = "key",
    ) -> None:
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale must be a positive number, got {time_scale!r}")
        mix = dict(DEFAULT_FAILURE_MIX if failure_mix is None else failure_mix)
        unknown = set(mix) - FAILURE_REASONS
        if unknown or any(p < 0 for p in mix.values()) or sum(mix.values()) > 1:
            raise ValueError(
                f"failure_mix takes probabilities (summing to <= 1) for {sorted(FAILURE_REASONS)}"
            )
        if job_scope not in ("key", "account"):
            raise ValueError("job_scope must be 'key' or 'account'")
        self.seed = seed
        self.time_scale = time_scale
        self._clock = clock
        self._t0 = clock()
        self.epoch = (epoch or datetime.now(timezone.utc)).replace(microsecond=0)
        self.cold_duration = cold_duration
        self.failure_mix = mix
        self.per_key_cold_per_hour = per_key_cold_per_hour
        self.job_scope = job_scope
        self.counters = SimCounters()
        self.faults = FaultPlan()
        self.keys: dict[str, SimKey] = {}
        self.jobs: dict[str, SimJob] = {}
        self._records: dict[str, list[SimRecord]] = defaultdict(list)
        self._cold_starts_by_key: dict[str, list[float]] = defaultdict(list)
        self._cold_starts_by_account: dict[str, list[float]] = defaultdict(list)
        self._meters: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self._scripted: dict[str, list[tuple[str | None, float | None]]] = defaultdict(list)
        self.add_key(SANDBOX_KEY, plan="growth", account="acct_simulator")
        self.add_key(LIVE_KEY, plan="enterprise", account="acct_simulator")
        self.add_key(OTHER_KEY, plan="enterprise", account="acct_other")
        self.add_key(FREE_KEY, plan="free", account="acct_free")

    # --- configuration ----------------------------------------------------------------

    def add_key(self, key: str, *, plan: str = "growth", account: str | None = None) -> str:
        """Register an API key on ``plan`` (a name in ``PLANS``) and return it."""
        if not key.startswith(("ki_live_", "ki_test_")):
            raise ValueError("simulator keys start with 'ki_live_' or 'ki_test_'")
        if plan not in PLANS:
            raise ValueError(f"plan must be one of {sorted(PLANS)}")
        self.keys[key] = SimKey(key, account or f"acct_{len(self.keys)}", PLANS[plan])
        return key

    def seed_score(self, domain: str, *, age: float = 0.0) -> None:
        """Store a run for live ``domain`` made ``age`` simulator seconds ago."""
        name = _path_domain(domain)
        runs = self._records[name]
        runs.append(SimRecord(name, self.now() - age, len(runs)))
        runs.sort(key=lambda r: r.at)

    def script(
        self, domain: str, *, failure_reason: str | None = None, duration: float | None = None
    ) -> None:
        """Decide the next cold run of ``domain``: its failure (None: success) and length.

        Scripts queue: each cold run of the domain takes the next one, then the
        random mix applies again.
        """
        # Any string is accepted as a reason, unknown ones included: clients must
        # survive a reason newer than they are.
        self._scripted[_path_domain(domain)].append((failure_reason, duration))

    def add_fault(
        self,
        kind: FaultKind,
        *,
        path: str = "/",
        method: str | None = None,
        times: int = 1,
        status: int = 500,
        code: str = "internal error",
        delay: float = 0.0,
        retry_after: int | None = None,
        after_processing: bool = False,
    ) -> Fault:
        """Make the next ``times`` matching requests fail (see ``Fault``)."""
        return self.faults.add(
            Fault(
                kind=kind,
                path=path,
                method=method,
                times=times,
                status=status,
                code=code,
                delay=delay,
                retry_after=retry_after,
                after_processing=after_processing,
            )
        )

    # --- time -------------------------------------------------------------------------

    def now(self) -> float:
        """Simulator seconds since start."""
        return (self._clock() - self._t0) / self.time_scale

    def now_dt(self) -> datetime:
        return self.at_dt(self.now())

    def at_dt(self, at: float) -> datetime:
        return self.epoch + timedelta(seconds=at)

    def _real_seconds(self, sim_seconds: float) -> int:
        return max(0, math.ceil(sim_seconds * self.time_scale))

    # --- records ----------------------------------------------------------------------

    def _visible(self, domain: str) -> list[SimRecord]:
        now = self.now()
        return [r for r in self._records.get(domain, ()) if r.at <= now]

    def latest(self, domain: str) -> SimRecord | None:
        visible = self._visible(domain)
        return visible[-1] if visible else None

    def _score_body(self, record: SimRecord, key: SimKey) -> JSON:
        run = synthetic_run(self.seed, record.domain, record.run_index)
        return {
            "domain": record.domain,
            "scored_at": _iso(self.at_dt(record.at)),
            "ki_rating": rating_for(run.composite),
            "composite_score": run.composite,
            "scale_premium": run.scale_premium,
            "buckets": run.buckets,
            "rank": {"percentile": _percentile(run.composite), "cohort_size": self._universe()},
            "x_kepler": {
                "tier": key.plan.tier,
                "cache_status": "cached",
                "freshness_window_hours": key.plan.freshness_window_hours,
            },
        }

    def _universe(self) -> int:
        """Size of the ranked universe: a canned 540 plus every domain run here."""
        return 540 + len(self._records)

    # --- auth and metering --------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str]) -> SimKey | None:
        value = headers.get("x-api-key")
        return self.keys.get(value) if value else None

    def _period(self) -> str:
        return self.now_dt().strftime("%Y-%m")

    def _meter(self, key: SimKey, kind: str) -> None:
        if key.key.startswith("ki_test_"):
            return  # test keys never move the counters
        self._meters[(key.account, self._period())][kind] += 1

    def _check_test_domain(self, key: SimKey, domain: str) -> SimResponse | None:
        sandbox = key.key.startswith("ki_test_")
        if sandbox and domain not in SANDBOX_DOMAINS:
            return _error(400, _SANDBOX_ONLY)
        if not sandbox and domain.endswith(".test"):
            return _error(400, "test domains require a ki_test_ key")
        return None

    # --- POST /v1/score -----------------------------------------------------------------

    def post_score(self, key: SimKey, body: object) -> SimResponse:
        if not isinstance(body, dict):
            return _error(400, "body.domain required", "send a JSON object with a domain")
        raw = body.get("domain")
        if not isinstance(raw, str) or not raw.strip():
            return _error(400, "body.domain required", "domain is required")
        domain = _path_domain(raw)
        if not _HOSTNAME.match(domain):
            return _error(400, "invalid domain", f"not a hostname: {raw[:60]!r}")
        if rejected := self._check_test_domain(key, domain):
            return rejected
        if key.key.startswith("ki_test_"):
            return SimResponse(200, {"mode": "sandbox", **self._sandbox_score(domain, key)})
        plan = key.plan
        if not plan.live_cold:
            return _error(
                403,
                "free_tier_sandbox_only",
                "live scoring is not included in the free plan; use a ki_test_ key or upgrade",
                tier="free",
            )
        force = bool(body.get("force_fresh")) and plan.force_fresh
        record = self.latest(domain)
        if (
            record is not None
            and not force
            and self.now() - record.at <= plan.freshness_window_hours * HOUR
        ):
            self._meter(key, "cached")
            self.counters.cached_served += 1
            return SimResponse(200, self._score_body(record, key))
        if limited := self._breakers(key):
            self.counters.rejected_429[str(limited.body)] += 1
            return limited
        return SimResponse(202, self._start_job(key, domain))

    def _breakers(self, key: SimKey) -> SimResponse | None:
        now = self.now()
        per_key = self._cold_starts_by_key[key.key]
        per_key[:] = [t for t in per_key if now - t < HOUR]
        if self.per_key_cold_per_hour is not None and len(per_key) >= self.per_key_cold_per_hour:
            wait = per_key[0] + HOUR - now
            return _error(
                429,
                "rate limited",
                "too many cold calls for this key in the last hour",
                reason="per_key_cold_1h",
                retry_after=self._real_seconds(wait),
            )
        cap = key.plan.cold_included
        if cap is not None:
            per_account = self._cold_starts_by_account[key.account]
            per_account[:] = [t for t in per_account if now - t < DAY]
            if len(per_account) >= 2 * cap:
                wait = per_account[0] + DAY - now
                return _error(
                    429,
                    "rate limited",
                    "account cold spend breaker",
                    reason="account_cold_24h",
                    retry_after=self._real_seconds(wait),
                )
            used = self._meters[(key.account, self._period())]["cold"]
            if used >= cap:
                return _error(
                    429,
                    "cold_budget_exhausted",
                    "monthly cold budget used; it resets on the 1st (UTC)",
                    reason="monthly_cap",
                    retry_after=self._real_seconds(
                        (_next_month(self.now_dt()) - self.now_dt()).total_seconds()
                    ),
                )
        return None

    def _start_job(self, key: SimKey, domain: str) -> JSON:
        now = self.now()
        run_number = self.counters.cold_runs_billed[domain]
        self.counters.cold_runs_billed[domain] += 1
        self._meter(key, "cold")
        self._cold_starts_by_key[key.key].append(now)
        self._cold_starts_by_account[key.account].append(now)
        failure, duration = self._decide(domain, run_number)
        id_bits = stable_rng(self.seed, "job", domain, run_number).getrandbits(128)
        job = SimJob(
            job_id=str(uuid.UUID(int=id_bits, version=4)),
            domain=domain,
            key=key.key,
            account=key.account,
            created=now,
            finishes=now + duration,
            failure_reason=failure,
        )
        self.jobs[job.job_id] = job
        if failure is None:
            runs = self._records[domain]
            runs.append(SimRecord(domain, job.finishes, len(runs)))
            runs.sort(key=lambda r: r.at)
        return {
            "job_id": job.job_id,
            "status": "pending",
            "domain": domain,
            "poll_url": f"/v1/jobs/{job.job_id}",
        }

    def _decide(self, domain: str, run_number: int) -> tuple[str | None, float]:
        rng = stable_rng(self.seed, "outcome", domain, run_number)
        if callable(self.cold_duration):
            duration = float(self.cold_duration(domain, run_number))
        else:
            low, high = self.cold_duration
            duration = rng.uniform(low, high)
        draw = rng.random()
        failure: str | None = None
        for reason, probability in sorted(self.failure_mix.items()):
            if draw < probability:
                failure = reason
                break
            draw -= probability
        if self._scripted.get(domain):
            scripted_failure, scripted_duration = self._scripted[domain].pop(0)
            failure = scripted_failure
            if scripted_duration is not None:
                duration = scripted_duration
        return failure, duration

    # --- GET /v1/jobs/{job_id} ------------------------------------------------------------

    def get_job(self, key: SimKey, job_id: str) -> SimResponse:
        self.counters.polls_served += 1
        job = self.jobs.get(job_id.lower())
        now = self.now()
        if key.key.startswith("ki_test_") or job is None or now - job.created > JOB_TTL:
            return _error(404, "job not found")
        owner = job.key if self.job_scope == "key" else job.account
        caller = key.key if self.job_scope == "key" else key.account
        if owner != caller:
            return _error(403, "forbidden")
        if job.status == "pending" and now >= job.finishes:
            job.status = "failed" if job.failure_reason else "complete"  # settles lazily
        done = job.status != "pending"
        body: JSON = {
            "job_id": job.job_id,
            "status": job.status,
            "domain": job.domain,
            "created_at": _iso(self.at_dt(job.created)),
            "completed_at": _iso(self.at_dt(job.finishes)) if done else None,
            "result_ref": None,
            "score_url": None,
            "failure_reason": job.failure_reason if job.status == "failed" else None,
        }
        if job.status == "complete":
            body["result_ref"] = {"domain": job.domain, "scored_at": _iso(self.at_dt(job.finishes))}
            body["score_url"] = f"/v1/score/{job.domain}"
        return SimResponse(200, body)

    # --- GET /v1/score/{domain} ------------------------------------------------------------

    def get_score(self, key: SimKey, raw: str) -> SimResponse:
        domain = _path_domain(raw)
        if rejected := self._check_test_domain(key, domain):
            return rejected
        if key.key.startswith("ki_test_"):
            return SimResponse(200, {"mode": "sandbox", **self._sandbox_score(domain, key)})
        record = self.latest(domain)
        if record is None:
            return _error(404, "no score available for this domain")
        self._meter(key, "cached")
        self.counters.cached_served += 1
        return SimResponse(200, self._score_body(record, key))

    def _sandbox_score(self, domain: str, key: SimKey) -> JSON:
        return {
            **SANDBOX_SCORES[domain].body(domain),
            "x_kepler": {
                "tier": key.plan.tier,
                "cache_status": "cached",
                "freshness_window_hours": key.plan.freshness_window_hours,
            },
        }

    # --- history ------------------------------------------------------------------------

    def history(self, key: SimKey, raw: str, query: Mapping[str, str]) -> SimResponse:
        domain = _path_domain(raw)
        if rejected := self._check_test_domain(key, domain):
            return rejected
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 500:
            return _error(400, "invalid_limit", "limit must be an integer from 1 to 500")
        offset = 0
        if "cursor" in query:
            try:
                decoded = base64.urlsafe_b64decode(query["cursor"].encode()).decode()
                offset = int(decoded.removeprefix("offset:"))
                if not decoded.startswith("offset:") or offset < 0:
                    raise ValueError(decoded)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                return _error(400, "invalid_cursor", "drop the cursor or use next_cursor")
        sandbox = key.key.startswith("ki_test_")
        rows = self._sandbox_history(domain) if sandbox else self._live_history(domain)
        if not rows:
            return _error(404, "no_history")
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
            "scored_at": _iso(self.at_dt(at)),
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
        domain = _path_domain(raw)
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
                return _error(404, "no_history")
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
        domain = _path_domain(raw)
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
            return _error(404, "no score available for this domain")
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
                "scored_at": _iso(self.at_dt(record.at)),
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
            "composite_hist": _histogram(composites, width=5, bins=20),
            "scale_premium_hist": _histogram([r[1] for r in rows], width=1, bins=12),
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
            return _error(400, "window must be one of ['7d','30d','90d']")
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
        gainers = [_mover(*r) for r in by_change if r[1] > r[2]]
        decliners = [_mover(*r) for r in by_change if r[1] < r[2]]
        body: JSON = {
            "window": window,
            "window_start": _iso(self.at_dt(start)),
            "window_end": _iso(self.at_dt(end)),
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
            "last_reset": _iso(month_start),
            "next_reset": _iso(_next_month(now)),
            "tier_limits": {
                "cached_calls_included": plan.cached_included,
                "cold_calls_included": plan.cold_included,
                "freshness_window_hours": plan.freshness_window_hours,
            },
        }
        if key.key.startswith("ki_test_"):
            body = {"mode": "sandbox", **body}
        return SimResponse(200, body)


def _mover(domain: str, now: float, then: float) -> JSON:
    return {
        "domain": domain,
        "company_name": domain.split(".")[0].capitalize(),
        "composite_now": now,
        "composite_then": then,
        "delta": round(now - then, 1),
        "ki_rating_now": rating_for(now),
        "ki_rating_then": rating_for(then),
    }


def _histogram(values: list[float], *, width: int, bins: int) -> list[JSON]:
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value // width)))] += 1
    return [{"range": f"{i * width}-{(i + 1) * width}", "count": c} for i, c in enumerate(counts)]


def _percentile(composite: float) -> int:
    """Percentile of ``composite`` in a normal universe (mean 50, sd 15)."""
    return max(0, min(100, round(50 * (1 + math.erf((composite - 50) / (15 * math.sqrt(2)))))))


def _next_month(now: datetime) -> datetime:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)
