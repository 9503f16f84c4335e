"""Shopify's calculated query cost: a leaky bucket reported in `extensions.cost`.

The numbers (1000 points, 50 restored per second, 10 per mutation) match what Shopify
has shown for the Payments Apps API (notes §4.4). The bucket is reported honestly but
never refuses a call by itself: throttling comes only from a `throttled` fault rule, so
tests decide exactly when it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MUTATION_COST = 10
QUERY_COST = 1


class ThrottleBucket:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        maximum: float = 1000.0,
        restore_rate: float = 50.0,
    ) -> None:
        self._clock = clock
        self.maximum = maximum
        self.restore_rate = restore_rate
        self._available = maximum
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._available = min(self.maximum, self._available + (now - self._at) * self.restore_rate)
        self._at = now

    def charge(self, cost: int) -> dict[str, Any]:
        """Spend `cost` points and return the `extensions.cost` block for the answer."""
        self._refill()
        self._available = max(0.0, self._available - cost)
        return self._report(requested=cost, actual=cost, available=self._available)

    def throttled(self, requested: int) -> dict[str, Any]:
        """The cost block of a Throttled answer: nothing spent, nothing available."""
        self._refill()
        return self._report(requested=requested, actual=None, available=0.0)

    def reset(self) -> None:
        self._available = self.maximum
        self._at = self._clock()

    def _report(self, *, requested: int, actual: int | None, available: float) -> dict[str, Any]:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.maximum,
                "currentlyAvailable": round(available, 1),
                "restoreRate": self.restore_rate,
            },
        }
