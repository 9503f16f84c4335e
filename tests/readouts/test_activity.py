"""The last hour's throughput and latency, read from the indexes the store keeps."""

from __future__ import annotations

import fakeredis
import pytest

from readouts.activity import BUCKETS, LATENCY_SAMPLE, last_hour
from sessions.keys import EXPIRING, FAILED, INDEX_CREATED, session_key

NOW = 1_800_000_000.0
RETENTION = 30 * 86400


async def reported(
    redis: fakeredis.FakeAsyncRedis, session_id: str, created: float, at: float
) -> None:
    await redis.zadd(INDEX_CREATED, {session_id: created})
    await redis.hset(session_key(session_id), mapping={"created_at": repr(created)})
    await redis.zadd(EXPIRING, {session_id: at + RETENTION})


async def test_each_bucket_counts_what_was_received_reported_and_failed_in_it(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await reported(redis, "a", NOW - 100, NOW - 98)
    await reported(redis, "b", NOW - 100, NOW - 90)
    await reported(redis, "c", NOW - 100, NOW - 60)
    await redis.zadd(INDEX_CREATED, {"old": NOW - 7200, "first": NOW - 3599})
    await redis.zadd(FAILED, {"f": NOW - 3590})
    activity = await last_hour(redis, NOW, retention_seconds=RETENTION)
    assert len(activity.buckets) == BUCKETS
    first, last = activity.buckets[0], activity.buckets[-1]
    assert (first.received, first.reported, first.failed) == (1, 0, 1)
    assert first.latency_p50 is None
    assert (last.received, last.reported, last.failed) == (3, 3, 0)
    assert last.latency_p50 == 10.0
    assert last.latency_max == 40.0
    assert activity.totals == (4, 3, 1)


async def test_latency_reads_a_bounded_sample_and_skips_expired_sessions(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    for i in range(LATENCY_SAMPLE + 20):
        await reported(redis, f"s{i}", NOW - 200, NOW - 100 + i * 0.1)
    await redis.zadd(EXPIRING, {"gone": NOW - 150 + RETENTION})
    activity = await last_hour(redis, NOW, retention_seconds=RETENTION)
    last = activity.buckets[-1]
    assert last.reported == LATENCY_SAMPLE + 21
    # The first 50 by report time: the one whose data expired, then s0 … s48.
    assert last.latency_p50 == pytest.approx(100.0 + 24 * 0.1)
    assert last.latency_max == pytest.approx(100.0 + 48 * 0.1)
