"""``ApiClient``: what every API client shares, so that each client only adds its verbs.

One constructor (key, base URL, HTTP client or transport, timeout, retries, poll
policy, engine, journal), one lifecycle (``async with`` / ``aclose()``), ``resume``,
``statistics``, fan-out and the one submit path (``Binding.submit``). A client for an
API names its ``ApiSpec`` (``_spec``) and makes its dialect; see ``kepler_async.deepidv``
for a small one.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

import anyio
import httpx

from kepler_async._constants import DEFAULT_TIMEOUT
from kepler_async._engine._traced import traced_sync
from kepler_async._exceptions import ClientClosed, ConfigurationError, SubmitInDoubt
from kepler_async._policies import (
    DEFAULT,
    PollPolicy,
    RetryPolicy,
    UseDefault,
    check_deadline,
    check_seconds,
)

from ._binding import Binding
from ._dialect import Dialect, Request
from ._engine import CLOSE_BOUND, EngineState, JobEngine
from ._fanout import FanOut
from ._fanout_plan import FanOutPlan, Outcome, check_cap, check_fan_out
from ._handle import JobHandle
from ._http import DEFAULT_MAX_BODY, DEFAULT_MAX_POLL_BODY, HttpBoundary
from ._progress import JobEvent
from ._spec import ApiSpec, check_plain_http
from ._stats import EngineStatistics
from ._telemetry import Telemetry
from .stores import JobStore, key_fingerprint

__all__ = ["ApiClient"]

R = TypeVar("R")
C = TypeVar("C", bound="ApiClient[Any]")
B = TypeVar("B", bound="FanOut[Any]")


def _byte_limit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1024:
        raise ConfigurationError(f"{name} must be a number of bytes >= 1024, got {value!r}")
    return value


def _backend_for(
    http_backend: str | None,
    http_client: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
) -> str | None:
    """The wire asked for; httpx's when a client or transport of yours is given."""
    if http_backend is None and (http_client is not None or transport is not None):
        return "httpx"
    return http_backend


def _cache_age(value: object, journal: JobStore | None) -> float | None:
    """A checked ``cache_max_age`` (seconds, or None: any age)."""
    if value is None:
        return None
    seconds = check_seconds("cache_max_age", value)
    if journal is None:
        raise ConfigurationError("cache_max_age bounds the scores a journal serves: pass journal=")
    return seconds


def _check_http(
    url: str,
    http_client: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
    allow_plain_http: bool,
) -> None:
    check_plain_http(url, transport, bool(allow_plain_http))
    if http_client is not None and transport is not None:
        raise ConfigurationError("pass http_client or transport, not both")


def _check_parts(poll_policy: object, engine: object, journal: object) -> None:
    """Refuse a poll policy, engine or journal of the wrong kind."""
    if poll_policy is not None and not isinstance(poll_policy, PollPolicy):
        raise ConfigurationError("poll_policy must be a PollPolicy")
    if engine is not None and not isinstance(engine, JobEngine):
        raise ConfigurationError("engine must be a JobEngine")
    if journal is not None and not isinstance(journal, JobStore):
        raise ConfigurationError(
            "journal must be a JobStore (a SQLiteJobStore, a PostgresJobStore, or an "
            "object with the methods of kepler_async.JobStore)"
        )


def _own_engine(max_in_flight: int | None, http_backend: str | None) -> JobEngine:
    """The engine of a client made without ``engine=``."""
    try:
        return JobEngine(max_in_flight=max_in_flight, http_backend=http_backend)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None


