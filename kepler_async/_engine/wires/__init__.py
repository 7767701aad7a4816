"""The wires: what moves the bytes of the HTTP boundary (see ``_base``)."""

from ._base import (
    HTTP_BACKEND_ENV,
    HTTP_BACKENDS,
    Wire,
    WireAnswer,
    aiohttp_wire,
    check_http_backend,
    default_http_backend,
)
from ._httpx import HttpxWire, new_httpx_client

__all__ = [
    "HTTP_BACKENDS",
    "HTTP_BACKEND_ENV",
    "HttpxWire",
    "Wire",
    "WireAnswer",
    "aiohttp_wire",
    "check_http_backend",
    "default_http_backend",
    "new_httpx_client",
]
