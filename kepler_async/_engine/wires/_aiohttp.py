"""The fast wire: requests sent with aiohttp, for ``HttpBoundary`` on asyncio.

Extra ``aiohttp`` (``pip install "kepler-async[aiohttp]"``). ``HttpBoundary`` keeps every
rule (headers, retries, the error tree, bounded reads, no redirects); this module only
moves bytes, and speaks aiohttp directly rather than through an httpx transport: on this
machine httpx's client layer cost more CPU per poll than aiohttp's own I/O (see
benchmarks/README.md), and the httpx-aiohttp transport maps a connection dropped after
the request was written to ``httpx.ConnectTimeout`` ("never sent"), which would have
re-sent a billed POST.

Each aiohttp failure is raised as the httpx exception that says the same thing about
whether the request may have reached the server (``from`` the aiohttp one), so the
boundary maps and retries both wires by one table.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncGenerator, Mapping
from typing import Any, NoReturn

import aiohttp
import anyio
import httpx
from yarl import URL

from kepler_async._constants import DEFAULT_CONNECT_TIMEOUT

__all__ = ["AiohttpAnswer", "AiohttpWire"]


def _as_httpx_error(error: BaseException) -> httpx.HTTPError | httpx.InvalidURL | None:
    """The httpx exception with the same meaning, or None for one that is not a
    transport failure. Order matters: most specific first."""
    text = str(error) or type(error).__name__
    if isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        # The connection was never made: nothing reached the server.
        if isinstance(error, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(text)
        return httpx.ConnectError(text)
    if isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(text)
    if isinstance(error, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(text)
    if isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(text)
    if isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientOSError):
        return httpx.ReadError(text)  # after connecting: the request may have arrived
    if isinstance(error, asyncio.TimeoutError):
        return httpx.ReadTimeout(text)
    if isinstance(error, aiohttp.ClientError):
        return httpx.RemoteProtocolError(text)
    return None


def _env_proxy(base_url: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` name for ``base_url``,
    unless ``NO_PROXY`` exempts its host."""
    url = URL(base_url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme or "") or proxies.get("all")
    # (CPython's NO_PROXY matcher; not in typeshed)
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009
    if not proxy or bypass(url.host or "", proxies):
        return None
    return proxy


def _reraise(error: BaseException) -> NoReturn:
    """Raise ``error`` (an aiohttp failure) as its httpx counterpart."""
    mapped = _as_httpx_error(error)
    if mapped is None:  # pragma: no cover - every ClientError maps
        raise error
    raise mapped from error


_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError)


class AiohttpAnswer:
    """An aiohttp response as a ``_http.WireAnswer``: status and headers, the body read
    by the caller's rules."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers

    @property
    def declared_plain_size(self) -> int | None:
        """Content-Length, when the body is sent as is (not compressed)."""
        declared = self.headers.get("Content-Length", "")
        encoding = self.headers.get("Content-Encoding", "identity")
        return int(declared) if declared.isdigit() and encoding == "identity" else None

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except _FAILURES as error:
            _reraise(error)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """Decoded chunks (aiohttp decompresses as it reads)."""
        try:
            async for chunk in self._response.content.iter_chunked(64 * 1024):
                yield chunk
        except _FAILURES as error:
            _reraise(error)

    def drop(self) -> None:
        """Close the connection without reading the rest."""
        self._response.close()

    async def close(self) -> None:
        """Give the connection back to the pool (after a complete read) or close it."""
        self._response.release()


class AiohttpWire:
    """One aiohttp session per client, made on first use in the running loop."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        timeout: float,
        max_connections: int,
    ) -> None:
        self._base_url = base_url
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeout,  # waiting for a pooled connection, and making one
            sock_connect=min(timeout, DEFAULT_CONNECT_TIMEOUT),
            sock_read=timeout,  # each read
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None

    def _open(self, *, fresh: bool = False) -> aiohttp.ClientSession:
        # The same certificates as httpx (certifi), and the proxy the environment names
        # for the API's host, as httpx honours it: switching wires changes no security
        # setting. The proxy is looked up once here: aiohttp's own trust_env looks it up
        # (and reads ~/.netrc) in a thread for every request, which cost more CPU than
        # the request itself.
        #
        # A pooled connection the server has just closed (its idle timeout; uvicorn's is
        # 5 s) can be picked before the loop has seen the close. For a GET that costs a
        # retry; for a billed POST it would be "sent, answer lost" (SubmitUncertain, a
        # job in doubt), so billed requests go over a `fresh` session whose connections
        # are never reused (found by tests/kepler/test_web_service.py under load). Idle
        # connections are dropped after 4 s, before common server timeouts.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            ssl=httpx.create_ssl_context(),
            force_close=fresh,
            keepalive_timeout=None if fresh else 4.0,
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=self._timeout,
            proxy=_env_proxy(self._base_url),
            auto_decompress=True,
            raise_for_status=False,
        )

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        fresh: bool = False,
    ) -> AiohttpAnswer:
        """Send one request; return the answer with its body unread (the caller reads
        it and calls ``close()``). Redirects are never followed. Transport failures
        come out as httpx exceptions (see the module). ``fresh``: on a new connection
        (billed requests)."""
        if fresh:  # a connection of its own, never a pooled one (see _open)
            session = self._fresh
            if session is None:
                session = self._fresh = self._open(fresh=True)
        else:
            session = self._session
            if session is None:
                session = self._session = self._open()
        data: bytes | None = None
        extra = dict(headers) if headers else None
        if json_body is not None:
            data = json.dumps(
                json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
            extra = {**(extra or {}), "Content-Type": "application/json"}
        query = {k: str(v) for k, v in params.items()} if params else None
        try:
            response = await session.request(
                method,
                URL(url, encoded=True),
                params=query,
                data=data,
                headers=extra,
                allow_redirects=False,
            )
        except _FAILURES as error:
            _reraise(error)
        return AiohttpAnswer(response)

    async def aclose(self) -> None:
        sessions = [s for s in (self._session, self._fresh) if s is not None]
        self._session = self._fresh = None
        with anyio.CancelScope(shield=True):
            for session in sessions:
                await session.close()
