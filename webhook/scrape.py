"""What a scrape of the web's metrics reads from Redis, read once for every scrape that asks
at about the same time.

The gauges cost Redis a few O(log n) commands (`readouts.stats`: the due summary comes from
indexes the write scripts keep), but while a store from before those indexes is being
indexed the summary is a script over up to 5,000 due sessions, which holds Redis for tens of
milliseconds; every scraper (Prometheus replicas, dashboards, ad hoc curls) asking for its
own read would put that on the intake's path once per scrape. Concurrent scrapes share one
read in flight, and a read is reused for `GAUGES_FRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from redis.asyncio import Redis

from readouts.stats import DueSummary, due_summary, failed_by_kind
from transport.messages import QUEUE

# Prometheus gives up on a scrape after 10 s by default; the Redis part stays well inside.
SCRAPE_TIMEOUT_SECONDS = 3.0
# Shorter than any scrape interval worth running, so no scraper sees another's old figures.
GAUGES_FRESH_SECONDS = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class GaugeReading:
    queue: int
    due: DueSummary
    failed: dict[str, int]


async def read_gauges(redis: Redis) -> GaugeReading:
    async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
        queue = await redis.llen(QUEUE)
        due = await due_summary(redis, time.time())
        failed = await failed_by_kind(redis)
    return GaugeReading(int(queue), due, failed)


class Coalesced(Generic[T]):
    """`compute` run once for every caller that asks while it runs, and its result handed
    out again until it is `fresh_for` seconds old. A failure is every waiter's, and the next
    caller tries again."""

    def __init__(
        self,
        compute: Callable[[], Awaitable[T]],
        *,
        fresh_for: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._fresh_for = fresh_for
        self._clock = clock
        self._last: tuple[float, T] | None = None
        self._running: asyncio.Task[T] | None = None

    async def get(self) -> T:
        if self._last is not None and self._clock() - self._last[0] < self._fresh_for:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._refresh())
            # Every waiter may have given up: the outcome is still looked at, never left.
            self._running.add_done_callback(_observed)
        # Shielded: one caller giving up (a scraper's timeout) does not cancel the others'.
        return await asyncio.shield(self._running)

    async def _refresh(self) -> T:
        try:
            value = await self._compute()
            self._last = (self._clock(), value)
            return value
        finally:
            self._running = None

    async def close(self) -> None:
        """Stop a computation still running (the app is shutting down)."""
        running, self._running = self._running, None
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


def _observed(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()
