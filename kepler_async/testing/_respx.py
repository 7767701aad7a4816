"""Route a respx mock of an API's base URL to a simulator (``sim.mock(respx_mock)``)."""

from __future__ import annotations

import re
from typing import Any

import httpx

__all__ = ["route_to_app"]


def route_to_app(router: Any, app: Any, base_url: str) -> Any:
    """Add a route to ``router`` (a ``respx.MockRouter``, e.g. the ``respx_mock``
    fixture) that answers every request under ``base_url`` from the ASGI ``app``;
    returns the route (``route.calls`` lists what was sent)."""
    route = getattr(router, "route", None)
    if not callable(route):
        raise TypeError(f"expected a respx router (such as respx_mock), got {router!r}")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    transport = httpx.ASGITransport(app=app)

    async def answer(request: httpx.Request) -> httpx.Response:
        # Another httpx.Request than the one respx caught: ASGITransport reads its body.
        response = await transport.handle_async_request(request)
        body = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    prefix = base_url.rstrip("/")
    return route(url__regex="^" + re.escape(prefix) + "(/|$|\\?)").mock(side_effect=answer)
