"""MidLyr screen analysis on the kepler_async engine.

``POST /api/v1/analysis/screen`` (content and scenario) answers ``{id}``; ``GET
/api/v1/jobs/{id}`` is polled while ``running`` until ``succeeded`` (``result``, typed by
its ``type``: unknown types are kept raw) or ``failed`` (``error`` is ``{code, message}``).
The POST is never sent twice: the API has no idempotency.

    async with AsyncMidLyr() as midlyr:            # key from MIDLYR_API_KEY
        result = await midlyr.screen("Get 0% APR forever!", scenario="marketing_asset")
"""

from __future__ import annotations

from ._client import (
    SCENARIOS,
    AsyncMidLyr,
    Chunk,
    Citation,
    MidLyrDialect,
    MidLyrJob,
    MidLyrJobFailed,
    Regulation,
    RiskResult,
    ScreenFinding,
    ScreenResult,
    UnknownResult,
)

__all__ = [
    "SCENARIOS",
    "AsyncMidLyr",
    "Chunk",
    "Citation",
    "MidLyrDialect",
    "MidLyrJob",
    "MidLyrJobFailed",
    "Regulation",
    "RiskResult",
    "ScreenFinding",
    "ScreenResult",
    "UnknownResult",
]
