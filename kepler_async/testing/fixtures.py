"""pytest fixtures for testing code that uses kepler_async, without a key or network.

Enable them in a ``conftest.py``::

    pytest_plugins = ["kepler_async.testing.fixtures"]

- ``kepler_sim``: a fresh ``KeplerSimulator`` (seed 0, real time scale 1).
- ``kepler_sim_url``: the same simulator served over real HTTP by uvicorn on a free
  port of 127.0.0.1; the server stops after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._kepler_sim import KeplerSimulator
from ._server import serve
from ._sim_app import create_app

__all__ = ["kepler_sim", "kepler_sim_url"]


@pytest.fixture
def kepler_sim() -> KeplerSimulator:
    """A fresh Kepler simulator for one test."""
    return KeplerSimulator(seed=0)


@pytest.fixture
def kepler_sim_url(kepler_sim: KeplerSimulator) -> Iterator[str]:
    """``kepler_sim`` served over HTTP on 127.0.0.1; yields the base URL."""
    with serve(create_app(kepler_sim)) as url:
        yield url
