"""Small helpers the vendor dialects share: error bodies, key styles, ids, timestamps."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Hashable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from kepler_async import _exceptions as exc
from kepler_async._policies import parse_retry_after
from kepler_async._serde import converter, decode

from ._dialect import Accepted, Done, Request, ThrottleScope

__all__ = [
    "DialectDefaults",
    "body_key",
    "camel_to_snake",
    "check_opaque_id",
    "check_uuid_id",
    "content_key",
    "epoch_to_datetime",
    "make_error_mapper",
    "path_segment",
    "retype",
]


def check_uuid_id(value: object, *, vendor: str = "") -> str:
    """The canonical (lower-case) form of a job id that must be a hyphenated UUID."""
    if not isinstance(value, str):
        raise exc.InvalidJobId(
            f"a job id must be a string, not {type(value).__name__}", value=repr(value)[:100]
        )
    text = value.strip()
    # The API only uses the hyphenated form (uuid.UUID would also take braces,
    # "urn:uuid:" and bare hex). A pattern, not uuid.UUID: this runs on every poll.
    if not _UUID.match(text):
        raise exc.InvalidJobId(
            f"invalid {vendor + ' ' if vendor else ''}job id {repr(value)[:100]}: "
            "expected a UUID such as "
            "'9f0c2d83-1b6e-4d5c-9a3f-2c1d0e9b8a7f'",
            value=repr(value)[:100],
        )
    return text.lower()


_UUID = re.compile(r"\A[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z")


def path_segment(value: str) -> str:
    """Percent-encode one URL path segment (``/`` included)."""
    return urllib.parse.quote(value, safe="")


_OPAQUE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def camel_to_snake(value: object) -> object:
    """``{"riskLevel": ...}`` -> ``{"risk_level": ...}``, recursively (lists too)."""
    if isinstance(value, dict):
        return {
            (_CAMEL.sub(r"_\1", k).lower() if isinstance(k, str) else k): camel_to_snake(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel_to_snake(v) for v in value]
    return value


def check_opaque_id(vendor: str, job_id: object) -> str:
    """A job id of an API whose id format is undocumented: a short, plain token."""
    if not isinstance(job_id, str) or not _OPAQUE_ID.match(job_id.strip()):
        shown = repr(job_id)[:100]
        raise exc.InvalidJobId(f"invalid {vendor} job id {shown}", value=shown)
    return job_id.strip()


def epoch_to_datetime(value: object) -> datetime | None:
    """An epoch number in seconds or milliseconds (told apart by size) as a datetime."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = value / 1000 if value > 100_000_000_000 else value  # > year 5138 in seconds
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


#: Headers an API may name its request id in (the first found is kept).
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "x-amz-apigw-id")

E = TypeVar("E", bound=exc.APIError)


def _no_reason(body: object) -> str | None:
    return None


def make_error_mapper(
    vendor: str,
    *,
    job_path: str,
    read: Callable[[object], tuple[str | None, str | None]],
    reason: Callable[[object], str | None] = _no_reason,
    special: Callable[[int, object, exc.APIError], exc.APIError] | None = None,
    prefix: bool = True,
) -> Callable[..., exc.APIError]:
    """An error mapper for ``HttpBoundary``: status classes of the one tree.

    ``read(body)`` gives (code, message) and ``reason(body)`` a reason, where the API
    gives one; ``special`` may replace the result (a class the status alone does not
    tell). Messages start with the vendor's name unless ``prefix`` is False.
    """

    def mapper(
        status: int, body: object, headers: Mapping[str, str], *, method: str, path: str
    ) -> exc.APIError:
        code, message = read(body)
        text = message or code or f"HTTP {status}"
        on_job = path.startswith(job_path)
        cls: type[exc.APIError]
        if status == 400:
            cls = exc.BadRequest
        elif status == 401:
            cls = exc.AuthenticationError
        elif status == 403:
            cls = exc.JobForbidden if on_job else exc.PermissionDenied
        elif status == 404:
            cls = exc.JobNotFound if on_job else exc.NotFound
        elif status == 429:
            cls = exc.RateLimited
        elif status >= 500:
            cls = exc.ServerError
        else:
            cls = exc.APIError
        error = cls(
            f"{vendor}: {text}" if prefix else text,
            status=status,
            code=code,
            reason=reason(body),
            request_id=next((headers[h] for h in _REQUEST_ID_HEADERS if h in headers), None),
            method=method,
            path=path,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
        return special(status, body, error) if special is not None else error

    return mapper


def retype(error: exc.APIError, cls: type[E]) -> E:
    """``error`` as another class of the tree (for ``special``), every field kept."""
    return cls(
        error.message,
        status=error.status,
        code=error.code,
        reason=error.reason,
        request_id=error.request_id,
        method=error.method,
        path=error.path,
        retry_after=error.retry_after,
    )


def body_key(request: Request) -> Hashable:
    """A submission identified by what it sends: method, path and canonical JSON body."""
    body = json.dumps(request.json, sort_keys=True, separators=(",", ":"), default=str)
    return f"{request.method} {request.path} {body}"


def content_key(data: object) -> str:
    """A short, stable key for what a request sends (its canonical JSON), for inputs
    that name no key of their own: equal inputs share a job, and a journal knows a
    rerun's inputs again."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


class DialectDefaults:
    """Defaults for a dialect: results inline in the poll answer, submissions identified
    by their body, a 429 that pauses every request, results kept as plain JSON data.

    ``name`` is the vendor; ``id_field`` names the job id in the submit answer;
    ``result_type`` is the result class; ``failed_class`` the job failure class.
    """

    name: str
    id_field: str
    result_type: type[Any]
    failed_class: type[exc.JobFailed] = exc.JobFailed

    if TYPE_CHECKING:  # every dialect defines its own

        def check_job_id(self, job_id: str) -> str: ...

    def classify_result(self, job_id: str, subject: str | None, body: object) -> Done[Any]:
        raise exc.ProtocolError(f"{self.name}: results are inline; there is nothing to fetch")

    def result_missing(
        self, job_id: str, subject: str | None, error: exc.KeplerError
    ) -> exc.KeplerError:
        return error

    def poll_error(self, job_id: str, error: exc.KeplerError) -> exc.KeplerError:
        return error

    def classify_submit(self, status: int, body: object) -> Accepted:
        """Any 2xx answer naming the job id is a queued job."""
        if isinstance(body, dict) and isinstance(body.get(self.id_field), str):
            return Accepted(job_id=self.check_job_id(body[self.id_field]))
        raise exc.ProtocolError(
            f"{self.name}: the submit answer ({status}) names no {self.id_field}"
        )

    def submission_key(self, request: Request) -> Hashable:
        return body_key(request)

    def throttle_scope(self, error: exc.RateLimited) -> ThrottleScope:
        return "requests"

    def dump_result(self, result: Any) -> object:
        return converter.unstructure(result)

    def load_result(self, data: object) -> Any:
        return decode(self.result_type, data, what=f"{self.name} journal result")

    def failure(
        self, job_id: str, subject: str | None, failure_reason: str | None, message: str | None
    ) -> exc.JobFailed:
        return self.failed_class(
            message or "the job failed",
            job_id=job_id,
            subject=subject,
            failure_reason=failure_reason,
        )
