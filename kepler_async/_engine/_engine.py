"""``JobEngine``: one poll scheduler shared by clients of several job APIs, and the
small base the vendor clients (deepidv, MidLyr, ParseTx) are built on."""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import httpx
from anyio.abc import TaskGroup

from kepler_async._exceptions import ClientClosed, ConfigurationError, JobFailed
from kepler_async._policies import DEFAULT, PollPolicy, RetryPolicy, UseDefault, policy_for
from kepler_async._serde import converter

from ._handle import JobHandle
from ._http import ErrorMapper, HttpBoundary
from ._journal import SQLiteJobStore, key_fingerprint
from ._protocol import Accepted, Done, JobApi, Request
from ._scheduler import Scheduler

__all__ = ["DriverHost", "JobClient", "JobEngine", "start_driver"]

R = TypeVar("R")


async def start_driver(scheduler: Scheduler) -> TaskGroup:
    """Open a task group (entered here, exited by the caller) running ``scheduler``."""
    tg = anyio.create_task_group()
    await tg.__aenter__()
    try:
        await tg.start(scheduler.run)
    except BaseException:
        await tg.__aexit__(*sys.exc_info())
        raise
    return tg


class DriverHost:
    """Leaving ``async with`` closes the object, then exits the task group that
    ``start_driver`` opened on entering (if it did). Shared by engines and clients."""

    _tg: TaskGroup | None = None

    async def aclose(self) -> None:  # pragma: no cover - each host defines it
        """Close (subclasses say what that means)."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            tg, self._tg = self._tg, None
            if tg is not None:
                await tg.__aexit__(exc_type, exc, tb)


class JobEngine(DriverHost, Scheduler):
    """A poll engine to share: ``async with JobEngine() as engine`` then pass
    ``engine=engine`` to any client. Its ``max_in_flight`` bounds the requests of all
    of them together; each job is polled on its own API's policy."""

    def __init__(self, *, max_in_flight: int = 10) -> None:
        super().__init__(max_in_flight=max_in_flight)
        self._tg = None

    async def __aenter__(self) -> JobEngine:
        self._tg = await start_driver(self)
        return self

    async def aclose(self) -> None:
        """Stop polling; unfinished jobs of every client fail with ``ClientClosed``."""
        await self.close()


