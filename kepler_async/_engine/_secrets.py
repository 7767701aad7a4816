"""API keys never surface: not in an error's text, a log record, a repr or a file.

Every key a client is made with is registered here. ``scrub_error`` masks it in every
text an error carries (message, code, reason, request id, path, args, notes); a filter
on the ``kepler_async`` logger masks every registered key in every record, at every
level, however it was formatted.
"""

from __future__ import annotations

import logging

from kepler_async._exceptions import KeplerError

__all__ = ["MASK", "mask", "register_secret", "scrub_error"]

MASK = "***"
_SECRETS: set[str] = set()
#: The error fields that hold text a server may have chosen.
_TEXT_FIELDS = ("message", "code", "reason", "request_id", "path", "failure_reason")


def register_secret(secret: str) -> None:
    """Mask ``secret`` wherever the library writes text from now on."""
    if len(secret) >= 4:  # a shorter "key" would mask ordinary words
        _SECRETS.add(secret)


def mask(text: str, secret: str | None = None) -> str:
    """``text`` with ``secret`` (or every registered secret) replaced by ``***``."""
    for one in (secret,) if secret else _SECRETS:
        if one in text:
            text = text.replace(one, MASK)
    return text


def scrub_error(error: BaseException, secret: str) -> None:
    """Mask ``secret`` in every text of ``error`` (in place)."""
    if isinstance(error, KeplerError):
        for field in _TEXT_FIELDS:
            value = getattr(error, field, None)
            if isinstance(value, str) and secret in value:
                setattr(error, field, value.replace(secret, MASK))
    error.args = tuple(
        arg.replace(secret, MASK) if isinstance(arg, str) else arg for arg in error.args
    )
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        masked = [n.replace(secret, MASK) if isinstance(n, str) else n for n in notes]
        setattr(error, "__notes__", masked)  # noqa: B010 (3.10's BaseException has none)


class _MaskSecrets(logging.Filter):
    """Masks every registered key in a record of the ``kepler_async`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is left to logging
            return True
        masked = mask(text)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


logging.getLogger("kepler_async").addFilter(_MaskSecrets())
