"""OpenTelemetry traces and metrics, reported to the global providers.

With ``opentelemetry-api`` installed (the ``otel`` extra) and a tracer or meter
provider set (the SDK, or a vendor's distribution), every client reports with no code
of the user's:

- an ``INTERNAL`` span per public call (``kepler score``, ``deepidv submit``, ...)
  with the API, the job id, the outcome, the error type and (unless turned off) the
  subject (the domain);
- a ``CLIENT`` span per HTTP attempt the library makes, by the stable HTTP semantic
  conventions (``GET /v1/jobs/{job_id}``), in the trace of the call it serves: a
  job's polls run in the engine's task, so the caller's context is kept with the job
  and every poll is recorded under the call that submitted or resumed it;
- events for a job submitted, a 429 with its ``Retry-After``, a deadline reached;
  a caller that joins a job already in flight links to the span that started it;
- metrics: ``http.client.request.duration`` and the engine's own (``METRICS``).

Without the package, or with no provider set, or turned off (``telemetry=False``, or
``KEPLER_ASYNC_TELEMETRY=off``), each hook is one attribute check. The API key is
never an attribute: URLs carry no key, and a key found in one is masked.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from kepler_async._version import __version__

from ._progress import EventHook, JobEvent, emit

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace

    _INSTALLED = True
except ImportError:  # the otel extra is not installed
    _INSTALLED = False

__all__ = ["METRICS", "TELEMETRY_ENV", "HttpCall", "Telemetry", "outcome_of"]

logger = logging.getLogger("kepler_async")

TELEMETRY_ENV = "KEPLER_ASYNC_TELEMETRY"
#: How long a look at the global providers holds (seconds; ``Telemetry._look``).
LOOK_EVERY = 1.0
_OFF = frozenset({"0", "off", "false", "no", "none"})

#: The semantic conventions' buckets for HTTP client durations (seconds).
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
#: A cold job lasts 25-90 s at Kepler and may wait for a quota: buckets up to 300 s.
_JOB_BUCKETS = (1, 5, 10, 20, 30, 45, 60, 75, 90, 120, 150, 180, 240, 300)
_POLL_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)

#: name: (instrument, unit, description): what the engine reports (no job ids, keys
#: or subjects among the attributes: low cardinality). The instruments are made from
#: this table; a histogram's buckets come from ``_BUCKETS``.
METRICS = {
    "http.client.request.duration": ("histogram", "s", "Duration of HTTP client requests."),
    "kepler_async.job.duration": ("histogram", "s", "From submit to result, per job."),
    "kepler_async.jobs.pending": ("up_down_counter", "{job}", "Jobs being polled now."),
    "kepler_async.job.polls": ("histogram", "{poll}", "Polls per finished job."),
    "kepler_async.submits": (
        "counter",
        "{submit}",
        "Submits by outcome: inline, accepted, throttled, uncertain, refused, journal.",
    ),
    "kepler_async.jobs.started": ("counter", "{job}", "Jobs the API accepted (cold runs)."),
    "kepler_async.deadlines_exceeded": ("counter", "{job}", "Jobs failed at their deadline."),
}

_BUCKETS = {
    "http.client.request.duration": _HTTP_BUCKETS,
    "kepler_async.job.duration": _JOB_BUCKETS,
    "kepler_async.job.polls": _POLL_BUCKETS,
}

#: Set while a traced public call runs, so that a call it makes (``score`` calls
#: ``submit``) adds no span of its own.
_IN_OPERATION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "kepler_async_in_operation", default=False
)


def _enabled(choice: bool | None) -> bool:
    if not _INSTALLED:
        return False
    if choice is not None:
        return bool(choice)
    return os.environ.get(TELEMETRY_ENV, "").strip().lower() not in _OFF


def _silent_providers() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """The providers that mean "nothing set": the API's proxies and no-ops."""
    tracers: tuple[type, ...] = (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)
    meters: tuple[type, ...] = (otel_metrics.NoOpMeterProvider,)
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider

        meters += (_ProxyMeterProvider,)
    except ImportError:  # pragma: no cover - moved in a later release: report anyway
        pass
    return tracers, meters


def _instrument(meter: Any, name: str) -> Any:
    """The instrument ``METRICS`` describes for ``name``."""
    kind, unit, description = METRICS[name]
    extra = {}
    if name in _BUCKETS:
        extra["explicit_bucket_boundaries_advisory"] = list(_BUCKETS[name])
    return getattr(meter, f"create_{kind}")(name, unit=unit, description=description, **extra)


class HttpCall:
    """One HTTP attempt being recorded (``Telemetry.http_call``)."""

    __slots__ = ("attributes", "span", "started")

    def __init__(self, span: Any, attributes: dict[str, Any]) -> None:
        self.span = span
        self.attributes = attributes
        self.started = time.perf_counter()