class JobClient(DriverHost, Generic[R]):
    """What every vendor client shares: one HTTP boundary, an engine, submit/resume.

    A vendor client sets the class attributes below and adds its submit methods.
    """

    _vendor: str
    _api_key_env: str
    _default_base_url: str
    _auth_header: str
    _map_error: ErrorMapper
    _dialect: JobApi[R]

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        poll_policy: PollPolicy | None = None,
        engine: JobEngine | None = None,
        max_in_flight: int = 10,
        journal: SQLiteJobStore | None = None,
    ) -> None:
        """The key comes from ``api_key`` or the vendor's environment variable; an
        ``engine`` (``JobEngine``) is shared with other clients, else the client has
        its own; a ``journal`` records jobs submitted with a ``journal_key``."""
        key = api_key if api_key is not None else os.environ.get(self._api_key_env, "")
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError(
                f"no {self._vendor} API key: pass api_key=... or set {self._api_key_env}"
            )
        if http_client is not None and transport is not None:
            raise ConfigurationError("pass http_client or transport, not both")
        url = httpx.URL(base_url or self._default_base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(f"base_url {base_url!r} needs an http(s) scheme and a host")
        if journal is not None and not isinstance(journal, SQLiteJobStore):
            raise ConfigurationError("journal must be a SQLiteJobStore")
        self._journal = journal
        self._fingerprint = key_fingerprint(key.strip())
        self._api = self._dialect
        self._http = HttpBoundary.create(
            api_key=key.strip(),
            base_url=str(url).rstrip("/"),
            auth_header=self._auth_header,
            map_error=type(self)._map_error,
            never_started=lambda error: False,
            http_client=http_client,
            transport=transport,
            timeout=timeout,
            retry=retry,
        )
        self._policy = poll_policy or self._api.default_policy
        self._owns_engine = engine is None
        self._engine: Scheduler = (
            engine if engine is not None else Scheduler(max_in_flight=max_in_flight)
        )
        self._tg: TaskGroup | None = None

    @property
    def engine(self) -> Scheduler:
        return self._engine

    @property
    def closed(self) -> bool:
        return self._http.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} base_url={self._http.base_url!r} {state}>"

    async def __aenter__(self) -> Any:
        if self.closed:
            raise ClientClosed()
        if self._owns_engine and not self._engine.running:
            self._tg = await start_driver(self._engine)
        return self

    async def aclose(self) -> None:
        """Close; an engine of our own stops too (a shared one goes on)."""
        if self._owns_engine:
            await self._engine.close()
        await self._http.aclose()

    def _handle(self, job_id: str, subject: str | None, policy: PollPolicy) -> JobHandle[R]:
        return JobHandle(
            job_id, subject, api=self._api, policy=policy, scheduler=self._engine, http=self._http
        )

    def _restore(self, data: object) -> R:
        """A result from its journal JSON (each client knows its result type)."""
        raise ConfigurationError(f"{self._api.name}: this client keeps no journal")

    async def _from_journal(self, key: str, subject: str | None) -> JobHandle[R] | None:
        assert self._journal is not None
        await self._journal.bind(base_url=self._http.base_url, fingerprint=self._fingerprint)
        entry = await self._journal.get(key, api=self._api.name)
        if entry is None:
            return None
        if entry.state == "scored" and entry.result is not None:
            done: JobHandle[R] = JobHandle(entry.job_id, subject)
            done._resolve(self._restore(entry.result))
            return done
        if entry.state == "pending" and entry.job_id is not None:
            handle = self.resume(entry.job_id)
            self._journal_outcome(key, handle)
            return handle
        if entry.state == "failed" and not entry.retryable and entry.job_id is not None:
            failed: JobHandle[R] = JobHandle(entry.job_id, subject)
            failed._fail(
                JobFailed(
                    entry.error_message or "the job failed",
                    job_id=entry.job_id,
                    domain=subject,
                    failure_reason=entry.failure_reason,
                )
            )
            return failed
        return None  # a retryable failure: submit again

    def _journal_outcome(self, key: str, handle: JobHandle[R]) -> None:
        journal = self._journal
        if journal is None:
            return

        async def write(finished: JobHandle[R]) -> None:
            with anyio.CancelScope(shield=True):  # let the write finish, even on close
                error = finished.exception()
                if error is None:
                    result = converter.unstructure(finished._result)
                    await journal.record_done(key, finished.job_id, result, api=self._api.name)
                elif isinstance(error, JobFailed):
                    await journal.record_failed(key, finished.job_id, error, api=self._api.name)

        def on_done(finished: JobHandle[R]) -> None:
            if self._engine.running:
                self._engine.start_soon(write, finished)

        handle.add_done_callback(on_done)

    async def _submit(
        self,
        request: Request,
        state_of: Any,
        *,
        subject: str | None,
        deadline: float | UseDefault | None,
        journal_key: str | None = None,
    ) -> JobHandle[R]:
        """Send ``request``; ``state_of(status, body)`` reads the answer into a state.

        With a journal and a ``journal_key``, a key already journaled is served from it
        (its result, its failure, or its pending job resumed) instead of being sent again.
        """
        if self.closed:
            raise ClientClosed()
        policy = policy_for(self._policy, deadline)
        if self._journal is not None and journal_key is not None:
            known = await self._from_journal(journal_key, subject)
            if known is not None:
                return known
        await self._engine.wait_running()
        token = object()
        await self._engine.acquire(token)
        try:
            reply = await self._http.request(
                request.method,
                request.path,
                json=request.json,
                headers=request.headers,
                billed=request.billed,
            )
        finally:
            self._engine.release(token)
        state = state_of(reply.status, reply.body)
        if isinstance(state, Done):
            handle: JobHandle[R] = JobHandle(None, subject)
            handle._resolve(state.result)
            return handle
        assert isinstance(state, Accepted)
        existing = self._engine.find(self._api.name, state.job_id)
        if existing is not None:  # an idempotent replay of a job we already watch
            return existing
        if self._journal is not None and journal_key is not None:
            with anyio.CancelScope(shield=True):  # written before acted on
                await self._journal.record_submitted(journal_key, state.job_id, api=self._api.name)
        handle = self._handle(state.job_id, subject or state.subject, policy)
        self._engine.record_submit(started=True)
        self._engine.watch(handle)
        if journal_key is not None:
            self._journal_outcome(journal_key, handle)
        return handle

    async def _job_body(self, job_id: str) -> object:
        """One ``GET`` of a job, for ``get_job`` (ids percent-encoded)."""
        canonical = self._api.check_job_id(job_id)
        reply = await self._http.request("GET", self._api.poll_request(canonical).path)
        return reply.body

    def resume(self, job_id: str, *, deadline: float | UseDefault | None = DEFAULT) -> JobHandle[R]:
        """Watch a job submitted earlier; the same handle if it is watched already."""
        if self.closed:
            raise ClientClosed()
        canonical = self._api.check_job_id(job_id)
        existing = self._engine.find(self._api.name, canonical)
        if existing is not None:
            return existing
        self._engine.ensure_running()
        policy = policy_for(self._policy, deadline)
        handle = self._handle(canonical, None, policy)
        self._engine.watch(handle, first_poll_now=True)
        return handle
