"""What a batch would cost, before it runs: ``AsyncKepler.plan(domains)`` and
``kepler-async plan``. Nothing billed is sent: the journal is read, ``GET /v1/usage``
is free, and only with ``check_server=True`` is each domain looked up with
``GET /v1/score/{domain}`` (a metered cached call each)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone

import attrs

from kepler_async._exceptions import InvalidDomain, NotFound

from ._domains import normalize_domain
from ._models import Score, Usage

__all__ = ["PER_KEY_COLD_PER_HOUR", "BatchPlan", "make_plan"]

#: The documented limit on cold runs per key per hour (a 429 ``per_key_cold_1h``).
PER_KEY_COLD_PER_HOUR = 200


@attrs.frozen(kw_only=True)
class BatchPlan:
    """What scoring a batch would take (``AsyncKepler.plan``)."""

    #: Inputs given.
    inputs: int
    #: Inputs that are not domains: (position, input, why).
    invalid: list[tuple[int, str, str]]
    #: Inputs that name a domain given earlier (they would share its job).
    duplicates: int
    #: The distinct domains, normalised, in input order.
    domains: list[str]
    #: Domains the journal holds a score for, with the score's age in seconds.
    in_journal: dict[str, float]
    #: With ``check_server=True``: domains the API holds a fresh score for (each look
    #: was a metered cached call); None when not checked.
    fresh_on_server: list[str] | None
    #: What ``GET /v1/usage`` said (free to ask).
    usage: Usage | None

    @property
    def cold_at_most(self) -> int:
        """Billed cold runs the batch could start: the distinct domains neither in the
        journal nor (if checked) fresh on the server."""
        known = set(self.in_journal) | set(self.fresh_on_server or ())
        return sum(1 for domain in self.domains if domain not in known)

    @property
    def cold_left_this_month(self) -> int | None:
        """Cold runs left in the plan this month (None: unmetered, or not known)."""
        limits = self.usage.tier_limits if self.usage is not None else None
        if limits is None or limits.cold_calls_included is None or self.usage is None:
            return None
        return max(0, limits.cold_calls_included - self.usage.cold_calls)

    @property
    def freshness_window(self) -> float | None:
        """How long (seconds) the API serves a score without a new run, per the plan."""
        limits = self.usage.tier_limits if self.usage is not None else None
        hours = limits.freshness_window_hours if limits is not None else None
        return None if hours is None else hours * 3600

    @property
    def hours_at_least(self) -> int:
        """Whole hours the per-key limit (200 cold runs an hour) makes the batch take
        at least, beyond its last hour (0: it fits in one)."""
        return max(0, math.ceil(self.cold_at_most / PER_KEY_COLD_PER_HOUR) - 1)


async def make_plan(
    domains: Iterable[str],
    *,
    journal_score: Callable[[str], Awaitable[Score | None]],
    usage: Callable[[], Awaitable[Usage]],
    server_score: Callable[[str], Awaitable[Score]] | None,
    now: datetime | None = None,
) -> BatchPlan:
    """The plan of ``domains`` (see ``BatchPlan``); ``server_score`` only with
    ``check_server``."""
    when = now or datetime.now(timezone.utc)
    invalid: list[tuple[int, str, str]] = []
    unique: dict[str, None] = {}
    inputs = duplicates = 0
    for index, raw in enumerate(domains):
        inputs += 1
        try:
            name = normalize_domain(raw)
        except InvalidDomain as error:
            invalid.append((index, str(raw), error.message))
            continue
        if name in unique:
            duplicates += 1
        unique[name] = None
    held: dict[str, float] = {}
    for name in unique:
        score = await journal_score(name)
        if score is not None:
            held[name] = max(0.0, (when - score.scored_at).total_seconds())
    answer = await usage()
    fresh: list[str] | None = None
    if server_score is not None:
        window = _window(answer)
        fresh = []
        for name in unique:
            if name in held:
                continue
            try:
                score = await server_score(name)
            except NotFound:
                continue
            if window is not None and (when - score.scored_at).total_seconds() < window:
                fresh.append(name)
    return BatchPlan(
        inputs=inputs,
        invalid=invalid,
        duplicates=duplicates,
        domains=list(unique),
        in_journal=held,
        fresh_on_server=fresh,
        usage=answer,
    )


def _window(usage: Usage) -> float | None:
    limits = usage.tier_limits
    hours = limits.freshness_window_hours if limits is not None else None
    return None if hours is None else hours * 3600
