"""``ApiSpec``: everything one API's client needs to know of it, in one object.

The key (its environment variable, the prefixes the vendor documents, how it is shown),
the default origin (and its environment variable, where the API has one), the header
that carries the key, how an error answer maps onto the error tree, and which refused
submits surely started nothing. Each client names its ``ApiSpec``; ``ApiClient`` reads
it, and ``resolve_key`` is the one key resolver of every API.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable

import attrs
import httpx

from kepler_async._exceptions import APIError, ConfigurationError

__all__ = ["ApiSpec", "check_base_url", "check_plain_http", "is_local_host"]


def _never(error: APIError) -> bool:
    return False


def _masked(key: str) -> str:
    return "***"


@attrs.frozen(kw_only=True)
class ApiSpec:
    """What a client needs to know of one API (see the module docstring)."""

    #: The API's short name, for messages ("Kepler", "deepidv").
    name: str
    #: The environment variable the key is read from when ``api_key`` is None.
    key_env: str
    default_base_url: str
    #: The header that carries the key.
    auth_header: str
    #: ``map_error(status, body, headers, *, method, path)``: an error answer as an
    #: error of the tree (``_kit.make_error_mapper`` makes one).
    map_error: Callable[..., APIError] = attrs.field(repr=False)
    #: The environment variable the origin is read from, where the API has one.
    base_url_env: str | None = None
    #: The prefixes the API's keys start with, where the vendor documents them.
    key_prefixes: tuple[str, ...] = ()
    #: Said after "no key" (where to get one).
    key_help: str = ""
    #: True if a refused submit surely started nothing (safe to send again).
    never_started: Callable[[APIError], bool] = attrs.field(default=_never, repr=False)
    #: How the key shows in a repr (never the key itself).
    describe_key: Callable[[str], str] = attrs.field(default=_masked, repr=False)

    def resolve_key(self, api_key: object) -> str:
        """The key from ``api_key`` or the environment, checked; ``ConfigurationError``."""
        if api_key is None:
            api_key = os.environ.get(self.key_env, "")
        if not isinstance(api_key, str):
            raise ConfigurationError(f"api_key must be a string, not {type(api_key).__name__}")
        key = api_key.strip()
        if not key:
            raise ConfigurationError(
                f"no {self.name} API key: pass api_key=... or set {self.key_env}"
                + (f" ({self.key_help})" if self.key_help else "")
            )
        prefixes = self.key_prefixes
        if prefixes and not key.startswith(prefixes):
            raise ConfigurationError(
                f"the API key does not look like a {self.name} key: expected it to start "
                f"with {' or '.join(repr(p) for p in prefixes)}"
            )
        if not _KEY_CHARS.match(key) or key in prefixes:
            start = " or ".join(repr(p) for p in prefixes)
            raise ConfigurationError(
                f"the {self.name} API key is malformed: expected "
                + (f"{start} followed by " if prefixes else "")
                + "printable ASCII characters and no whitespace"
            )
        return key

    def resolve_base_url(self, base_url: str | None) -> str:
        """``base_url``, else the environment's (where the API has one), else the
        default; checked (``ConfigurationError``)."""
        if base_url is None and self.base_url_env is not None:
            base_url = os.environ.get(self.base_url_env) or None
        return check_base_url(base_url if base_url is not None else self.default_base_url)


#: Hosts that never leave this machine or never resolve on the internet (RFC 6761).
_LOCAL_SUFFIXES = (".localhost", ".test", ".invalid", ".example")


def is_local_host(host: str) -> bool:
    """True for a loopback address, ``localhost`` or a special-use test name."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: object) -> str:
    """``base_url`` as we keep it (no trailing slash), or ``ConfigurationError``."""
    try:
        url = httpx.URL(base_url)  # type: ignore[arg-type]
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url {base_url!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url {base_url!r} needs an http:// or https:// scheme and a host"
        )
    if url.query or url.fragment:
        raise ConfigurationError(f"base_url {base_url!r} must not carry a query or fragment")
    if url.path not in ("", "/"):
        raise ConfigurationError(
            f"base_url {base_url!r} has a path ({url.path!r}): give the API's origin only, "
            f"as in '{url.scheme}://{url.netloc.decode()}'; the client adds the paths"
        )
    return str(url).rstrip("/")


def check_plain_http(base_url: str, transport: object, allowed: bool) -> None:
    """Refuse ``http://`` to a remote host (the key would cross the network in clear),
    unless the caller opted in or the transport never leaves the process."""
    url = httpx.URL(base_url)
    in_process = isinstance(transport, (httpx.ASGITransport, httpx.MockTransport))
    if url.scheme == "http" and not (allowed or in_process or is_local_host(url.host)):
        raise ConfigurationError(
            f"base_url {base_url!r} is plain http to a host that is not this machine: "
            "the API key would cross the network unencrypted. Use https://, or pass "
            "allow_plain_http=True if you really mean it (a proxy on a trusted network)"
        )


_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no whitespace
