"""What moves the bytes: the wire protocol, and which wire sends.

A *wire* sends one request and hands back the answer with its body unread; the HTTP
boundary (``_http``) keeps every rule around it (headers, retries, the error tree,
bounded reads, no redirects). Two wires: httpx (``_httpx``, the default) and aiohttp
(``_aiohttp``, extra ``aiohttp``, asyncio only). Failures are raised as the httpx
exceptions that say the same thing, so the boundary maps both by one table.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

from kepler_async._constants import USER_AGENT
from kepler_async._exceptions import ConfigurationError

__all__ = [
    "HTTP_BACKENDS",
    "HTTP_BACKEND_ENV",
    "Wire",
    "WireAnswer",
    "aiohttp_wire",
    "check_http_backend",
    "default_http_backend",
]

#: Which HTTP client sends: httpx (the default) or aiohttp (extra `aiohttp`; on asyncio
#: only: on trio, httpx sends). The default can be set with HTTP_BACKEND_ENV.
HTTP_BACKENDS = ("httpx", "aiohttp")
HTTP_BACKEND_ENV = "KEPLER_ASYNC_HTTP_BACKEND"


def check_http_backend(value: object, *, name: str = "http_backend") -> str:
    """``value`` if it names an HTTP backend, else ``ConfigurationError``."""
    if value not in HTTP_BACKENDS:
        raise ConfigurationError(
            f"{name} must be one of {', '.join(map(repr, HTTP_BACKENDS))}, got {value!r}"
        )
    return str(value)


def default_http_backend() -> str:
    """``KEPLER_ASYNC_HTTP_BACKEND`` if set (checked), else ``"httpx"``."""
    chosen = os.environ.get(HTTP_BACKEND_ENV, "").strip().lower() or "httpx"
    return check_http_backend(chosen, name=HTTP_BACKEND_ENV)


class WireAnswer(Protocol):
    """An answer as a wire gives it: status and headers read, the body not yet (the
    boundary reads it by its own limits)."""

    status: int
    headers: Mapping[str, str]

    @property
    def declared_plain_size(self) -> int | None:
        """Content-Length, when the body is sent as is (not compressed)."""

    async def read(self) -> bytes:
        """The whole body (its declared size was checked first)."""

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body in decoded chunks."""

    def drop(self) -> None:
        """Give up the connection without reading the rest."""

    async def close(self) -> None:
        """Release the answer (its connection back to the pool, or closed)."""


class Wire(Protocol):
    """What sends the boundary's requests (httpx's client, or aiohttp's); failures are
    raised as httpx exceptions."""

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        fresh: bool = False,
    ) -> WireAnswer: ...

    async def aclose(self) -> None: ...


def aiohttp_wire(
    *, base_url: str, timeout: float, max_connections: int, api_key: str, auth_header: str
) -> Wire:
    """The aiohttp wire; a ConfigurationError where aiohttp is not installed."""
    try:
        from ._aiohttp import AiohttpWire
    except ImportError:
        raise ConfigurationError(
            'http_backend="aiohttp" needs aiohttp: pip install "kepler-async[aiohttp]"'
        ) from None
    headers = {auth_header: api_key, "User-Agent": USER_AGENT, "Accept": "application/json"}
    return AiohttpWire(
        base_url=base_url, headers=headers, timeout=timeout, max_connections=max_connections
    )
