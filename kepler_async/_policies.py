"""Small pure policies the I/O loops call: backoff delays and ``Retry-After``.

Nothing here sleeps or sends; tables in ``tests/engine/test_policies.py`` pin them down.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import attrs

from kepler_async._exceptions import ConfigurationError

__all__ = [
    "DEFAULT",
    "MIN_POLL_INTERVAL",
    "PollPolicy",
    "RetryPolicy",
    "UseDefault",
    "backoff_delay",
    "check_deadline",
    "check_seconds",
    "parse_retry_after",
]


#: The shortest interval between two polls of one job a policy may ask for (seconds):
#: short enough for a simulator sped up 1,000 times, long enough that a slip (``cap=0``)
#: cannot poll one job thousands of times a second.
MIN_POLL_INTERVAL = 0.001


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_seconds(name: str, value: object, *, minimum: float = 0.0, above: bool = False) -> float:
    """``value`` as a finite float of at least ``minimum`` (more than it, if ``above``),
    or ``ConfigurationError`` (a ``ValueError``) naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ConfigurationError(f"{name} is too large to be a number of seconds") from None
    if math.isnan(number) or math.isinf(number):
        raise ConfigurationError(f"{name} must be a finite number, got {_shown(value)}")
    if number < minimum or (above and number == minimum):
        relation = ">" if above else ">="
        raise ConfigurationError(f"{name} must be {relation} {minimum:g}, got {_shown(value)}")
    return number


def _finite_non_negative(
    name: str, minimum: float = 0.0
) -> Callable[[object, attrs.Attribute[float], float], None]:
    def check(_: object, __: attrs.Attribute[float], value: float) -> None:
        check_seconds(name, value, minimum=minimum)

    return check


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How the HTTP layer retries a transient failure (connect error, timeout, 5xx).

    ``attempts`` counts every try, the first included: ``attempts=1`` never retries.
    Delays grow ``initial * multiplier**n`` up to ``cap``, with full jitter of
    ``jitter`` (0.5 means anywhere from 50 % to 100 % of the nominal delay). A
    ``Retry-After`` from the server wins when it is longer, up to ``max_retry_after``.
    """

    attempts: int = attrs.field(default=3)
    initial: float = attrs.field(default=0.5, validator=_finite_non_negative("initial"))
    multiplier: float = attrs.field(default=2.0, validator=_finite_non_negative("multiplier"))
    cap: float = attrs.field(default=8.0, validator=_finite_non_negative("cap"))
    jitter: float = attrs.field(default=0.5, validator=_finite_non_negative("jitter"))
    max_retry_after: float = attrs.field(
        default=60.0, validator=_finite_non_negative("max_retry_after")
    )

    @attempts.validator
    def _check_attempts(self, _: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"attempts must be an integer >= 1, got {_shown(value)}")

    @jitter.validator
    def _check_jitter(self, _: attrs.Attribute[float], value: float) -> None:
        if value > 1:
            raise ConfigurationError(f"jitter must be between 0 and 1, got {value!r}")

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        nominal = backoff_delay(
            retry - 1,
            initial=self.initial,
            multiplier=self.multiplier,
            cap=self.cap,
            jitter=self.jitter,
            rand=rand,
        )
        if retry_after is not None:
            return max(nominal, min(retry_after, self.max_retry_after))
        return nominal


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    multiplier: float,
    cap: float,
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """``min(cap, initial * multiplier**attempt)``, reduced by up to ``jitter`` of itself.

    ``attempt`` starts at 0. ``rand`` returns a float in [0, 1); the result lies in
    ``[nominal * (1 - jitter), nominal]``, so it never exceeds ``cap``.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    try:
        nominal = min(cap, initial * multiplier**attempt)
    except OverflowError:
        nominal = cap
    return nominal * (1.0 - jitter * rand())


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date.

    Returns None when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def check_deadline(value: object) -> float | None:
    """A deadline in seconds (> 0), or None for none; ``ConfigurationError`` otherwise."""
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value):
        raise ConfigurationError("deadline must be finite: pass None for no deadline")
    return check_seconds("deadline", value, above=True)


