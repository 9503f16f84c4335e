"""The last hour at a glance: sessions received, reported and failed per minute, and how long
reported ones took, read from the indexes the store already keeps at a bounded cost.

- received: `idx:created`, scored by creation time;
- reported: `idx:expiring`, scored by the time a reported session's data expires, which is
  the moment it was reported plus the retention period;
- failed: `idx:failed`, scored by failure time (a session replayed since has left it).

Counting is one `ZCOUNT` per bucket and index. Latency (received to reported) reads
`created_at` of at most `LATENCY_SAMPLE` reported sessions per bucket, the first ones of it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from redis.asyncio import Redis

from sessions.keys import EXPIRING, FAILED, INDEX_CREATED, session_key, text

WINDOW_SECONDS = 3600
BUCKETS = 12
LATENCY_SAMPLE = 50


@dataclass(frozen=True)
class Bucket:
    start: float
    received: int
    reported: int
    failed: int
    # Received to reported, over the sample; None when nothing was reported in the bucket.
    latency_p50: float | None
    latency_max: float | None


@dataclass(frozen=True)
class Activity:
    buckets: list[Bucket]
    seconds: float  # width of one bucket

    @property
    def totals(self) -> tuple[int, int, int]:
        return (
            sum(b.received for b in self.buckets),
            sum(b.reported for b in self.buckets),
            sum(b.failed for b in self.buckets),
        )


async def last_hour(redis: Redis, now: float, *, retention_seconds: int) -> Activity:
    width = WINDOW_SECONDS / BUCKETS
    starts = [now - WINDOW_SECONDS + i * width for i in range(BUCKETS)]
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            low, high = repr(start), f"({start + width!r}"
            pipe.zcount(INDEX_CREATED, low, high)
            pipe.zcount(FAILED, low, high)
            shifted_low = repr(start + retention_seconds)
            shifted_high = f"({start + width + retention_seconds!r}"
            pipe.zcount(EXPIRING, shifted_low, shifted_high)
            pipe.zrangebyscore(
                EXPIRING,
                shifted_low,
                shifted_high,
                start=0,
                num=LATENCY_SAMPLE,
                withscores=True,
            )
        replies = await pipe.execute()
    samples: list[list[tuple[str, float]]] = []
    for i in range(BUCKETS):
        rows = replies[4 * i + 3]
        samples.append([(text(member), float(score) - retention_seconds) for member, score in rows])
    async with redis.pipeline(transaction=False) as pipe:
        for rows in samples:
            for session_id, _ in rows:
                pipe.hget(session_key(session_id), "created_at")
        created = iter(await pipe.execute())
    buckets = []
    for i, start in enumerate(starts):
        waits = []
        for _, reported_at in samples[i]:
            raw = next(created)
            # Expired between the two reads: nothing to measure.
            if raw is not None:
                waits.append(max(0.0, reported_at - float(text(raw))))
        buckets.append(
            Bucket(
                start=start,
                received=int(replies[4 * i]),
                failed=int(replies[4 * i + 1]),
                reported=int(replies[4 * i + 2]),
                latency_p50=statistics.median(waits) if waits else None,
                latency_max=max(waits) if waits else None,
            )
        )
    return Activity(buckets, width)
