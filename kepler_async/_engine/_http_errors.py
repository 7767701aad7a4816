"""httpx's exceptions (the aiohttp wire raises them too) as the error tree's."""

from __future__ import annotations

import httpx

from kepler_async._exceptions import (
    APIError,
    KeplerError,
    ProtocolError,
    SubmitUncertain,
    TransportError,
)

__all__ = ["HTTPX_ERRORS", "TRANSIENT", "map_httpx_error"]

# Most specific first. The flag says whether the request may have reached the server.
_TRANSPORT_ERRORS: tuple[tuple[type[Exception], str, bool], ...] = (
    (httpx.ConnectTimeout, "timed out connecting", False),
    (httpx.PoolTimeout, "timed out waiting for a free connection", False),
    (httpx.ReadTimeout, "timed out waiting for the response", True),
    (httpx.WriteTimeout, "timed out sending the request", True),
    (httpx.TimeoutException, "timed out", True),
    (httpx.ConnectError, "could not connect", False),
    (httpx.ReadError, "the connection failed while reading the response", True),
    (httpx.WriteError, "the connection failed while sending the request", True),
    (httpx.CloseError, "the connection failed while closing", True),
    (httpx.NetworkError, "network error", True),
    (httpx.ProxyError, "the proxy refused the connection", False),
    (httpx.UnsupportedProtocol, "unsupported URL scheme", False),
    (httpx.LocalProtocolError, "the request could not be encoded", False),
    (httpx.RemoteProtocolError, "the server broke the HTTP protocol or hung up", True),
    (httpx.TransportError, "transport error", True),
    (httpx.InvalidURL, "invalid URL", False),
    (httpx.CookieConflict, "cookie conflict", False),
    (httpx.StreamError, "stream misuse", False),
)

# Errors worth trying again: the network or the server may do better next time.
TRANSIENT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)

HTTPX_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.CookieConflict,
    httpx.StreamError,
)


def map_httpx_error(error: Exception, *, method: str, path: str, billed: bool) -> KeplerError:
    """The exception of our tree for an httpx exception (the caller raises it ``from``)."""
    if isinstance(error, httpx.DecodingError):
        return ProtocolError(f"{method} {path}: the response body could not be decoded")
    if isinstance(error, httpx.TooManyRedirects):
        return ProtocolError(f"{method} {path}: too many redirects")
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return APIError(f"HTTP {status}", status=status, method=method, path=path)
    for cls, what, sent in _TRANSPORT_ERRORS:
        if isinstance(error, cls):
            detail = str(error)
            message = f"{what} ({type(error).__name__}{': ' + detail if detail else ''})"
            if billed and sent:
                return SubmitUncertain(
                    message + "; the request may have started billed work, so it was not "
                    "sent again",
                    method=method,
                    path=path,
                    request_sent=True,
                )
            return TransportError(message, method=method, path=path, request_sent=sent)
    return TransportError(
        f"unexpected {type(error).__name__}", method=method, path=path, request_sent=True
    )
