"""The plain Kepler endpoints, as a base class of ``AsyncKepler``."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from typing import TypeVar

from kepler_async._engine._http import HttpBoundary
from kepler_async._engine._kit import path_segment
from kepler_async._engine._traced import traced
from kepler_async._exceptions import ClientClosed, InvalidInput
from kepler_async._serde import decode

from ._config import HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT
from ._domains import normalize_domain, validate_job_id
from ._models import (
    Cohort,
    Confidence,
    Distribution,
    HistoryPage,
    HistoryRecord,
    KeplerJob,
    Movers,
    MoversWindow,
    Score,
    SignalsManifest,
    Usage,
)

__all__ = ["KeplerEndpoints"]

T = TypeVar("T")


class KeplerEndpoints(abc.ABC):
    """The ``GET`` endpoints that answer at once (a base class of ``AsyncKepler``)."""

    @property
    @abc.abstractmethod
    def _http(self) -> HttpBoundary:
        """The HTTP boundary of the client (``AsyncKepler`` gives its own)."""

    def _check_open(self) -> None:
        if self._http.closed:
            raise ClientClosed("this client is closed; create a new one")

    async def _get(
        self,
        path: str,
        cls: type[T],
        params: Mapping[str, str | int] | None = None,
        *,
        template: str | None = None,
    ) -> T:
        self._check_open()
        reply = await self._http.request("GET", path, params=params, template=template or path)
        return decode(cls, reply.body, what=f"GET {path}")

    # --- plain endpoints ---------------------------------------------------------------

    @traced("get_score", subject="domain")
    async def get_score(self, domain: str) -> Score:
        """The latest stored score for ``domain``, whatever its age. Never starts a run.

        Raises ``NotFound`` if the domain was never scored.
        """
        name = normalize_domain(domain)
        return await self._get(
            f"/v1/score/{path_segment(name)}", Score, template="/v1/score/{domain}"
        )

    @traced("get_job")
    async def get_job(self, job_id: str) -> KeplerJob:
        """One look at a cold job (``GET /v1/jobs/{job_id}``)."""
        canonical = validate_job_id(job_id)
        return await self._get(
            f"/v1/jobs/{path_segment(canonical)}", KeplerJob, template="/v1/jobs/{job_id}"
        )

    @traced("history", subject="domain")
    async def history(
        self, domain: str, *, limit: int | None = None, cursor: str | None = None
    ) -> HistoryPage:
        """One page of past runs for ``domain``, newest first."""
        name = normalize_domain(domain)
        params: dict[str, str | int] = {}
        if limit is not None:
            params["limit"] = _check_limit(limit)
        if cursor is not None:
            if not isinstance(cursor, str) or not cursor:
                raise InvalidInput("cursor must be a non-empty string", value=repr(cursor)[:100])
            params["cursor"] = cursor
        return await self._get(
            f"/v1/score/{path_segment(name)}/history",
            HistoryPage,
            params,
            template="/v1/score/{domain}/history",
        )

    async def iter_history(
        self,
        domain: str,
        *,
        page_size: int = HISTORY_DEFAULT_LIMIT,
        max_records: int | None = None,
    ) -> AsyncIterator[HistoryRecord]:
        """Every past run for ``domain``, newest first, following ``next_cursor``."""
        page_size = _check_limit(page_size)
        if max_records is not None and (isinstance(max_records, bool) or max_records < 0):
            raise InvalidInput("max_records must be >= 0", value=repr(max_records))
        seen = 0
        cursor: str | None = None
        while max_records is None or seen < max_records:
            page = await self.history(domain, limit=page_size, cursor=cursor)
            for record in page.records:
                if max_records is not None and seen >= max_records:
                    return
                seen += 1
                yield record
            if not page.next_cursor or not page.records:
                return
            cursor = page.next_cursor

    @traced("cohort", subject="domain")
    async def cohort(self, domain: str) -> Cohort:
        """How ``domain`` ranks against peers of its sector, geography and profile."""
        name = normalize_domain(domain)
        return await self._get(
            f"/v1/company/{path_segment(name)}/cohort",
            Cohort,
            template="/v1/company/{domain}/cohort",
        )

    @traced("confidence", subject="domain")
    async def confidence(self, domain: str) -> Confidence:
        """How much of ``domain``'s score rests on real data."""
        name = normalize_domain(domain)
        return await self._get(
            f"/v1/company/{path_segment(name)}/confidence",
            Confidence,
            template="/v1/company/{domain}/confidence",
        )

    @traced("distribution")
    async def distribution(self) -> Distribution:
        """Score histograms over the whole scored universe."""
        return await self._get("/v1/distribution", Distribution)

    @traced("movers")
    async def movers(self, window: MoversWindow | str = MoversWindow.DAYS_30) -> Movers:
        """Top 20 gainers and decliners over ``window`` (``7d``, ``30d`` or ``90d``)."""
        try:
            value = MoversWindow(window).value
        except ValueError:
            raise InvalidInput(
                f"window must be one of '7d', '30d', '90d', not {window!r}",
                value=repr(window)[:100],
            ) from None
        return await self._get("/v1/movers", Movers, {"window": value})

    @traced("signals")
    async def signals(self) -> SignalsManifest:
        """The manifest of the signals the engine scores."""
        return await self._get("/v1/signals", SignalsManifest)

    @traced("usage")
    async def usage(self) -> Usage:
        """This month's usage counters and plan limits (reading them is free)."""
        return await self._get("/v1/usage", Usage)


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise InvalidInput(
            f"limit must be an integer from 1 to {HISTORY_MAX_LIMIT}, got {limit!r}",
            value=repr(limit)[:100],
        )
    return limit
