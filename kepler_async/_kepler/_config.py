"""What the Kepler client knows of its API: ``KEPLER`` (an ``ApiSpec``) and its limits."""

from __future__ import annotations

from kepler_async._engine._spec import ApiSpec

from ._errors import kepler_error, kepler_submit_never_started

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "HISTORY_DEFAULT_LIMIT",
    "HISTORY_MAX_LIMIT",
    "KEPLER",
]

DEFAULT_BASE_URL = "https://api.keplerinsights.us"
API_KEY_ENV = "KEPLER_API_KEY"
BASE_URL_ENV = "KEPLER_BASE_URL"

#: History page size the API uses when none is given, and its bounds.
HISTORY_DEFAULT_LIMIT = 100
HISTORY_MAX_LIMIT = 500


def _describe_key(key: str) -> str:
    return "ki_test_***" if key.startswith("ki_test_") else "ki_live_***"


KEPLER = ApiSpec(
    name="Kepler",
    key_env=API_KEY_ENV,
    key_prefixes=("ki_live_", "ki_test_"),
    key_help=(
        "a 'ki_test_' key reaches the sandbox's four .test domains; "
        "kepler_async.testing.LIVE_KEY is the simulator's live key"
    ),
    default_base_url=DEFAULT_BASE_URL,
    base_url_env=BASE_URL_ENV,
    auth_header="X-API-Key",
    map_error=kepler_error,
    never_started=kepler_submit_never_started,
    describe_key=_describe_key,
)
