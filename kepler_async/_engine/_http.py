"""The one HTTP boundary.

Only this module and the wires (``wires``) touch an HTTP client. It adds
authentication and identification headers, sends, reads JSON, retries transient
failures by the rules below, and turns every httpx exception (the aiohttp wire speaks
them too) and every non-2xx status into the error tree, ``from`` the original.

Retry rules:

- A *safe* request (a GET) is retried on connect errors, timeouts, dropped
  connections and 5xx answers, with capped, jittered backoff that honours
  ``Retry-After``.
- A *billed* request (a POST that may start paid work) is sent again only when it
  surely never reached the server (the connection was never made) or the server said
  it started nothing (``never_started``). If it may have arrived and no answer came
  back, ``SubmitUncertain`` is raised instead of paying twice.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from json import loads as json_loads
from typing import Any

import anyio
import attrs
import httpx
import sniffio

from kepler_async._constants import DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT, USER_AGENT
from kepler_async._exceptions import (
    APIError,
    ClientClosed,
    ConfigurationError,
    KeplerError,
    ProtocolError,
    TransportError,
)
from kepler_async._policies import RetryPolicy
from kepler_async._serde import excerpt, parse_json

from ._http_errors import HTTPX_ERRORS, TRANSIENT, map_httpx_error
from ._secrets import register_secret, scrub_error
from ._telemetry import Telemetry
from ._traced import observed
from .wires import (
    HttpxWire,
    Wire,
    WireAnswer,
    aiohttp_wire,
    check_http_backend,
    new_httpx_client,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_POLL_BODY",
    "HttpBoundary",
    "Redirected",
    "Reply",
    "map_httpx_error",
]

#: The largest answer read by default: the API's biggest documented body (a history
#: page of 500 records, ~600 KiB) with room to spare; polls are far smaller.
DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_MAX_POLL_BODY = 1024 * 1024


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Redirected(ProtocolError):
    """A 3xx answer: not followed, since the key would go along."""


logger = logging.getLogger("kepler_async")

ErrorMapper = Callable[..., APIError]


@attrs.frozen
class Reply:
    """A successful (2xx) answer: status, decoded JSON body, headers (case-insensitive)."""

    status: int
    body: object
    headers: Mapping[str, str]


@attrs.define
class HttpBoundary:
    """Sends requests for one API with one key; owns the httpx client only if it made it."""

    _api_key: str = attrs.field(repr=False)
    _base_url: str
    _auth_header: str
    _map_error: ErrorMapper = attrs.field(repr=False)
    _never_started: Callable[[APIError], bool] = attrs.field(repr=False)
    _client: httpx.AsyncClient = attrs.field(repr=False)
    _owns_client: bool
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    #: The longest a whole answer (body included) may take, in seconds.
    timeout: float = DEFAULT_TIMEOUT
    #: The largest body read (bytes): ``max_poll_body`` for polls, ``max_body`` else.
    max_body: int = DEFAULT_MAX_BODY
    max_poll_body: int = DEFAULT_MAX_POLL_BODY
    _sleep: Callable[[float], Awaitable[None]] = attrs.field(default=anyio.sleep, repr=False)
    _rand: Callable[[], float] = attrs.field(default=random.random, repr=False)
    _closed: bool = False
    #: aiohttp (extra `aiohttp`) when it may send; it does on asyncio only.
    _wire: Wire | None = attrs.field(default=None, repr=False)
    _use_wire: bool | None = attrs.field(default=None, init=False)
    _httpx: HttpxWire = attrs.field(init=False, repr=False)
    #: Traces and metrics of this client's requests (``_telemetry``); off by default.
    telemetry: Telemetry = attrs.field(factory=Telemetry.off, repr=False)

    def __attrs_post_init__(self) -> None:
        register_secret(self._api_key)
        headers = {
            self._auth_header: self._api_key,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        self._httpx = HttpxWire(self._client, headers, owned=self._owns_client)

    @classmethod
    def create(
        cls,
        *,
        api_key: str,
        base_url: str,
        auth_header: str,
        map_error: ErrorMapper,
        never_started: Callable[[APIError], bool],
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_poll_body: int = DEFAULT_MAX_POLL_BODY,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
        http_backend: str = "httpx",
        max_connections: int = DEFAULT_MAX_IN_FLIGHT,
        telemetry: Telemetry | None = None,
    ) -> HttpBoundary:
        check_http_backend(http_backend)
        custom = http_client is not None or transport is not None
        if custom and http_backend == "aiohttp":
            raise ConfigurationError(
                'http_backend="aiohttp" sends with aiohttp: it cannot use an httpx '
                "http_client or transport; pass one or the other"
            )
        wire = None
        if http_backend == "aiohttp":
            wire = aiohttp_wire(
                base_url=base_url,
                timeout=timeout,
                max_connections=max_connections,
                api_key=api_key,
                auth_header=auth_header,
            )
        owns = http_client is None
        if http_client is None:
            http_client = new_httpx_client(
                transport=transport, timeout=timeout, max_connections=max_connections
            )
        return cls(
            api_key=api_key,
            base_url=base_url.rstrip("/"),
            auth_header=auth_header,
            map_error=map_error,
            never_started=never_started,
            client=http_client,
            owns_client=owns,
            retry=retry or RetryPolicy(),
            timeout=timeout,
            max_body=max_body,
            max_poll_body=min(max_poll_body, max_body),
            sleep=sleep,
            rand=rand,
            wire=wire,
            telemetry=telemetry or Telemetry.off(),
        )

    @property
    def http_backend(self) -> str:
        """What sends: ``"aiohttp"`` when chosen and the loop is asyncio, else ``"httpx"``
        (known for sure once a request was sent: trio falls back to httpx)."""
        if self._use_wire is None:
            return "aiohttp" if self._wire is not None else "httpx"
        return "aiohttp" if self._use_wire else "httpx"

    @property
    def base_url(self) -> str:
        return self._base_url

    def never_started(self, error: APIError) -> bool:
        """True if the API says a refused submit started nothing."""
        return self._never_started(error)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._wire is not None:
            await self._wire.aclose()
        if self._owns_client:
            await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        billed: bool = False,
        retry: RetryPolicy | None = None,
        max_body: int | None = None,
        template: str | None = None,
        trace: object = None,
    ) -> Reply:
        """Send ``method path`` (a path on the base URL, already percent-encoded).

        Returns the 2xx ``Reply``; raises from the error tree otherwise. The body is
        read up to ``max_body`` bytes (the boundary's ``max_body`` by default).
        ``template``: the path's route (``/v1/jobs/{job_id}``), for traces and logs;
        ``trace``: the context (``Telemetry.capture()``) whose trace the request is in.
        """
        if self._closed:
            raise ClientClosed()
        policy = retry or self.retry
        limit = self.max_body if max_body is None else max_body
        attempt = 1
        while True:
            try:
                try:
                    sending = self._send_once(
                        method,
                        path,
                        params=params,
                        json=json,
                        headers=headers,
                        billed=billed,
                        max_body=limit,
                    )
                    if self.telemetry.enabled or logger.isEnabledFor(logging.DEBUG):
                        sending = self._observed(sending, method, path, template, trace, attempt)
                    return await sending
                except KeplerError as error:
                    self._scrub(error)
                    raise
            except (TransportError, APIError) as error:
                if self._closed or attempt >= policy.attempts or not self._retryable(error, billed):
                    raise
                retry_after = error.retry_after if isinstance(error, APIError) else None
                delay = policy.delay(attempt, retry_after=retry_after, rand=self._rand)
                logger.debug(
                    "retrying %s %s in %.2fs after attempt %d: %s",
                    method,
                    path,
                    delay,
                    attempt,
                    error,
                )
                await self._sleep(delay)
                attempt += 1

    def _scrub(self, error: KeplerError) -> None:
        """Remove the API key from every text of an error, should a server echo it."""
        scrub_error(error, self._api_key)

    def _retryable(self, error: KeplerError, billed: bool) -> bool:
        if isinstance(error, TransportError):
            cause = error.__cause__
            transient = isinstance(cause, TRANSIENT)
            return transient and not (billed and error.request_sent)
        if isinstance(error, APIError):
            if billed:
                return self._never_started(error)
            return error.status >= 500
        return False

    def _observed(
        self,
        sending: Coroutine[Any, Any, Reply],
        method: str,
        path: str,
        template: str | None,
        trace: object,
        attempt: int,
    ) -> Coroutine[Any, Any, Reply]:
        """``sending``, traced, measured and logged if anyone listens."""
        call = self.telemetry.http_call(method, template, self._base_url + path, attempt, trace)
        if call is None and not logger.isEnabledFor(logging.DEBUG):
            return sending
        return observed(self.telemetry, call, sending, method, template or path, attempt)

    async def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        json: Any,
        headers: Mapping[str, str] | None,
        billed: bool,
        max_body: int,
    ) -> Reply:
        if self._use_wire is None:  # decided once: a client runs on one event loop
            self._use_wire = self._wire is not None and sniffio.current_async_library() == "asyncio"
        wire: Wire = self._wire if self._use_wire and self._wire is not None else self._httpx
        try:
            answer = await wire.exchange(
                method,
                self._base_url + path,
                params=params,
                json_body=json,
                headers=headers,
                fresh=billed,
            )
            try:
                status = answer.status
                if status in _REDIRECTS and "location" in answer.headers:
                    self._refuse_redirect(method, path, status, answer.headers)
                raw = await self._read_body(answer, max_body, method, path)
            finally:
                await answer.close()
        except HTTPX_ERRORS as error:
            raise map_httpx_error(error, method=method, path=path, billed=billed) from error
        return self._interpret(status, answer.headers, raw, method, path)

    async def _read_body(self, answer: WireAnswer, limit: int, method: str, path: str) -> bytes:
        """The body, at most ``limit`` bytes once decoded and within ``timeout``
        seconds in all; a longer or slower one is refused (the connection dropped)
        before it fills memory or holds the caller."""
        what = f"{method} {path} -> {answer.status}"
        declared = answer.declared_plain_size
        if declared is not None:  # the common case: small, sized, plain
            if declared > limit:
                raise ProtocolError(
                    f"{what}: the body ({declared:,} bytes) is larger than the {limit:,}-byte "
                    "limit; it was not read"
                )
            raw: bytes = await answer.read()
            return raw
        chunks: list[bytes] = []
        size = 0
        started = anyio.current_time()
        # Decoded bytes: a compressed bomb counts at its full size.
        async with contextlib.aclosing(answer.chunks()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > limit:
                    answer.drop()
                    raise ProtocolError(
                        f"{what}: the body is larger than the {limit:,}-byte limit; the rest "
                        "was not read"
                    )
                if anyio.current_time() - started > self.timeout:
                    answer.drop()
                    raise httpx.ReadTimeout(f"the body took longer than {self.timeout:g}s")
                chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _refuse_redirect(method: str, path: str, status: int, headers: Mapping[str, str]) -> None:
        target = headers.get("location", "")
        raise Redirected(
            f"{method} {path} -> {status}: a redirect to {target[:200]!r} was not followed "
            "(the API key goes to the configured host only)"
        )

    def _interpret(
        self, status: int, headers: Mapping[str, str], raw: bytes, method: str, path: str
    ) -> Reply:
        what = f"{method} {path} -> {status}"
        if 200 <= status < 300:
            try:
                return Reply(status=status, body=json_loads(raw), headers=headers)
            except (ValueError, RecursionError):  # not JSON, or nested beyond reading
                parse_json(raw, what=what)  # raises ProtocolError
                raise  # pragma: no cover - parse_json raised already
        if status >= 400:
            try:
                body: object = parse_json(raw, what=what) if raw else None
            except ProtocolError:
                body = None  # a proxy's HTML error page: the status still says what happened
            lowered = {k.lower(): v for k, v in headers.items()}
            api_error = self._map_error(status, body, lowered, method=method, path=path)
            if body is None and raw:
                api_error.message = f"{api_error.message} (body: {excerpt(raw, 80)!r})"
                api_error.args = (api_error.message,)
            raise api_error
        raise ProtocolError(f"{what}: unexpected status; body: {excerpt(raw)!r}")
