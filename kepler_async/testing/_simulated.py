"""``simulated_client``: an ``AsyncKepler`` wired to a simulator in-process."""

from __future__ import annotations

from typing import Any

from kepler_async._kepler._client import AsyncKepler
from kepler_async._kepler._dialect import KEPLER_POLICY

from ._kepler_sim import LIVE_KEY, KeplerSimulator
from ._sim_app import SIM_BASE_URL, asgi_transport

__all__ = ["simulated_client"]


def simulated_client(sim: KeplerSimulator, api_key: str = LIVE_KEY, **kwargs: Any) -> AsyncKepler:
    """An ``AsyncKepler`` wired to ``sim`` in-process, polling at the simulator's pace.

    Its poll policy is the default one scaled by ``sim.time_scale``, so a simulator
    that runs 100x faster is also polled 100x more often. Other keyword arguments go
    to ``AsyncKepler``.
    """
    kwargs.setdefault("base_url", SIM_BASE_URL)
    kwargs.setdefault("poll_policy", KEPLER_POLICY.scaled(sim.time_scale))
    return AsyncKepler(api_key, transport=asgi_transport(sim), **kwargs)
