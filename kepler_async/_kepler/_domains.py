"""Inputs are hostile until checked: domain names and job ids.

Both are validated before anything is sent, and a value that passes is safe to put in a
URL path (it is still percent-encoded there, by ``path_segment``).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

import idna

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


def _is_ip_literal(host: str) -> bool:
    """An IP address in any notation a resolver accepts: dotted, IPv6, a single number,
    octal or hex parts (``0x7f.1``). A top-level domain is never all digits, so a name
    whose last label is a number is an address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    last = host.rsplit(".", 1)[-1]
    return last.isdigit() or bool(re.fullmatch(r"0x[0-9a-f]*", last))


def normalize_domain(value: object) -> str:
    """Return the bare, lower-case ASCII hostname for ``value`` or raise ``InvalidDomain``.

    Accepts ``Stripe.com``, ``www.stripe.com``, ``https://stripe.com/pricing``,
    ``stripe.com/`` and internationalised names, mapped by UTS #46 (non-transitional:
    ``bücher.de`` -> ``xn--bcher-kva.de``, ``straße.de`` -> ``xn--strae-oqa.de``).
    Rejects empty or over-long names, whitespace, control characters, empty labels,
    paths without a scheme, user info, ports, IP addresses in any notation and
    anything else that is not a hostname.
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
        if host.startswith("["):
            raise bad("an IP address is not a company domain")
        if ":" in host:
            raise bad("a port is not part of a domain")
    else:
        host, slash, rest = text.partition("/")
        if slash and rest:
            raise bad("it contains '/' (give a bare domain such as 'stripe.com')")
    if host.startswith("[") or host.count(":") >= 2:
        raise bad("an IP address is not a company domain")
    if ".." in host:
        raise bad("it contains '..' (an empty label)")
    if host.startswith("."):
        raise bad("it starts with '.' (an empty label)")
    if any(ch in _FORBIDDEN for ch in host):
        raise bad("it contains a character that is not allowed in a hostname")
    host = host.rstrip(".").lower()
    if host.startswith("www."):
        host = host[4:]
    if not host:
        raise bad("there is no hostname in it")
    if _is_ip_literal(host):
        raise bad("an IP address is not a company domain")
    try:
        # UTS #46, non-transitional (as browsers and registries do): 'straße.de' keeps
        # its 'ß' (xn--strae-oqa.de) instead of becoming 'strasse.de' (IDNA 2003).
        ascii_host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        raise bad("it is not a valid (internationalised) hostname") from None
    except UnicodeError:
        raise bad("it is not a valid (internationalised) hostname") from None
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
