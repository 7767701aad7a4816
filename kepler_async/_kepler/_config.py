"""Settings a client is built from: the API key and the base URL, checked early."""

from __future__ import annotations

import os
import re

from kepler_async._engine._client import check_base_url
from kepler_async._exceptions import ConfigurationError

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "HISTORY_DEFAULT_LIMIT",
    "HISTORY_MAX_LIMIT",
    "resolve_api_key",
    "resolve_base_url",
]

DEFAULT_BASE_URL = "https://api.keplerinsights.us"
API_KEY_ENV = "KEPLER_API_KEY"
API_KEY_PREFIXES = ("ki_live_", "ki_test_")

#: History page size the API uses when none is given, and its bounds.
HISTORY_DEFAULT_LIMIT = 100
HISTORY_MAX_LIMIT = 500

BASE_URL_ENV = "KEPLER_BASE_URL"
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def resolve_api_key(api_key: str | None) -> str:
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
        if not api_key:
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable "
                "(a 'ki_test_' key works against the sandbox and the simulator)"
            )
    if not isinstance(api_key, str):
        raise ConfigurationError(f"api_key must be a string, not {type(api_key).__name__}")
    api_key = api_key.strip()
    if not api_key.startswith(API_KEY_PREFIXES):
        raise ConfigurationError(
            "the API key does not look like a Kepler key: expected it to start with "
            "'ki_live_' (live) or 'ki_test_' (sandbox)"
        )
    if not _KEY_CHARS.match(api_key) or len(api_key) <= len("ki_live_"):
        raise ConfigurationError(
            "the API key is malformed: expected 'ki_live_' or 'ki_test_' followed by "
            "printable ASCII characters and no spaces"
        )
    return api_key


def resolve_base_url(base_url: str | None) -> str:
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return check_base_url(base_url)
