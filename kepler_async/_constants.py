"""Defaults, in one place. The README's "Configuration" section documents them."""

from __future__ import annotations

from ._version import __version__

DEFAULT_BASE_URL = "https://api.keplerinsights.us"
API_KEY_ENV = "KEPLER_API_KEY"
API_KEY_PREFIXES = ("ki_live_", "ki_test_")
USER_AGENT = f"kepler-async/{__version__}"

#: Seconds to connect, and to wait for any one read, write or pooled connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_TIMEOUT = 30.0

#: History page size the API uses when none is given, and its bounds.
HISTORY_DEFAULT_LIMIT = 100
HISTORY_MAX_LIMIT = 500

#: Requests in flight at once (polls, submits, result reads). httpx's pool slows
#: down sharply past ~10 concurrent requests (see the README's Performance section).
DEFAULT_MAX_IN_FLIGHT = 10

#: Jobs ``score_many`` keeps submitted and unfinished at once.
DEFAULT_MAX_OUTSTANDING = 1000