class ApiClient(abc.ABC, Generic[R]):
    """The base of every API client (see the module docstring).

    The key comes from ``api_key`` or the API's environment variable. An
    ``http_client`` you pass is used as it is and left open for you to close; a
    ``transport`` (such as a simulator's) goes into an httpx client this one owns.
    ``poll_policy`` sets how jobs are polled and their default deadline. An ``engine``
    (``JobEngine``) is shared with other clients; without one the client has its own,
    with ``max_in_flight`` requests at most (default: 10 on httpx, 50 on aiohttp). A
    ``journal`` records submitted jobs so that a later run resumes them instead of
    paying again. ``base_url`` is the API's
    origin (no path); plain ``http://`` is accepted for this machine only, unless
    ``allow_plain_http=True``. Answers are read up to ``max_response_bytes`` (8 MiB;
    polls: ``max_poll_bytes``, 1 MiB); a larger one is a ``ProtocolError``. With a
    journal, an earlier submit whose answer never came is *in doubt*: each API says
    what then (Kepler looks for its score and waits out the longest run; deepidv
    replays its idempotency key; MidLyr and ParseTx raise ``SubmitInDoubt`` unless
    ``resubmit_in_doubt=True``). ``http_backend`` picks what sends the requests:
    ``"httpx"`` or ``"aiohttp"`` (extra ``aiohttp``; about 10x the polls per CPU second; on trio,
    which aiohttp cannot run on, httpx sends). Unset, it is the engine's choice, whose
    default is ``$KEPLER_ASYNC_HTTP_BACKEND`` or else ``"httpx"``.
    """

    #: What the client knows of its API: key, origin, auth header, error mapping.
    _spec: ClassVar[ApiSpec]
    #: The handle type its submits return.
    _handle_class: ClassVar[type[JobHandle[Any]]] = JobHandle

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        poll_policy: PollPolicy | None = None,
        max_in_flight: int | None = None,
        engine: JobEngine | None = None,
        journal: JobStore | None = None,
        allow_plain_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_BODY,
        max_poll_bytes: int = DEFAULT_MAX_POLL_BODY,
        resubmit_in_doubt: bool = False,
        http_backend: str | None = None,
        telemetry: bool | None = None,
        telemetry_subjects: bool = True,
        on_event: Callable[[JobEvent], object] | None = None,
        cache_max_age: float | None = None,
    ) -> None:
        spec = self._spec
        key = spec.resolve_key(api_key)
        url = spec.resolve_base_url(base_url)
        _check_http(url, http_client, transport, allow_plain_http)
        timeout = check_seconds("timeout", timeout, above=True)
        _check_parts(poll_policy, engine, journal)
        self._resubmit_in_doubt = bool(resubmit_in_doubt)
        self._cache_max_age = _cache_age(cache_max_age, journal)
        self._owns_engine = engine is None
        http_backend = _backend_for(http_backend, http_client, transport)
        if engine is None:
            engine = _own_engine(max_in_flight, http_backend)
        self._engine = engine
        self._key_hint = spec.describe_key(key)
        dialect = self._make_dialect(url)
        http = HttpBoundary.create(
            api_key=key,
            base_url=url,
            auth_header=spec.auth_header,
            map_error=spec.map_error,
            never_started=spec.never_started,
            http_client=http_client,
            transport=transport,
            timeout=float(timeout),
            retry=retry,
            max_body=_byte_limit("max_response_bytes", max_response_bytes),
            max_poll_body=_byte_limit("max_poll_bytes", max_poll_bytes),
            http_backend=http_backend or engine.http_backend,
            max_connections=engine.scheduler.max_in_flight,
            telemetry=Telemetry(
                dialect.name,
                url,
                enabled=telemetry,
                subjects=telemetry_subjects,
                secret=key,
                on_event=on_event,
            ),
        )
        self._binding: Binding[R] = engine.bind(
            dialect=dialect,
            http=http,
            policy=poll_policy or dialect.default_policy,
            handle_class=self._handle_class,
            journal=journal,
            fingerprint=key_fingerprint(key),
            in_doubt=self._in_doubt,
        )

    # --- what each API says -----------------------------------------------------------

    @abc.abstractmethod
    def _make_dialect(self, base_url: str) -> Dialect[R]:
        """The API's dialect (every client makes its own)."""

    async def _in_doubt(self, key: str, subject: str | None, submitted_at: float) -> R | None:
        """A journaled submit of ``key`` may have started a job whose id never came
        back: its result if the API can tell it, None to submit again, or an error.

        By default (an API with no way to find such a job, nor an idempotency key)
        this is ``SubmitInDoubt`` unless the client was made with
        ``resubmit_in_doubt=True``.
        """
        if self._resubmit_in_doubt:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(submitted_at))
        raise SubmitInDoubt(
            f"a submit of {key!r} at {when} "
            f"may have started a job whose id never came back, and {self._spec.name} gives "
            "no way to find it; sending it again may pay twice (pass "
            "resubmit_in_doubt=True to the client to do so)",
            method="POST",
            path="",
            journal_key=key,
            submitted_at=submitted_at,
        )

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self: C) -> C:
        self._check_open()
        await self._binding.bind_journal()  # refuse a journal of another API or key now
        if self._owns_engine and self._engine.state is EngineState.UNOPENED:
            await self._engine.open_in_task()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            if self._owns_engine:  # leaves the task group __aenter__ entered, if any
                await self._engine.exit_in_task()

    async def aclose(self) -> None:
        """Stop polling, fail unfinished jobs with ``ClientClosed``, close. Idempotent.

        The jobs go on server-side; their ids are on the ``ClientClosed`` errors. An
        engine of the client's own stops too (a shared one goes on). Returns within
        about 5 s even if a request or a journal write hangs.
        """
        if self._owns_engine:
            await self._engine.aclose()
        else:
            self._binding.close()
            self._engine.unbind(self._binding)
        with anyio.move_on_after(CLOSE_BOUND, shield=True):
            await self._binding.http.aclose()

    @property
    def _telemetry(self) -> Telemetry:
        return self._binding.http.telemetry

    @property
    def closed(self) -> bool:
        return self._binding.closed or self._binding.http.closed

    @property
    def base_url(self) -> str:
        return self._binding.http.base_url

    @property
    def engine(self) -> JobEngine:
        """The engine that polls this client's jobs (its own, or the one passed in)."""
        return self._engine

    @property
    def http_backend(self) -> str:
        """What sends this client's requests: ``"httpx"`` or ``"aiohttp"`` (chosen with
        ``http_backend``; on trio, where aiohttp cannot run, httpx sends)."""
        return self._binding.http.http_backend

    @property
    def poll_policy(self) -> PollPolicy:
        return self._binding.policy

    def statistics(self) -> EngineStatistics:
        """A snapshot of this client's counters (``engine.statistics()`` for all)."""
        return self._binding.statistics()

    def __repr__(self) -> str:
        head = f"<{type(self).__name__} base_url={self.base_url!r} key={self._key_hint}"
        if self.closed:
            return head + " closed>"
        return head + f" open, {self._binding.pending()} jobs pending>"

    def _check_open(self) -> None:
        if self.closed:
            raise ClientClosed(f"this {type(self).__name__} is closed; create a new one")

    # --- jobs ---------------------------------------------------------------------------

    def _deadline(self, deadline: float | UseDefault | None) -> float | None:
        """Seconds a call waits (``DEFAULT``: the poll policy's); checked."""
        if isinstance(deadline, UseDefault):
            return self._binding.policy.deadline
        return check_deadline(deadline)

    async def _submit(
        self,
        request: Request,
        *,
        subject: str | None,
        deadline: float | UseDefault | None,
        journal_key: str | None,
        inline: bool = False,
        fresh: bool = False,
    ) -> Any:
        """Submit ``request``; ``fresh``: never answered from the journal."""
        return await self._binding.submit(
            request,
            subject=subject,
            deadline=self._deadline(deadline),
            journal_key=journal_key,
            inline=inline,
            max_age=0.0 if fresh else self._cache_max_age,
        )

    @traced_sync("resume")
    def resume(self, job_id: str, *, deadline: float | UseDefault | None = DEFAULT) -> JobHandle[R]:
        """Watch a job submitted earlier (by this process or another); the same job if
        this client watches it already. The first poll goes out at once. Call it from
        async code (it needs the event loop)."""
        return self._binding.resume(job_id, subject=None, deadline=self._deadline(deadline))

    async def _job_body(self, job_id: str, params: Mapping[str, str | int] | None = None) -> object:
        """One read of a job, for ``get_job`` (its id checked and percent-encoded)."""
        self._check_open()
        canonical = self._binding.dialect.check_job_id(job_id)
        request = self._binding.dialect.poll_request(canonical)
        reply = await self._binding.http.request(
            "GET", request.path, params=params, template=request.template
        )
        return reply.body

    def _fan_out(
        self,
        batch_class: type[B],
        plan: FanOutPlan[Any, R],
        inputs: Iterable[Any] | AsyncIterable[Any],
        *,
        verb: str,
        noun: str,
        convert: Callable[[Outcome[R]], Any] = lambda outcome: outcome,
        max_outstanding: int,
        deadline: float | UseDefault | None,
        wait_for_budget: bool,
        max_cold_runs: int | None = None,
    ) -> B:
        """A fan-out of ``inputs`` through this client (every ``*_many`` verb; ``noun``
        names its inputs in messages)."""
        self._check_open()
        limit = check_fan_out(inputs, max_outstanding, verb, noun)
        return batch_class(
            self._binding,
            plan,
            inputs,
            convert=convert,
            max_outstanding=limit,
            deadline=self._deadline(deadline),
            wait_for_budget=bool(wait_for_budget),
            max_cold_runs=check_cap(max_cold_runs),
        )
