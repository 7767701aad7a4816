"""``KEPLER_ASYNC_LOG=info|debug``: the library's logs on stderr, with no logging setup.

Like ``OPENAI_LOG``: set it and the ``kepler_async`` logger gets a handler of its own
that writes to stderr at that level: at ``info`` one line per job that starts or ends,
at ``debug`` also one line per HTTP attempt (method, route, status, request id, time,
attempt) and per poll that finds a job pending (when the next poll goes). Unset (or
any other value), the library adds no handler and prints nothing; every line on the
hot path is behind a level check, so nothing is formatted either. The API key is never
in a line: routes carry no key, and errors are scrubbed of it before they are logged.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LOG_ENV", "configure_from_env"]

LOG_ENV = "KEPLER_ASYNC_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


class _EnvHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``KEPLER_ASYNC_LOG`` adds (one, however often it is asked)."""


def configure_from_env() -> None:
    level = _LEVELS.get(os.environ.get(LOG_ENV, "").strip().lower())
    if level is None:
        return
    logger = logging.getLogger("kepler_async")
    if not any(isinstance(handler, _EnvHandler) for handler in logger.handlers):
        handler = _EnvHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s kepler_async %(levelname)s %(message)s")
        )
        logger.addHandler(handler)
    logger.setLevel(level)
