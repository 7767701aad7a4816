"""``AsyncKepler``: the client for the Kepler Insights API."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TypeVar

import httpx

from ._constants import (
    API_KEY_ENV,
    API_KEY_PREFIXES,
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
)
from ._domains import normalize_domain, path_segment, validate_job_id
from ._exceptions import ClientClosed, ConfigurationError, InvalidInput
from ._http import HttpBoundary
from ._kepler_errors import kepler_error, kepler_submit_never_started
from ._models import (
    Cohort,
    Confidence,
    Distribution,
    HistoryPage,
    HistoryRecord,
    Job,
    Movers,
    MoversWindow,
    Score,
    SignalsManifest,
    Usage,
)
from ._policies import RetryPolicy
from ._serde import decode

__all__ = ["AsyncKepler"]

T = TypeVar("T")

BASE_URL_ENV = "KEPLER_BASE_URL"
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def _resolve_api_key(api_key: str | None) -> str:
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
        if not api_key:
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable "
                "(a 'ki_test_' key works against the sandbox and the simulator)"
            )
    if not isinstance(api_key, str):
        raise ConfigurationError(f"api_key must be a string, not {type(api_key).__name__}")
    api_key = api_key.strip()
    if not api_key.startswith(API_KEY_PREFIXES):
        raise ConfigurationError(
            "the API key does not look like a Kepler key: expected it to start with "
            "'ki_live_' (live) or 'ki_test_' (sandbox)"
        )
    if not _KEY_CHARS.match(api_key) or len(api_key) <= len("ki_live_"):
        raise ConfigurationError(
            "the API key is malformed: expected 'ki_live_' or 'ki_test_' followed by "
            "printable ASCII characters and no spaces"
        )
    return api_key


def _resolve_base_url(base_url: str | None) -> str:
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url {base_url!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url {base_url!r} needs an http:// or https:// scheme and a host, "
            "as in 'https://api.keplerinsights.us'"
        )
    if url.query or url.fragment:
        raise ConfigurationError(f"base_url {base_url!r} must not carry a query or fragment")
    return str(url).rstrip("/")


class AsyncKepler:
    """An async client for the Kepler Insights API.

    Use it as an async context manager, or (in a notebook, or for the life of a web
    app) create it once and ``await client.aclose()`` when done::

        async with AsyncKepler() as kepler:       # key from KEPLER_API_KEY
            score = await kepler.get_score("stripe.com")

    ``base_url`` defaults to ``KEPLER_BASE_URL`` or the production API. An
    ``http_client`` you pass is used as it is and left open for you to close; a
    ``transport`` (such as the simulator's) goes into an httpx client this one owns.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        key = _resolve_api_key(api_key)
        url = _resolve_base_url(base_url)
        if http_client is not None and transport is not None:
            raise ConfigurationError("pass http_client or transport, not both")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        self._sandbox = key.startswith("ki_test_")
        self._http = HttpBoundary.create(
            api_key=key,
            base_url=url,
            auth_header="X-API-Key",
            map_error=kepler_error,
            never_started=kepler_submit_never_started,
            http_client=http_client,
            transport=transport,
            timeout=float(timeout),
            retry=retry,
        )

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> AsyncKepler:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client (and the httpx client, if this client made it). Idempotent."""
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.closed

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def sandbox(self) -> bool:
        """True for a ``ki_test_`` key: canned data for the four ``.test`` domains."""
        return self._sandbox

    def __repr__(self) -> str:
        key = "ki_test_***" if self._sandbox else "ki_live_***"
        state = "closed" if self.closed else "open"
        return f"<AsyncKepler base_url={self.base_url!r} key={key} {state}>"

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosed("this AsyncKepler is closed; create a new one")

    async def _get(
        self, path: str, cls: type[T], params: Mapping[str, str | int] | None = None
    ) -> T:
        self._check_open()
        reply = await self._http.request("GET", path, params=params)
        return decode(cls, reply.body, what=f"GET {path}")

    # --- plain endpoints ---------------------------------------------------------------

    async def get_score(self, domain: str) -> Score:
        """The latest stored score for ``domain``, whatever its age. Never starts a run.

        Raises ``NotFound`` if the domain was never scored.
        """
        name = normalize_domain(domain)
        return await self._get(f"/v1/score/{path_segment(name)}", Score)

    async def get_job(self, job_id: str) -> Job:
        """One look at a cold job (``GET /v1/jobs/{job_id}``)."""
        canonical = validate_job_id(job_id)
        return await self._get(f"/v1/jobs/{path_segment(canonical)}", Job)

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
        return await self._get(f"/v1/score/{path_segment(name)}/history", HistoryPage, params)

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

    async def cohort(self, domain: str) -> Cohort:
        """How ``domain`` ranks against peers of its sector, geography and profile."""
        name = normalize_domain(domain)
        return await self._get(f"/v1/company/{path_segment(name)}/cohort", Cohort)

    async def confidence(self, domain: str) -> Confidence:
        """How much of ``domain``'s score rests on real data."""
        name = normalize_domain(domain)
        return await self._get(f"/v1/company/{path_segment(name)}/confidence", Confidence)

    async def distribution(self) -> Distribution:
        """Score histograms over the whole scored universe."""
        return await self._get("/v1/distribution", Distribution)

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

    async def signals(self) -> SignalsManifest:
        """The manifest of the signals the engine scores."""
        return await self._get("/v1/signals", SignalsManifest)

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
