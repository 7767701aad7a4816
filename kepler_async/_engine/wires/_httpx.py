"""The default wire: requests sent with an httpx ``AsyncClient``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import httpx

from kepler_async._constants import DEFAULT_CONNECT_TIMEOUT

from ._pool import promise_connections

__all__ = ["HttpxAnswer", "HttpxWire", "new_httpx_client"]

#: The most idle connections kept by a pool that is not a ``PromisingPool`` (see
#: ``new_httpx_client``).
KEEP_IDLE = 20


def new_httpx_client(
    *, transport: httpx.AsyncBaseTransport | None, timeout: float, max_connections: int
) -> httpx.AsyncClient:
    """An httpx client of our own, with as many connections as the engine lets requests
    be in flight (a smaller pool makes a request the engine let go wait for one).

    With no ``transport`` given, its pool is a ``PromisingPool`` (``_pool.py``), which
    checks a socket only when it is about to be used, so it keeps every connection it
    opened idle. httpcore's own pool checks every idle connection on each request (a
    system call each), so with a transport of the caller's, at most ``KEEP_IDLE`` are
    kept idle."""
    client = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, DEFAULT_CONNECT_TIMEOUT)),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections
            if transport is None
            else min(max_connections, KEEP_IDLE),
        ),
        follow_redirects=False,
    )
    if transport is None:
        promise_connections(client)
    return client


class HttpxAnswer:
    """An httpx response as a ``WireAnswer``."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers: Mapping[str, str] = response.headers

    @property
    def declared_plain_size(self) -> int | None:
        declared = self.headers.get("content-length", "")
        plain = self.headers.get("content-encoding", "identity") == "identity"
        return int(declared) if declared.isdigit() and plain else None

    async def read(self) -> bytes:
        return await self._response.aread()

    def chunks(self) -> AsyncGenerator[bytes, None]:
        # Decoded. httpx types it as an iterator; it is a generator, which the caller
        # closes (a wrapper would leave it to the garbage collector).
        return cast("AsyncGenerator[bytes, None]", self._response.aiter_bytes())

    def drop(self) -> None:
        """Nothing to do: ``close()`` drops a connection whose body was not read."""

    async def close(self) -> None:
        await self._response.aclose()


class _Body(httpx.AsyncByteStream):
    """A request body, iterated without an async generator (httpx's own is one): a
    request cancelled while its body is written, as closing the client does, leaves no
    half-run generator for the garbage collector (trio warns about each)."""

    __slots__ = ("_chunk",)

    def __init__(self, chunk: bytes) -> None:
        self._chunk = chunk

    def __aiter__(self) -> _Chunks:
        return _Chunks(self._chunk)


class _Chunks:
    __slots__ = ("_chunk",)

    def __init__(self, chunk: bytes) -> None:
        self._chunk: bytes | None = chunk

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            raise StopAsyncIteration
        return chunk


class HttpxWire:
    """Requests by an httpx client: ours (the headers are set on it once) or the
    caller's (left as it is: the headers go with each request)."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str], *, owned: bool) -> None:
        self._client = client
        self._headers: dict[str, str] | None = None
        if owned:
            client.headers.update(headers)
        else:
            self._headers = headers

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        fresh: bool = False,
    ) -> HttpxAnswer:
        """Send; the body is left unread. (``fresh`` is not needed: httpx checks that a
        pooled connection is still open before it sends on it.)"""
        if headers is not None:
            headers = {**(self._headers or {}), **headers}
        request = self._client.build_request(
            method, url, params=params, json=json_body, headers=headers or self._headers
        )
        request.stream = _Body(request.content)
        # Never follow a redirect, whoever built the httpx client: the key header would
        # go along to wherever it points.
        response = await self._client.send(request, stream=True, follow_redirects=False)
        return HttpxAnswer(response)

    async def aclose(self) -> None:
        """Nothing: the boundary closes an httpx client it owns itself."""
