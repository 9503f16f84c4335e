"""Redis stays bounded: reported sessions expire after the retention period, timelines are
capped, ledger books expire after their payment's last reservation. Real redis-server."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from sessions.change import LedgerVerdict
from sessions.claims import Claimed, Claims
from sessions.keys import (
    EXPIRING,
    INDEX_CREATED,
    TIMELINE_MAX_EVENTS,
    session_key,
    timeline_key,
)
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore, ledger_keys
from sessions.models import Op, Outcome
from sessions.states import Event
from sessions.store import SessionStore
from tests.factories import RedisDb, change_to, make_session, received_event

DB = 9
RETENTION = 1  # second


@pytest.fixture
async def redis(redis_db: RedisDb) -> Redis:
    return await redis_db(DB)


async def created(store: SessionStore, **fields: object) -> str:
    session = make_session(**fields)
    await store.create(session, received_event(), due_at=0, queue=False)
    return session.id


async def reported(redis: Redis, store: SessionStore, claims: Claims) -> str:
    session_id = await created(store)
    claim = await claims.claim(session_id, now=time.time(), lease_seconds=30)
    assert isinstance(claim, Claimed)
    now = time.time()
    await claims.apply(session_id, claim.fence, change_to(Event.PSP_SETTLED, at=now), release=False)
    await claims.apply(session_id, claim.fence, change_to(Event.REPORTED, at=now), release=True)
    return session_id


async def test_a_reported_session_expires_with_its_timeline_and_leaves_the_listing(
    redis: Redis,
) -> None:
    store, claims = SessionStore(redis), Claims(redis, retention_seconds=RETENTION)
    done = await reported(redis, store, claims)
    unfinished = await created(store)
    failing = await created(store)
    to_fail = await store.get(failing)
    assert to_fail is not None
    await store.change(to_fail, change_to(Event.FAILED, at=time.time()))
    assert await redis.ttl(session_key(done)) > 0
    assert await redis.ttl(timeline_key(done)) > 0

    await asyncio.sleep(RETENTION + 1.2)
    assert await store.get(done) is None
    assert await store.timeline(done) == []
    assert (await store.prune_expired(time.time(), limit=100)).dropped == 1
    assert await redis.zscore(INDEX_CREATED, done) is None
    assert await redis.zcard(EXPIRING) == 0
    # Work still to do, or an operator's to look at, never expires.
    for kept in (unfinished, failing):
        assert await store.get(kept) is not None
        assert await redis.ttl(session_key(kept)) == -1
        assert await redis.zscore(INDEX_CREATED, kept) is not None


async def test_a_timeline_keeps_its_newest_events_up_to_the_cap(redis: Redis) -> None:
    store = SessionStore(redis)
    session_id = await created(store)
    session = await store.get(session_id)
    assert session is not None
    for attempt in range(TIMELINE_MAX_EVENTS + 50):
        await store.change(session, change_to(Event.PSP_RETRY, at=float(attempt)))
    events = await store.timeline(session_id)
    assert len(events) == TIMELINE_MAX_EVENTS
    assert events[-1].at == float(TIMELINE_MAX_EVENTS + 49)


async def test_a_ledger_book_expires_after_its_last_reservation(redis: Redis) -> None:
    ledger = LedgerStore(redis, retention_seconds=3600)
    store, claims = SessionStore(redis), Claims(redis)
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=False)
    session_id, payment = session.id, session.payment_id
    await ledger.open(payment, Book(currency="EUR", authorized=5000))
    await ledger.reserve(payment, session_id, Op.CAPTURE, 1000, "EUR", time.time())
    claim = await claims.claim(session_id, now=time.time(), lease_seconds=30)
    assert isinstance(claim, Claimed)
    settle = replace(
        change_to(Event.PSP_SETTLED, at=time.time(), outcome=Outcome.APPROVED),
        ledger=LedgerVerdict(payment, approved=True),
    )
    await claims.apply(session_id, claim.fence, settle, release=True)

    book_key, _, settled_key = ledger_keys(payment)
    assert 3500 < await redis.ttl(book_key) <= 3600
    assert 3500 < await redis.ttl(settled_key) <= 3600
    book = await ledger.get(payment)
    assert book is not None
    assert book.captured == 1000
