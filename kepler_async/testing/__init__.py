"""Test without a key: simulators of the APIs kepler_async speaks, and pytest fixtures.

Needs the ``sim`` extra (``pip install "kepler-async[sim]"``)::

    from kepler_async import AsyncKepler
    from kepler_async.testing import KeplerSimulator, LIVE_KEY, SIM_BASE_URL, asgi_transport

    sim = KeplerSimulator(time_scale=0.01)          # a 60 s cold run takes 0.6 s
    kepler = AsyncKepler(LIVE_KEY, base_url=SIM_BASE_URL, transport=asgi_transport(sim))
"""

from __future__ import annotations

try:  # the simulators are Starlette apps, served by uvicorn
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as missing:
    raise ImportError(
        f"kepler_async.testing needs the 'sim' extra ({missing.name} is missing): "
        'pip install "kepler-async[sim]"'
    ) from None

from ._clock import ManualClock
from ._faults import Fault, FaultPlan
from ._kepler_sim import (
    DEFAULT_FAILURE_MIX,
    FREE_KEY,
    LIVE_KEY,
    OTHER_KEY,
    SANDBOX_KEY,
    KeplerSimulator,
)
from ._server import serve
from ._sim_app import SIM_BASE_URL, asgi_transport, create_app
from ._sim_data import PLANS, SANDBOX_DOMAINS, Plan
from ._sim_types import SimCounters, SimJob, SimResponse
from ._simulated import simulated_client
from ._vendor_sims import (
    DEEPIDV_KEY,
    MIDLYR_KEY,
    PARSETX_KEY,
    DeepidvSimulator,
    MidLyrSimulator,
    ParseTxSimulator,
    VendorCounters,
)
from ._virtual import virtual_time

__all__ = [
    "DEEPIDV_KEY",
    "DEFAULT_FAILURE_MIX",
    "FREE_KEY",
    "LIVE_KEY",
    "MIDLYR_KEY",
    "OTHER_KEY",
    "PARSETX_KEY",
    "PLANS",
    "SANDBOX_DOMAINS",
    "SANDBOX_KEY",
    "SIM_BASE_URL",
    "DeepidvSimulator",
    "Fault",
    "FaultPlan",
    "KeplerSimulator",
    "ManualClock",
    "MidLyrSimulator",
    "ParseTxSimulator",
    "Plan",
    "SimCounters",
    "SimJob",
    "SimResponse",
    "VendorCounters",
    "asgi_transport",
    "create_app",
    "serve",
    "simulated_client",
    "virtual_time",
]