def _optional_deadline(_: object, __: attrs.Attribute[Any], value: Any) -> None:
    check_deadline(value)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """When to poll one job: exponential backoff with jitter, and a real deadline.

    The first poll comes ``first_delay`` seconds after the job was accepted; each next
    one ``interval * multiplier**n`` later, capped at ``cap``, each delay reduced by up
    to ``jitter`` of itself so that jobs started together spread out. ``deadline``
    (seconds from acceptance, None for none) is a hard stop: the last poll happens at
    the deadline, then the handle fails with ``DeadlineExceeded``.

    Transient errors (timeouts, connect errors, 5xx) are retried on the same schedule.

    ``PollPolicy()`` is the Kepler client's own default (``kepler_async.KEPLER_POLICY``):
    Kepler's runs take 25-90 s, so the first poll waits until a few could be done; then
    polls come every ~4.3 s (near the documented 5 s), growing 1 % a poll for the long
    tail (about 0.63x the polls of the documented 5 s loop at a slightly lower mean
    detection delay: benchmarks/polling_efficiency.py). Change what you need:
    ``PollPolicy(deadline=60)``. The other APIs' clients have their vendors' own.
    """

    first_delay: float = attrs.field(default=32.0, validator=_finite_non_negative("first_delay"))
    interval: float = attrs.field(
        default=4.3, validator=_finite_non_negative("interval", MIN_POLL_INTERVAL)
    )
    multiplier: float = attrs.field(default=1.01, validator=_finite_non_negative("multiplier"))
    cap: float = attrs.field(default=10.0, validator=_finite_non_negative("cap", MIN_POLL_INTERVAL))
    jitter: float = attrs.field(default=0.05, validator=_finite_non_negative("jitter"))
    deadline: float | None = attrs.field(default=180.0, validator=_optional_deadline)
    #: Learn the API's job durations and poll when a poll is likely to find the job
    #: done (see ``_adaptive``); until enough jobs have finished, plain backoff.
    adaptive: bool = False

    @jitter.validator
    def _check_jitter(self, _: attrs.Attribute[float], value: float) -> None:
        if value > 1:
            raise ConfigurationError(f"jitter must be between 0 and 1, got {value!r}")

    @multiplier.validator
    def _check_multiplier(self, _: attrs.Attribute[float], value: float) -> None:
        if value < 1:
            raise ConfigurationError(f"multiplier must be >= 1, got {value!r}")

    @cap.validator
    def _check_cap(self, _: attrs.Attribute[float], value: float) -> None:
        if value < self.interval:
            raise ConfigurationError(
                f"cap ({value:g}) must be >= interval ({self.interval:g}): the delay grows "
                "from interval up to cap"
            )

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before poll number ``attempt + 1`` (``attempt`` 0 is the first poll)."""
        if attempt == 0:
            return self.first_delay * (1.0 - self.jitter * rand())
        return backoff_delay(
            attempt - 1,
            initial=self.interval,
            multiplier=self.multiplier,
            cap=self.cap,
            jitter=self.jitter,
            rand=rand,
        )

    def scaled(self, factor: float) -> PollPolicy:
        """This policy with every duration multiplied by ``factor``; intervals never go
        below ``MIN_POLL_INTERVAL``. For a simulator that runs faster than the API:
        ``KeplerSimulator(time_scale=0.01)`` (or ``kepler-async simulate --time-scale
        0.01``) is polled at the same pace with ``KEPLER_POLICY.scaled(0.01)``."""
        check_seconds("factor", factor, above=True)
        return attrs.evolve(
            self,
            first_delay=self.first_delay * factor,
            interval=max(MIN_POLL_INTERVAL, self.interval * factor),
            cap=max(MIN_POLL_INTERVAL, self.cap * factor),
            deadline=None if self.deadline is None else self.deadline * factor,
        )

    def with_deadline(self, deadline: float | None) -> PollPolicy:
        """This policy with another deadline (validated)."""
        return attrs.evolve(self, deadline=deadline)


class UseDefault:
    """The type of ``DEFAULT``: "use the client's poll policy deadline"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


#: ``deadline=DEFAULT``: the client's policy deadline (``None`` means no deadline at all).
DEFAULT = UseDefault()
