"""Learning how long jobs take, to poll when a poll is worth it (pure, no I/O).

``DurationModel`` keeps a uniform sample (a reservoir) of the job durations seen so far:
not the latest ones, because jobs submitted together finish shortest first, so a window
of the latest would be all long jobs by the end of a batch. Once it has enough, it
plans each job's next poll at the age by which a fixed share (``share``) of
the jobs still running at the current age have finished, going by the samples. For a
uniform 25-90 s distribution that means no poll before ~30 s, then gaps that shrink as
the end of the range nears (where each poll is likely to find the job done). Past the
slowest durations seen, and before it has learnt enough, it says None: the caller then
uses its ordinary backoff.
"""

from __future__ import annotations

import bisect
import math
import random

__all__ = ["DurationModel"]


class DurationModel:
    """A sliding sample of job durations (seconds) and the poll plan they imply."""

    def __init__(
        self, *, window: int = 512, min_samples: int = 20, share: float = 0.10, seed: int = 0
    ) -> None:
        if window < min_samples or min_samples < 1:
            raise ValueError("need window >= min_samples >= 1")
        if not 0 < share < 1:
            raise ValueError("share must be between 0 and 1")
        self._window = window
        self._min_samples = min_samples
        self._share = share
        self._sample: list[float] = []  # in arrival order, for replacement
        self._sorted: list[float] = []
        self._seen = 0
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self._sorted)

    @property
    def ready(self) -> bool:
        return len(self._sorted) >= self._min_samples

    def observe(self, duration: float) -> None:
        """Add one duration (reservoir sampling once ``window`` are held)."""
        if not (duration >= 0 and math.isfinite(duration)):
            return
        self._seen += 1
        if len(self._sample) < self._window:
            self._sample.append(duration)
            bisect.insort(self._sorted, duration)
            return
        slot = self._rng.randrange(self._seen)
        if slot < self._window:
            old, self._sample[slot] = self._sample[slot], duration
            del self._sorted[bisect.bisect_left(self._sorted, old)]
            bisect.insort(self._sorted, duration)

    def _survival(self, age: float) -> float:
        """Share of sampled jobs still running at ``age``."""
        return 1.0 - bisect.bisect_right(self._sorted, age) / len(self._sorted)

    def _age_at_survival(self, survival: float) -> float:
        index = min(len(self._sorted) - 1, max(0, math.ceil((1.0 - survival) * len(self._sorted))))
        return self._sorted[index]

    def next_age(self, age: float, *, min_gap: float) -> float | None:
        """The age for the next poll of a job ``age`` seconds old, or None to back off."""
        if not self.ready:
            return None
        survival = self._survival(age)
        if survival <= 1.0 / len(self._sorted):
            return None  # older than nearly every job seen: the tail is unknown
        target = self._age_at_survival(survival * (1.0 - self._share))
        return max(age + min_gap, target)
