"""Inputs are hostile until checked: domain names and job ids.

Both are validated before anything is sent, and a value that passes is safe to put in a
URL path (it is still percent-encoded there, by ``path_segment``).
"""

from __future__ import annotations

import re
import urllib.parse

from kepler_async._engine._kit import check_uuid_id
from kepler_async._exceptions import InvalidDomain

__all__ = ["normalize_domain", "validate_job_id"]

_MAX_DOMAIN = 253
_MAX_LABEL = 63
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_FORBIDDEN = set("@:?#%\\[]<>\"'`{}|^;,=+*!$&()~")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:99] + "…"


def normalize_domain(value: object) -> str:
    """Return the bare, lower-case ASCII hostname for ``value`` or raise ``InvalidDomain``.

    Accepts ``Stripe.com``, ``www.stripe.com``, ``https://stripe.com/pricing``,
    ``stripe.com/`` and internationalised names (``bücher.de`` -> ``xn--bcher-kva.de``).
    Rejects empty or over-long names, whitespace, control characters, ``..``, paths
    without a scheme, user info, ports and anything else that is not a hostname.
    """
    if not isinstance(value, str):
        raise InvalidDomain(
            f"a domain must be a string, not {type(value).__name__}", value=_shown(value)
        )

    def bad(why: str) -> InvalidDomain:
        return InvalidDomain(f"invalid domain {_shown(value)}: {why}", value=_shown(value))

    text = value.strip()
    if not text:
        raise bad("it is empty")
    if len(text) > 2048:
        raise bad("it is too long")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise bad("it contains whitespace or control characters")
    if _SCHEME.match(text):
        parts = urllib.parse.urlsplit(text)
        if parts.username is not None or parts.password is not None:
            raise bad("a URL with user info is not a company domain")
        host = parts.netloc
        if ":" in host:
            raise bad("a port is not part of a domain")
    else:
        host, slash, rest = text.partition("/")
        if slash and rest:
            raise bad("it contains '/' (give a bare domain such as 'stripe.com')")
    if ".." in host:
        raise bad("it contains '..'")
    if any(ch in _FORBIDDEN for ch in host):
        raise bad("it contains a character that is not allowed in a hostname")
    host = host.rstrip(".").lower()
    if host.startswith("www."):
        host = host[4:]
    if not host:
        raise bad("there is no hostname in it")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise bad(f"it is not a valid internationalised name ({exc})") from None
    if len(ascii_host) > _MAX_DOMAIN:
        raise bad(f"it is longer than {_MAX_DOMAIN} characters")
    labels = ascii_host.split(".")
    if len(labels) < 2:
        raise bad("it needs a top-level domain, as in 'stripe.com'")
    for label in labels:
        if not label or len(label) > _MAX_LABEL or not _LABEL.match(label):
            raise bad(f"the label {label!r} is not a valid hostname label")
    return ascii_host


def validate_job_id(value: object) -> str:
    """Return the canonical (lower-case) form of a Kepler job id, a UUID."""
    return check_uuid_id(value)
