"""Retry policy as data: a ladder of ceilings, full jitter, and an attempt cap.

The delay before attempt n+1 is drawn uniformly from [0, ladder[n-1]] (the last step
repeats), so a crowd of sessions that failed together spreads out instead of returning to
a recovering peer in lockstep. A peer's own `Retry-After` (or GraphQL throttle wait) is a
floor, but only up to the ladder's top step: a peer asking for more than that would decide
alone when a session is looked at again (`Retry-After: 1e12` would park it for good), so it
gets the top step, and the round's attempt cap and deadline still end it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

# A header longer than any real date or number is garbage, not worth parsing.
_MAX_HEADER_CHARS = 64


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from `now` that a `Retry-After` header asks for; None when it says nothing usable.

    Both forms of RFC 9110 are read: delta-seconds (leniently, as a decimal number) and an
    HTTP-date (a date already past means now). Negative, NaN, infinite and unparsable values
    are None, so the ladder's own delay applies; the policy caps what is left.
    """
    if value is None or len(value) > _MAX_HEADER_CHARS:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_date(text, now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until_date(text: str, now: float) -> float | None:
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the asctime form carries no zone: it is GMT
    return max(0.0, moment.timestamp() - now)


def usable_wait(seconds: float | None) -> float | None:
    """A peer's wait as a number of seconds, or None when it is negative, NaN or infinite."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    ladder: tuple[float, ...]
    max_attempts: int
    # Keep trying at least this long after the first attempt of a round, whatever the
    # attempt count says (jitter makes the ladder's own length a matter of chance).
    deadline_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.ladder or any(step < 0 for step in self.ladder):
            raise ValueError("a retry ladder needs at least one step, none negative")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.deadline_seconds < 0:
            raise ValueError("deadline_seconds cannot be negative")

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after the `attempt`-th failed attempt (1-based)."""
        index = min(max(attempt, 1), len(self.ladder)) - 1
        return self.ladder[index]

    def exhausted(self, attempt: int, elapsed: float = 0.0) -> bool:
        """True when, after `attempt` failures spanning `elapsed` seconds, we give up.

        Both the attempt cap and the deadline must have passed: the cap alone would let a
        run of short jittered waits end the ladder early, the deadline alone would let a
        fast-failing peer be hammered without bound.
        """
        return attempt >= self.max_attempts and elapsed >= self.deadline_seconds

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        jittered = self.ceiling(attempt) * rand()
        asked = usable_wait(retry_after)
        if asked is None:
            return jittered
        return max(jittered, min(asked, max(self.ladder)))
