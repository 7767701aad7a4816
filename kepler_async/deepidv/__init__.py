"""deepidv adverse-media screening on the kepler_async engine.

``POST /v1/screening/adverse-media`` queues a screening (with an ``Idempotency-Key``, so a
retried submit cannot create a second job); ``GET /v1/async-jobs/{jobId}`` is polled until
``ready`` (the result is inline) or ``failed`` (``error`` is a string). Statuses are
accepted in either case (the API sent ``PENDING``/``COMPLETED`` once); ``createdAt`` is
read as seconds or milliseconds, whichever it is; a foreign or unknown job may come back
as 401, 403 or 404, and each is handled.

    async with AsyncDeepidv() as deepidv:          # key from DEEPIDV_API_KEY
        result = await deepidv.screen_adverse_media(
            first_name="Ada", last_name="Lovelace", date_of_birth="1815-12-10"
        )
"""

from __future__ import annotations

from ._client import (
    AdverseMediaResult,
    Article,
    AsyncDeepidv,
    DeepidvDialect,
    DeepidvJob,
    DeepidvJobFailed,
    Exposure,
    Finding,
    RiskLevel,
)

__all__ = [
    "AdverseMediaResult",
    "Article",
    "AsyncDeepidv",
    "DeepidvDialect",
    "DeepidvJob",
    "DeepidvJobFailed",
    "Exposure",
    "Finding",
    "RiskLevel",
]