class Telemetry:
    """What one client reports (see the module docstring)."""

    def __init__(
        self,
        api: str,
        base_url: str,
        *,
        enabled: bool | None = None,
        subjects: bool = True,
        secret: str = "",
        on_event: EventHook | None = None,
    ) -> None:
        self.api = api
        #: The client's ``on_event`` hook (``_progress.JobEvent``s), if any.
        self.on_event = on_event
        self.enabled = _enabled(enabled)
        self.subjects = bool(subjects)
        self._secret = secret
        self._base_url = base_url
        scheme, _, rest = base_url.partition("://")
        host_port = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, port = host_port.rpartition(":") if ":" in host_port else (host_port, "", "")
        self._server = {
            "server.address": host.strip("[]"),
            "server.port": int(port) if port.isdigit() else (443 if scheme == "https" else 80),
        }
        if not self.enabled:
            return
        self._silent_tracers, self._silent_meters = _silent_providers()
        self._tracing = self._metering = False
        self._look_again_at = 0.0
        self._tracer = otel_trace.get_tracer("kepler_async", __version__)
        meter = otel_metrics.get_meter("kepler_async", __version__)
        made = {name: _instrument(meter, name) for name in METRICS}
        self._http_duration = made["http.client.request.duration"]
        self._job_duration = made["kepler_async.job.duration"]
        self._pending = made["kepler_async.jobs.pending"]
        self._polls = made["kepler_async.job.polls"]
        self._submits = made["kepler_async.submits"]
        self._started = made["kepler_async.jobs.started"]
        self._deadlines = made["kepler_async.deadlines_exceeded"]
        self._api_attributes = {"kepler_async.api": api}

    # --- is anyone listening -------------------------------------------------------

    @classmethod
    def off(cls) -> Telemetry:
        """Telemetry that reports nothing."""
        return cls("api", "http://localhost", enabled=False)

    def tracing(self) -> bool:
        """True when spans go somewhere (a tracer provider is set)."""
        if not self.enabled:
            return False
        if time.monotonic() >= self._look_again_at:
            self._look()
        return self._tracing

    def metering(self) -> bool:
        """True when measurements go somewhere (a meter provider is set)."""
        if not self.enabled:
            return False
        if time.monotonic() >= self._look_again_at:
            self._look()
        return self._metering

    def _look(self) -> None:
        """See which providers are set. Asking costs a few microseconds (the API reads
        the environment each time), so the answer is kept for ``LOOK_EVERY`` seconds: a
        provider set while clients run is used within that time."""
        self._tracing = not isinstance(otel_trace.get_tracer_provider(), self._silent_tracers)
        self._metering = not isinstance(otel_metrics.get_meter_provider(), self._silent_meters)
        self._look_again_at = time.monotonic() + LOOK_EVERY

    # --- public calls ------------------------------------------------------------------

    @contextlib.contextmanager
    def operation(self, name: str, subject: str | None) -> Iterator[Any]:
        """An ``INTERNAL`` span for one public call, current while it runs (None when
        nothing is traced, or inside another traced call)."""
        if not self.tracing() or _IN_OPERATION.get():
            yield None
            return
        attributes: dict[str, Any] = {"kepler_async.api": self.api}
        if subject is not None and self.subjects:
            attributes["kepler_async.subject"] = subject
        token = _IN_OPERATION.set(True)
        try:
            with self._tracer.start_as_current_span(
                f"{self.api} {name}",
                kind=otel_trace.SpanKind.INTERNAL,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    yield span
                except BaseException as error:
                    span.set_attribute("error.type", type(error).__qualname__)
                    span.set_attribute("kepler_async.outcome", outcome_of(error))
                    span.set_status(otel_trace.StatusCode.ERROR, self._clean(str(error)))
                    raise
                else:
                    span.set_attribute("kepler_async.outcome", "ok")
        finally:
            _IN_OPERATION.reset(token)

    # --- fan-out items ---------------------------------------------------------------

    def start_item(self, key: str | None) -> Any:
        """A span for one fan-out input (its group, inputs with its key), under the
        caller's current span; ended by ``end_item``. None when nothing is traced."""
        if not self.tracing():
            return None
        attributes: dict[str, Any] = {"kepler_async.api": self.api}
        if key is not None and self.subjects:
            attributes["kepler_async.subject"] = key
        return self._tracer.start_span(
            f"{self.api} fan-out item", kind=otel_trace.SpanKind.INTERNAL, attributes=attributes
        )

    @contextlib.contextmanager
    def current(self, span: Any) -> Iterator[None]:
        """``span`` as the current span for the block (the item's submit)."""
        if span is None:
            yield
            return
        with otel_trace.use_span(span, end_on_exit=False):
            yield

    def end_item(
        self, span: Any, status: str, error: BaseException | None, job_id: str | None
    ) -> None:
        if span is None:
            return
        span.set_attribute("kepler_async.outcome", status)
        if job_id is not None:
            span.set_attribute("kepler_async.job_id", job_id)
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            if status == "failed":
                span.set_status(otel_trace.StatusCode.ERROR, self._clean(str(error))[:200])
        span.end()

    def capture(self) -> Any:
        """The caller's context, to record a job's later requests in its trace."""
        return otel_context.get_current() if self.tracing() else None

    def job_id(self, job_id: str | None, trace: Any = None) -> None:
        """Name the job on the span of ``trace`` (None: the current span)."""
        if job_id is not None and self.tracing():
            span = otel_trace.get_current_span(trace)
            if span.is_recording():
                span.set_attribute("kepler_async.job_id", job_id)

    def job_started(self, job_id: str, subject: str | None, trace: Any) -> None:
        """The API accepted a submit: job ``job_id`` runs (a cold run, for Kepler)."""
        self.submitted("accepted")
        emit(
            self.on_event,
            lambda: JobEvent(kind="submitted", api=self.api, job_id=job_id, subject=subject),
        )
        if self.tracing():
            self.event(trace, "kepler_async.submitted", {"kepler_async.job_id": job_id})
            self.job_id(job_id, trace)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s job %s submitted%s", self.api, job_id, f" ({subject})" if subject else ""
            )

    def link_to(self, started_in: Any) -> None:
        """The current call joined a job another call started: link to that call."""
        if started_in is None or not self.tracing():
            return
        here = otel_trace.get_current_span()
        there = otel_trace.get_current_span(started_in).get_span_context()
        if here.is_recording() and there.is_valid and there != here.get_span_context():
            here.add_link(there, {"kepler_async.reason": "shared job"})

    def event(self, trace: Any, name: str, attributes: dict[str, Any]) -> None:
        """An event on the span of ``trace`` (a captured context; None: the current)."""
        if not self.tracing():
            return
        span = otel_trace.get_current_span(trace)
        if span.is_recording():
            span.add_event(name, attributes)

    # --- HTTP ------------------------------------------------------------------------

    def http_call(
        self, method: str, template: str | None, url: str, attempt: int, trace: Any
    ) -> HttpCall | None:
        """Start recording one HTTP attempt (None when nobody listens)."""
        tracing, metering = self.tracing(), self.metering()
        if not (tracing or metering):
            return None
        attributes: dict[str, Any] = {"http.request.method": method, **self._server}
        if template is not None:
            attributes["url.template"] = template
        span = None
        if tracing:
            extra: dict[str, Any] = {"url.full": self._clean(url)}
            if attempt > 1:
                extra["http.request.resend_count"] = attempt - 1
            span = self._tracer.start_span(
                f"{method} {template}" if template else method,
                context=trace,
                kind=otel_trace.SpanKind.CLIENT,
                attributes={**attributes, **extra},
            )
        return HttpCall(span, attributes) if metering or span is not None else None

    def http_done(
        self,
        call: HttpCall,
        *,
        status: int | None,
        error: BaseException | None,
        retry_after: float | None = None,
    ) -> None:
        attributes = call.attributes
        if status is not None:
            attributes["http.response.status_code"] = status
        if error is not None and (status is None or status >= 500):
            attributes["error.type"] = _http_error_type(error, status)
        elif status is not None and status >= 400:
            attributes["error.type"] = str(status)
        span = call.span
        if span is not None:
            for name in ("http.response.status_code", "error.type"):
                if name in attributes:
                    span.set_attribute(name, attributes[name])
            if status == 429:
                span.add_event(
                    "kepler_async.throttled",
                    {"kepler_async.retry_after": -1.0 if retry_after is None else retry_after},
                )
            if error is not None and (status is None or status >= 500):
                span.set_status(otel_trace.StatusCode.ERROR, self._clean(str(error))[:200])
            span.end()
        if self.metering():
            self._http_duration.record(time.perf_counter() - call.started, attributes)

    # --- jobs --------------------------------------------------------------------------

    def submitted(self, outcome: str) -> None:
        """A submit ended: inline, accepted, throttled, uncertain or refused
        (``job_started`` says "accepted")."""
        if self.metering():
            self._submits.add(1, {**self._api_attributes, "kepler_async.outcome": outcome})
            if outcome == "accepted":
                self._started.add(1, self._api_attributes)

    def watching(self, delta: int) -> None:
        if self.metering():
            self._pending.add(delta, self._api_attributes)

    def finished(self, seconds: float | None, polls: int, outcome: str) -> None:
        """A watched job ended (``seconds``: since its submit, None if unknown)."""
        if not self.metering():
            return
        attributes = {**self._api_attributes, "kepler_async.outcome": outcome}
        if seconds is not None:
            self._job_duration.record(seconds, attributes)
        self._polls.record(polls, attributes)
        if outcome == "deadline_exceeded":
            self._deadlines.add(1, self._api_attributes)

    def _clean(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def outcome_of(error: BaseException) -> str:
    from kepler_async._exceptions import DeadlineExceeded, JobFailed

    if isinstance(error, DeadlineExceeded):
        return "deadline_exceeded"
    if isinstance(error, JobFailed):
        return "job_failed"
    return "error"


def _http_error_type(error: BaseException, status: int | None) -> str:
    if status is not None:
        return str(status)
    cause = error.__cause__ or error
    return type(cause).__qualname__
