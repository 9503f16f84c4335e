"""The sweeper keeps the listing index bounded whatever the report rate: one sweep prunes
every expired session, in short batches, within its time budget. Real redis-server: the
pruning rests on Redis's own key expiry."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from readouts.stats import due_summary
from sessions.claims import Claimed, Claims
from sessions.keys import DUE, DUE_INDEXED, EXPIRING, INDEX_CREATED, PENDING, WORKABLE, session_key
from sessions.states import Event
from sessions.store import SessionStore
from tests.factories import RedisDb, change_to, make_session, received_event
from workers.sweeper import sweep

DB = 7
BATCH = 50
RETENTION = 1  # second


@pytest.fixture
async def redis(redis_db: RedisDb) -> Redis:
    return await redis_db(DB)


async def reported(store: SessionStore, claims: Claims, count: int) -> list[str]:
    """`count` sessions taken through to reported, the way a worker writes them."""
    ids = []
    for _ in range(count):
        session = make_session()
        await store.create(session, received_event(), due_at=0, queue=False)
        now = time.time()
        claim = await claims.claim(session.id, now=now, lease_seconds=30)
        assert isinstance(claim, Claimed)
        await claims.apply(session.id, claim.fence, change_to(Event.PSP_SETTLED, at=now))
        done = change_to(Event.REPORTED, at=now)
        await claims.apply(session.id, claim.fence, done, release=True)
        ids.append(session.id)
    return ids


async def listed(redis: Redis, ids: list[str]) -> int:
    scores = await redis.zmscore(INDEX_CREATED, ids)
    return sum(score is not None for score in scores)


async def test_one_sweep_prunes_every_expired_session_however_many_batches_that_takes(
    redis: Redis,
) -> None:
    store, claims = SessionStore(redis), Claims(redis, retention_seconds=RETENTION)
    # More than three batches: at 200 reports/s a 5 s sweep finds 1,000, twice its batch.
    gone = await reported(store, claims, 3 * BATCH + 7)
    await asyncio.sleep(RETENTION + 1.2)

    await sweep(store, now=time.time(), limit=BATCH, hold_for=30, prune_seconds=5)

    assert await listed(redis, gone) == 0
    assert await redis.zcard(EXPIRING) == 0


async def test_the_time_budget_bounds_one_sweep_and_the_next_sweep_goes_on(
    redis: Redis,
) -> None:
    store, claims = SessionStore(redis), Claims(redis, retention_seconds=RETENTION)
    gone = await reported(store, claims, 2 * BATCH + 7)
    await asyncio.sleep(RETENTION + 1.2)

    # A spent budget still prunes one batch: the index never stops shrinking.
    await sweep(store, now=time.time(), limit=BATCH, hold_for=30, prune_seconds=0)
    assert await listed(redis, gone) == BATCH + 7
    await sweep(store, now=time.time(), limit=BATCH, hold_for=30, prune_seconds=5)
    assert await listed(redis, gone) == 0


async def test_a_session_listed_as_expiring_before_its_data_expires_does_not_stall_pruning(
    redis: Redis,
) -> None:
    """A worker whose clock runs behind Redis's scores a reported session's expiry early: the
    sweeper finds it due while its data is still there. A batch of those at the head of the
    expiring index must not stop the expired ones behind it from leaving the listing."""
    store = SessionStore(redis)
    still_there = await reported(store, Claims(redis, retention_seconds=3600), BATCH)
    early = time.time() - 3600
    await redis.zadd(EXPIRING, {session_id: early for session_id in still_there})
    gone = await reported(store, Claims(redis, retention_seconds=RETENTION), BATCH + 7)
    await asyncio.sleep(RETENTION + 1.2)

    await sweep(store, now=time.time(), limit=BATCH, hold_for=30, prune_seconds=5)

    assert await listed(redis, gone) == 0
    # Still kept, and listed as expiring when Redis will in fact expire it.
    assert await listed(redis, still_there) == BATCH
    scores = await redis.zmscore(EXPIRING, still_there)
    assert all(score is not None and score > time.time() + 3000 for score in scores)


async def test_sweeps_index_a_store_from_before_the_due_index_a_batch_at_a_time(
    redis: Redis,
) -> None:
    store = SessionStore(redis)
    now = time.time()
    for age in range(300):
        session = make_session(created_at=now - 1_000 - age, updated_at=now)
        await store.create(session, received_event(now), due_at=now + 3_600, queue=False)
    # As a version without the indexes left the store.
    await redis.delete(WORKABLE, PENDING, DUE_INDEXED)
    assert not (await due_summary(redis, now)).indexed

    # No budget left: each sweep indexes one batch, and the next one goes on from there.
    sweeps = 0
    while not (await due_summary(redis, now)).indexed:
        await sweep(store, now=now, limit=BATCH, hold_for=30, prune_seconds=0)
        sweeps += 1
        assert sweeps < 30
    assert sweeps > 1
    assert await redis.zcard(WORKABLE) == 300
    summary = await due_summary(redis, now)
    assert summary.oldest_unfinished_seconds == pytest.approx(1_299, abs=1)


async def test_a_due_index_key_of_another_type_is_logged_and_the_sweep_still_queues(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = SessionStore(redis)
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=False)
    # Another writer's list where the index build keeps its place: the index upkeep stops
    # there, and the sweep's own work (queueing what is due), done first, stands.
    await redis.delete(DUE_INDEXED)
    await redis.rpush(DUE_INDEXED, "not a string")
    with caplog.at_level("ERROR", logger="payhook.sweeper"):
        await sweep(store, now=time.time(), limit=100, hold_for=30, prune_seconds=0.1)
    # Re-kicked: held a lease ahead in the due set (this store queues no message).
    assert (await redis.zscore(DUE, session.id) or 0) > time.time() + 20
    assert any(r.getMessage() == "due index not kept" for r in caplog.records), caplog.text
    assert await redis.lrange(DUE_INDEXED, 0, -1) == [b"not a string"]


async def test_a_due_summary_index_of_another_type_does_not_stop_the_re_kicks(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = SessionStore(redis)
    session, vanished = make_session(), make_session()
    await store.create(session, received_event(), due_at=0, queue=False)
    await store.create(vanished, received_event(), due_at=0, queue=False)
    await redis.delete(session_key(vanished.id))
    # A string where the workable index belongs: only the indexes' upkeep is at stake, so the
    # due session is still re-kicked, and the vanished one's due entry still dropped.
    await redis.delete(WORKABLE)
    await redis.set(WORKABLE, "not a sorted set")
    with caplog.at_level("ERROR", logger="payhook"):
        await sweep(store, now=time.time(), limit=100, hold_for=30, prune_seconds=0.1)
    assert (await redis.zscore(DUE, session.id) or 0) > time.time() + 20
    assert await redis.zscore(DUE, vanished.id) is None
    assert await redis.get(WORKABLE) == b"not a sorted set"
    assert any(r.getMessage() == "due index not kept" for r in caplog.records), caplog.text
