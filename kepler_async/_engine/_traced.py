"""The hooks the engine calls for telemetry (``_telemetry``): a public call's span
(``traced``), one HTTP attempt observed, a submit's outcome, a job's end."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import anyio

from ._progress import JobEvent, emit
from ._telemetry import HttpCall, Telemetry, outcome_of

__all__ = ["job_ended", "observed", "submit_outcome", "traced", "traced_sync"]

logger = logging.getLogger("kepler_async")


def submit_outcome(error: BaseException) -> str:
    """How a failed submit ended, for the ``kepler_async.submits`` counter."""
    from kepler_async._exceptions import RateLimited, SubmitUncertain

    if isinstance(error, RateLimited):
        return "throttled"
    if isinstance(error, SubmitUncertain):
        return "uncertain"
    return "refused"


def job_ended(telemetry: Telemetry, record: Any, error: BaseException | None) -> None:
    """A watched job ended: the pending count, its duration and polls, one log line."""
    outcome = "succeeded" if error is None else outcome_of(error)
    emit(
        telemetry.on_event,
        lambda: JobEvent(
            kind="finished",
            api=telemetry.api,
            job_id=record.job_id,
            subject=record.subject,
            status=outcome,
            error=error,
        ),
    )
    if outcome == "deadline_exceeded":
        attributes = {"kepler_async.job_id": str(record.job_id)}
        telemetry.event(record.trace, "kepler_async.deadline_exceeded", attributes)
    if logger.isEnabledFor(logging.INFO):
        what = "done" if error is None else f"ended: {error}"
        about = f" ({record.subject})" if record.subject else ""
        logger.info("%s job %s%s %s", telemetry.api, record.job_id, about, what)
    if not telemetry.metering():
        return
    telemetry.watching(-1)
    seconds = None
    if not record.resumed:  # a resumed job started before we knew it
        with contextlib.suppress(RuntimeError):  # no event loop (closing from sync code)
            seconds = max(0.0, anyio.current_time() - record.submitted_at)
    telemetry.finished(seconds, record.attempt, outcome)


async def observed(
    telemetry: Telemetry,
    call: HttpCall | None,
    sending: Awaitable[Any],
    method: str,
    route: str,
    attempt: int,
) -> Any:
    """Await ``sending`` (one HTTP attempt, a ``Reply``), recording it on ``call`` and,
    at DEBUG, in one log line: method, route, status, request id, elapsed, attempt."""
    started = time.perf_counter()
    status: int | None = None
    failure: BaseException | None = None
    retry_after: float | None = None
    request_id: str | None = None
    try:
        reply = await sending
        status = reply.status
        request_id = reply.headers.get("x-request-id") or reply.headers.get("request-id")
        return reply
    except BaseException as error:
        failure = error
        status = getattr(error, "status", None)
        retry_after = getattr(error, "retry_after", None)
        request_id = getattr(error, "request_id", None)
        raise
    finally:
        if call is not None:
            telemetry.http_done(call, status=status, error=failure, retry_after=retry_after)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %s%s in %.3fs (attempt %d)",
                method,
                route,
                status if status is not None else type(failure).__name__,
                f" (request id {request_id})" if request_id else "",
                time.perf_counter() - started,
                attempt,
            )


# --- the public calls' spans ---------------------------------------------------------

P = ParamSpec("P")
T = TypeVar("T")


class _Traced(Protocol):
    @property
    def _telemetry(self) -> Telemetry: ...


def _subject_of(
    function: Callable[..., Any], name: str | None
) -> Callable[[tuple[Any, ...], dict[str, Any]], str | None]:
    """How to find argument ``name`` of ``function`` in a call's args and kwargs."""
    if name is None:
        return lambda args, kwargs: None
    position = list(inspect.signature(function).parameters).index(name) - 1  # after self

    def find(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        value = kwargs.get(name, args[position] if len(args) > position else None)
        return value if isinstance(value, str) else None

    return find


def traced(
    name: str, *, subject: str | None = None
) -> Callable[
    [Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]],
    Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
]:
    """Give each call of an async public method an ``INTERNAL`` span named
    ``"{api} {name}"``; ``subject`` names the argument that says what it is about."""

    def decorate(
        method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
        find = _subject_of(method, subject)

        @functools.wraps(method)
        async def call(self: _Traced, /, *args: P.args, **kwargs: P.kwargs) -> T:
            telemetry = self._telemetry
            if not telemetry.tracing():
                return await method(self, *args, **kwargs)
            with telemetry.operation(name, find(args, kwargs)) as span:
                result = await method(self, *args, **kwargs)
                if span is not None:
                    telemetry.job_id(getattr(result, "job_id", None))
                return result

        return call

    return decorate


def traced_sync(
    name: str, *, subject: str | None = None
) -> Callable[[Callable[Concatenate[Any, P], T]], Callable[Concatenate[Any, P], T]]:
    """``traced`` for a public method that returns at once (``resume``)."""

    def decorate(method: Callable[Concatenate[Any, P], T]) -> Callable[Concatenate[Any, P], T]:
        find = _subject_of(method, subject)

        @functools.wraps(method)
        def call(self: _Traced, /, *args: P.args, **kwargs: P.kwargs) -> T:
            telemetry = self._telemetry
            if not telemetry.tracing():
                return method(self, *args, **kwargs)
            with telemetry.operation(name, find(args, kwargs)) as span:
                result = method(self, *args, **kwargs)
                if span is not None:
                    telemetry.job_id(getattr(result, "job_id", None))
                return result

        return call

    return decorate
