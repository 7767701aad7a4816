"""Defaults every client shares, in one place (each API's own sit beside its client:
``_kepler/_config.py`` for Kepler). The README's "Configuration" section documents them."""

from __future__ import annotations

from ._version import __version__

USER_AGENT = f"kepler-async/{__version__}"

#: Seconds to connect, and to wait for any one read, write or pooled connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 30.0

#: Requests in flight at once (polls, submits, result reads). httpx's pool slows
#: down sharply past ~10 concurrent requests (see the README's Performance section).
DEFAULT_MAX_IN_FLIGHT = 10

#: Jobs ``score_many`` keeps submitted and unfinished at once.
DEFAULT_MAX_OUTSTANDING = 1000
