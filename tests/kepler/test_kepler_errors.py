"""Every documented Kepler error maps to its class of the tree, with its fields."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

import kepler_async as ka
from kepler_async._kepler._errors import kepler_error, kepler_submit_never_started

SANDBOX_400 = (
    "sandbox: only ['acme.test', 'cohort.test', 'struggling.test', 'unicorn.test'] supported"
)

CASES = [
    pytest.param(
        400,
        "POST",
        "/v1/score",
        {"error": "body.domain required"},
        {},
        ka.BadRequest,
        {"code": "body.domain required"},
        id="400-missing-domain",
    ),
    pytest.param(
        400,
        "POST",
        "/v1/score",
        {"error": SANDBOX_400},
        {},
        ka.BadRequest,
        {"code": SANDBOX_400},
        id="400-sandbox-only-domains",
    ),
    pytest.param(
        400,
        "POST",
        "/v1/score",
        {"error": "test domains require a ki_test_ key"},
        {},
        ka.BadRequest,
        {},
        id="400-test-domain-live-key",
    ),
    pytest.param(
        400,
        "GET",
        "/v1/score/a.com/history",
        {"error": "invalid_cursor"},
        {},
        ka.BadRequest,
        {"code": "invalid_cursor"},
        id="400-invalid-cursor",
    ),
    pytest.param(
        400,
        "GET",
        "/v1/movers",
        {"error": "window must be one of ['7d','30d','90d']"},
        {},
        ka.BadRequest,
        {},
        id="400-window",
    ),
    pytest.param(
        401,
        "GET",
        "/v1/usage",
        {"error": "unauthorized"},
        {},
        ka.AuthenticationError,
        {"status": 401},
        id="401",
    ),
    pytest.param(
        403,
        "POST",
        "/v1/score",
        {"error": "free_tier_sandbox_only", "tier": "free"},
        {},
        ka.SandboxOnly,
        {"code": "free_tier_sandbox_only"},
        id="403-free-tier",
    ),
    pytest.param(
        403,
        "GET",
        "/v1/jobs/9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f",
        {"error": "forbidden"},
        {},
        ka.JobForbidden,
        {},
        id="403-foreign-job",
    ),
    pytest.param(
        403,
        "GET",
        "/v1/usage",
        {"error": "something_new"},
        {},
        ka.PermissionDenied,
        {"code": "something_new"},
        id="403-unknown-code",
    ),
    pytest.param(
        404,
        "GET",
        "/v1/score/a.com",
        {"error": "no score available for this domain"},
        {},
        ka.NotFound,
        {},
        id="404-no-score",
    ),
    pytest.param(
        404,
        "GET",
        "/v1/score/a.com/history",
        {"error": "no_history"},
        {},
        ka.NotFound,
        {"code": "no_history"},
        id="404-no-history",
    ),
    pytest.param(
        404,
        "GET",
        "/v1/jobs/9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f",
        {"error": "job not found"},
        {},
        ka.JobNotFound,
        {},
        id="404-job",
    ),
    pytest.param(
        429,
        "POST",
        "/v1/score",
        {"error": "cold_budget_exhausted", "reason": "monthly_cap"},
        {"retry-after": "86400"},
        ka.ColdBudgetExhausted,
        {"reason": "monthly_cap", "retry_after": 86400.0},
        id="429-monthly-cap",
    ),
    pytest.param(
        429,
        "POST",
        "/v1/score",
        {"error": "rate limited", "reason": "per_key_cold_1h"},
        {"retry-after": "120"},
        ka.RateLimited,
        {"reason": "per_key_cold_1h", "retry_after": 120.0},
        id="429-per-key",
    ),
    pytest.param(
        429,
        "POST",
        "/v1/score",
        {"error": "rate limited", "reason": "account_cold_24h"},
        {},
        ka.RateLimited,
        {"reason": "account_cold_24h", "retry_after": None},
        id="429-account-no-retry-after",
    ),
    pytest.param(
        500,
        "GET",
        "/v1/usage",
        {"error": "internal error"},
        {"x-request-id": "req-1"},
        ka.ServerError,
        {"request_id": "req-1"},
        id="500-internal",
    ),
    pytest.param(
        500,
        "POST",
        "/v1/score",
        {"error": "scoring engine unavailable"},
        {},
        ka.ServerError,
        {"code": "scoring engine unavailable"},
        id="500-engine",
    ),
    pytest.param(
        500,
        "GET",
        "/v1/usage",
        {"error": "sandbox_invariant_violated"},
        {},
        ka.ServerError,
        {},
        id="500-sandbox-invariant",
    ),
    pytest.param(
        502,
        "POST",
        "/v1/score",
        {"error": "scoring failed"},
        {},
        ka.ServerError,
        {"status": 502},
        id="502-legacy",
    ),
    pytest.param(
        503,
        "GET",
        "/v1/usage",
        None,
        {"retry-after": "3"},
        ka.ServerError,
        {"code": None, "retry_after": 3.0, "message": "HTTP 503"},
        id="503-gateway-not-json",
    ),
    pytest.param(
        504,
        "POST",
        "/v1/score",
        {"error": "scoring timeout"},
        {},
        ka.ServerError,
        {"status": 504},
        id="504-legacy",
    ),
    pytest.param(
        418,
        "GET",
        "/v1/usage",
        {"error": "teapot"},
        {},
        ka.APIError,
        {"code": "teapot"},
        id="unknown-4xx",
    ),
    pytest.param(
        400,
        "GET",
        "/v1/usage",
        ["not", "an", "object"],
        {},
        ka.BadRequest,
        {"code": None, "message": "HTTP 400"},
        id="body-not-object",
    ),
]


@pytest.mark.parametrize(("status", "method", "path", "body", "headers", "cls", "fields"), CASES)
def test_status_body_headers_map_to_class_and_fields(
    status, method, path, body, headers, cls, fields
) -> None:
    error = kepler_error(status, body, headers, method=method, path=path)
    assert type(error) is cls
    assert error.status == status
    assert error.method == method
    assert error.path == path
    for name, value in fields.items():
        assert getattr(error, name) == value, name
    assert str(status) in str(error)


def test_retry_after_as_http_date() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=90)
    error = kepler_error(
        429,
        {"error": "rate limited", "reason": "per_key_cold_1h"},
        {"retry-after": format_datetime(when, usegmt=True)},
        method="POST",
        path="/v1/score",
    )
    assert isinstance(error, ka.RateLimited)
    assert error.retry_after is not None
    assert 85 <= error.retry_after <= 90


def test_message_prefers_the_hint_and_keeps_the_code() -> None:
    error = kepler_error(
        429,
        {"error": "rate limited", "message": "slow down", "reason": "per_key_cold_1h"},
        {"retry-after": "5"},
        method="POST",
        path="/v1/score",
    )
    assert error.message == "slow down"
    assert error.code == "rate limited"
    assert str(error) == (
        "POST /v1/score -> 429 'rate limited': slow down (reason: per_key_cold_1h); retry after 5s"
    )


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, "scoring engine unavailable", True),
        (500, "internal error", False),
        (503, "scoring engine unavailable", False),
        (429, "rate limited", False),
    ],
)
def test_only_an_engine_that_never_started_allows_a_second_submit(status, code, expected) -> None:
    error = kepler_error(status, {"error": code}, {}, method="POST", path="/v1/score")
    assert kepler_submit_never_started(error) is expected


def test_every_class_of_the_tree_is_a_kepler_error() -> None:
    for name in ka.__all__:
        value = getattr(ka, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, ka.KeplerError), name
    assert issubclass(ka.InvalidDomain, ValueError)
    assert issubclass(ka.ConfigurationError, ValueError)
    assert issubclass(ka.SubmitUncertain, ka.TransportError)
    assert ka.PipelineTimedOut.retryable is True
    assert ka.PipelineFailed.retryable is False


@pytest.mark.parametrize(
    ("subject", "reason", "message", "text"),
    [
        ("stripe.com", "sfn_failed", "the pipeline raised", "(stripe.com) failed: sfn_failed: "),
        # A job resumed by id has no subject yet; a vendor's reason may be its message.
        (None, "Upstream provider timed out", "Upstream provider timed out", " failed: Up"),
        (None, None, "the enrichment job failed", " failed: the enrichment job failed"),
        (None, "analysis_failed", "the model refused", " failed: analysis_failed: the model"),
    ],
)
def test_a_failed_job_reads_once_without_none(
    subject: str | None, reason: str | None, message: str, text: str
) -> None:
    error = ka.JobFailed(message, job_id="j-1", subject=subject, failure_reason=reason)
    shown = str(error)
    assert text in shown
    assert "None" not in shown
    assert shown.count(message) == 1
