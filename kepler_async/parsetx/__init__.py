"""ParseTx transaction enrichment on the kepler_async engine.

``POST /v1/enrich/async`` takes at most 500 raw transaction strings (checked before
sending) and answers 202 ``{job_id, status: "queued"}``; ``GET /v1/enrich/jobs/{id}`` is
polled through ``queued`` and ``processing`` until ``complete`` (``results``, one per
input, in the order submitted, each ``complete``, ``retry`` or ``rejected``) or
``failed``. The monthly quota and the daily token budget answer 429 with their own bodies,
mapped to ``QuotaExceeded`` and ``TokenBudgetExceeded``. A job polled with another key
answers 401: that fails the one job (``JobForbidden``), not the client.

    async with AsyncParseTx() as parsetx:          # key from PARSETX_API_KEY
        result = await parsetx.enrich(["AMZN Mktp US", "NETFLIX.COM ON DEMAND"])
"""

from __future__ import annotations

from ._client import (
    MAX_BATCH,
    AsyncParseTx,
    EnrichItem,
    EnrichJob,
    EnrichResult,
    ItemStatus,
    ParseTxDialect,
    ParseTxJobFailed,
    QuotaExceeded,
    TokenBudgetExceeded,
)

__all__ = [
    "MAX_BATCH",
    "AsyncParseTx",
    "EnrichItem",
    "EnrichJob",
    "EnrichResult",
    "ItemStatus",
    "ParseTxDialect",
    "ParseTxJobFailed",
    "QuotaExceeded",
    "TokenBudgetExceeded",
]
