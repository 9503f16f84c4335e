"""Retry policy as data: a ladder of ceilings, full jitter, and an attempt cap.

The delay before attempt n+1 is drawn uniformly from [0, ladder[n-1]] (the last step
repeats), so a crowd of sessions that failed together spreads out instead of returning to
a recovering peer in lockstep. A peer's own `Retry-After` (or GraphQL throttle wait) is a
floor: we never come back sooner than it asked.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


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
        if retry_after is not None:
            return max(jittered, retry_after)
        return jittered
