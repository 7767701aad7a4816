"""Defaults every client shares, in one place (each API's own sit beside its client:
``_kepler/_config.py`` for Kepler). The README's "Configuration" section documents them."""

from __future__ import annotations

from ._version import __version__

USER_AGENT = f"kepler-async/{__version__}"

#: Seconds to connect, and to wait for any one read, write or pooled connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 30.0

#: Requests in flight at once (polls, submits, result reads), by what sends them.
#: httpx's pool slows down past ~10 concurrent requests on loopback; aiohttp keeps its
#: pace to 100 and, over a 50 ms round trip, sends 5x the polls at 50 that it does at
#: 10 (benchmarks/throughput.py, the README's Performance section).
DEFAULT_MAX_IN_FLIGHT = 10
DEFAULT_MAX_IN_FLIGHT_AIOHTTP = 50

#: Jobs a fan-out (``score_many`` and every ``*_many``) keeps submitted and unfinished
#: at once.
DEFAULT_MAX_OUTSTANDING = 1000
