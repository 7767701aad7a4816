"""The Kepler simulator's state and rules, without any web framework.

``KeplerSimulator`` keeps keys, accounts, records and jobs, and answers each endpoint as
a ``SimResponse`` (status, JSON body, headers). ``_sim_app`` wires it to Starlette.

Time: the simulator reads ``clock()`` (real seconds: ``time.monotonic`` plus whatever
virtual time has jumped, ``_virtual.sim_time``, by default) and
runs ``1 / time_scale`` times faster: with ``time_scale=0.01`` a 60 s cold run takes
0.6 s. ``Retry-After`` headers are given in real seconds. Randomness is drawn from
``seed``, the domain and the run number, so outcomes do not depend on request order.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from kepler_async._kepler._config import DEFAULT_BASE_URL

if TYPE_CHECKING:
    from starlette.applications import Starlette

from ._faults import FaultPlan, FaultsMixin
from ._sim_data import (
    PLANS,
    SANDBOX_DOMAINS,
    SANDBOX_SCORES,
    rating_for,
    stable_rng,
    synthetic_run,
)
from ._sim_reads import KeplerReads
from ._sim_types import (
    JSON,
    SimCounters,
    SimJob,
    SimKey,
    SimRecord,
    SimResponse,
    error,
    iso,
    next_month,
    path_domain,
    percentile_of,
)
from ._virtual import sim_time

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


class KeplerSimulator(FaultsMixin, KeplerReads):
    """A faithful, deterministic stand-in for the Kepler API (see the module docstring)."""

    #: Where the real API lives: what ``mock()`` routes by default (as on every simulator).
    api_base_url: ClassVar[str] = DEFAULT_BASE_URL

    def __init__(
        self,
        *,
        seed: int | str = 0,
        time_scale: float = 1.0,
        clock: Callable[[], float] = sim_time,
        epoch: datetime | None = None,
        cold_duration: tuple[float, float] | Callable[[str, int], float] = (25.0, 90.0),
        failure_mix: Mapping[str, float] | None = None,
        per_key_cold_per_hour: int | None = 200,
        per_account_cold_per_day: int | None = None,
        monthly_cold_budget: int | None = None,
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
        #: Overrides of the plans' limits (None: each key's plan decides; the account
        #: breaker is then twice the plan's monthly cold cap in 24 h, as documented).
        for name, limit in (
            ("per_key_cold_per_hour", per_key_cold_per_hour),
            ("per_account_cold_per_day", per_account_cold_per_day),
            ("monthly_cold_budget", monthly_cold_budget),
        ):
            if limit is not None and (not isinstance(limit, int) or limit < 0):
                raise ValueError(f"{name} must be a whole number >= 0 or None, got {limit!r}")
        self.per_account_cold_per_day = per_account_cold_per_day
        self.monthly_cold_budget = monthly_cold_budget
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
        name = path_domain(domain)
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
        self._scripted[path_domain(domain)].append((failure_reason, duration))

    def create_app(self) -> Starlette:
        """An ASGI app (Starlette) serving this simulator, as the vendor simulators have."""
        from ._sim_app import create_app

        return create_app(self)

    def mock(self, router: Any, *, base_url: str | None = None) -> Any:
        """Answer from this simulator every request a respx router catches under
        ``base_url`` (the real API's by default), cold jobs included::

            def test_my_code(respx_mock):
                sim = KeplerSimulator()
                sim.mock(respx_mock)
                # code that builds AsyncKepler(key) as usual now talks to `sim`

        Returns the respx route (``route.calls`` lists what was sent).
        """
        from ._respx import route_to_app

        return route_to_app(router, self.create_app(), base_url or self.api_base_url)

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
            "scored_at": iso(self.at_dt(record.at)),
            "ki_rating": rating_for(run.composite),
            "composite_score": run.composite,
            "scale_premium": run.scale_premium,
            "buckets": run.buckets,
            "rank": {"percentile": percentile_of(run.composite), "cohort_size": self._universe()},
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
            return error(400, _SANDBOX_ONLY)
        if not sandbox and domain.endswith(".test"):
            return error(400, "test domains require a ki_test_ key")
        return None

    # --- POST /v1/score -----------------------------------------------------------------

    def post_score(self, key: SimKey, body: object) -> SimResponse:
        if not isinstance(body, dict):
            return error(400, "body.domain required", "send a JSON object with a domain")
        raw = body.get("domain")
        if not isinstance(raw, str) or not raw.strip():
            return error(400, "body.domain required", "domain is required")
        domain = path_domain(raw)
        if not _HOSTNAME.match(domain):
            return error(400, "invalid domain", f"not a hostname: {raw[:60]!r}")
        if rejected := self._check_test_domain(key, domain):
            return rejected
        if key.key.startswith("ki_test_"):
            return SimResponse(200, {"mode": "sandbox", **self._sandbox_score(domain, key)})
        plan = key.plan
        if not plan.live_cold:
            return error(
                403,
                "free_tier_sandbox_only",
                "live scoring is not included in the free plan; use a ki_test_ key or upgrade",
                tier="free",
            )
        force_fresh = body.get("force_fresh", False)
        if not isinstance(force_fresh, bool):  # "false" is truthy: never start a run on it
            return error(400, "invalid force_fresh", "force_fresh must be true or false")
        if not isinstance(body.get("wait", True), bool):  # deprecated and ignored, but typed
            return error(400, "invalid wait", "wait must be true or false")
        force = force_fresh and plan.force_fresh
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
            wait = per_key[0] + HOUR - now if per_key else HOUR  # a limit of 0
            return error(
                429,
                "rate limited",
                "too many cold calls for this key in the last hour",
                reason="per_key_cold_1h",
                retry_after=self._real_seconds(wait),
            )
        cap = key.plan.cold_included
        if self.monthly_cold_budget is not None:
            cap = self.monthly_cold_budget
        day_limit = self.per_account_cold_per_day
        if day_limit is None and cap is not None:
            day_limit = 2 * cap  # the documented breaker: twice the monthly cap in 24 h
        if day_limit is not None:
            per_account = self._cold_starts_by_account[key.account]
            per_account[:] = [t for t in per_account if now - t < DAY]
            if len(per_account) >= day_limit:
                wait = per_account[0] + DAY - now if per_account else DAY  # a limit of 0
                return error(
                    429,
                    "rate limited",
                    "account cold spend breaker",
                    reason="account_cold_24h",
                    retry_after=self._real_seconds(wait),
                )
        if cap is not None:
            used = self._meters[(key.account, self._period())]["cold"]
            if used >= cap:
                return error(
                    429,
                    "cold_budget_exhausted",
                    "monthly cold budget used; it resets on the 1st (UTC)",
                    reason="monthly_cap",
                    retry_after=self._real_seconds(
                        (next_month(self.now_dt()) - self.now_dt()).total_seconds()
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
            return error(404, "job not found")
        owner = job.key if self.job_scope == "key" else job.account
        caller = key.key if self.job_scope == "key" else key.account
        if owner != caller:
            return error(403, "forbidden")
        if job.status == "pending" and now >= job.finishes:
            job.status = "failed" if job.failure_reason else "complete"  # settles lazily
        done = job.status != "pending"
        body: JSON = {
            "job_id": job.job_id,
            "status": job.status,
            "domain": job.domain,
            "created_at": iso(self.at_dt(job.created)),
            "completed_at": iso(self.at_dt(job.finishes)) if done else None,
            "result_ref": None,
            "score_url": None,
            "failure_reason": job.failure_reason if job.status == "failed" else None,
        }
        if job.status == "complete":
            body["result_ref"] = {"domain": job.domain, "scored_at": iso(self.at_dt(job.finishes))}
            body["score_url"] = f"/v1/score/{job.domain}"
        return SimResponse(200, body)

    # --- GET /v1/score/{domain} ------------------------------------------------------------

    def get_score(self, key: SimKey, raw: str) -> SimResponse:
        domain = path_domain(raw)
        if rejected := self._check_test_domain(key, domain):
            return rejected
        if key.key.startswith("ki_test_"):
            return SimResponse(200, {"mode": "sandbox", **self._sandbox_score(domain, key)})
        record = self.latest(domain)
        if record is None:
            return error(404, "no score available for this domain")
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
