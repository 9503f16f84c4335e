"""Claims, leases and fencing against fakeredis: the rules that keep two workers apart."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest

from errors import LeaseLost, StoreCorrupt
from sessions.change import Change, LedgerVerdict
from sessions.claims import Claimed, Claims, NotClaimed, Refusal
from sessions.keys import DUE, PENDING, WORKABLE
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Op, Outcome
from sessions.states import Event, State
from sessions.store import SessionStore
from tests.factories import change_to, make_session, received_event


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> SessionStore:
    return SessionStore(redis)


@pytest.fixture
def claims(redis: fakeredis.FakeAsyncRedis) -> Claims:
    return Claims(redis)


async def stored(store: SessionStore, **fields: object) -> str:
    session = make_session(**fields)
    await store.create(session, received_event(), due_at=0, queue=False)
    return session.id


async def claim(claims: Claims, session_id: str, lease: float = 30.0) -> Claimed:
    got = await claims.claim(session_id, now=time.time(), lease_seconds=lease)
    assert isinstance(got, Claimed), got
    return got


async def test_a_claim_takes_a_fresh_token_counts_the_delivery_and_marks_it_in_flight(
    store: SessionStore, claims: Claims
) -> None:
    session_id = await stored(store)
    first = await claim(claims, session_id)
    assert first.fence > 0
    assert (first.session.deliveries, first.session.inflight) == (1, None)
    after = await store.get(session_id)
    assert after is not None
    assert after.inflight is State.RECEIVED


async def test_a_delivery_for_a_leased_session_does_nothing_and_is_not_counted(
    store: SessionStore, claims: Claims
) -> None:
    session_id = await stored(store)
    held = await claim(claims, session_id)
    for _ in range(5):
        busy = await claims.claim(session_id, now=time.time(), lease_seconds=30)
        assert busy == NotClaimed(Refusal.BUSY, State.RECEIVED)
    after = await store.get(session_id)
    assert after is not None
    assert (after.deliveries, after.fence) == (1, held.fence)


async def test_a_delivery_before_the_backoff_ends_does_nothing(
    store: SessionStore, claims: Claims
) -> None:
    now = time.time()
    session_id = await stored(store, state=State.SETTLING, not_before=now + 60)
    early = await claims.claim(session_id, now=now, lease_seconds=30)
    assert early == NotClaimed(Refusal.EARLY, State.SETTLING)
    assert isinstance(await claims.claim(session_id, now=now + 61, lease_seconds=30), Claimed)
    after = await store.get(session_id)
    assert after is not None
    assert after.deliveries == 1


@pytest.mark.parametrize("state", [State.REPORTED, State.FAILED])
async def test_a_finished_session_is_not_claimed(
    store: SessionStore, claims: Claims, state: State
) -> None:
    session_id = await stored(store, state=state)
    assert await claims.claim(session_id, now=time.time(), lease_seconds=30) == NotClaimed(
        Refusal.FINISHED, state
    )


async def test_a_pending_payment_is_claimed_only_once_its_window_closes(
    store: SessionStore, claims: Claims
) -> None:
    now = time.time()
    session_id = await stored(
        store, state=State.PENDING, outcome=Outcome.PENDING, pending_expires_at=now + 100
    )
    assert await claims.claim(session_id, now=now, lease_seconds=30) == NotClaimed(
        Refusal.EARLY, State.PENDING
    )
    assert isinstance(await claims.claim(session_id, now=now + 100, lease_seconds=30), Claimed)


async def test_a_holder_whose_lease_was_taken_over_writes_nothing(
    store: SessionStore, claims: Claims
) -> None:
    session_id = await stored(store)
    stale = await claim(claims, session_id, lease=0.05)
    await asyncio.sleep(0.1)  # the holder paused past its lease
    fresh = await claim(claims, session_id)
    assert fresh.fence > stale.fence
    before = await store.timeline(session_id)
    with pytest.raises(LeaseLost):
        await claims.apply(session_id, stale.fence, change_to(Event.PSP_SETTLED))
    assert not await claims.renew(session_id, stale.fence, lease_seconds=30, now=time.time())
    await claims.release(session_id, stale.fence)  # not the holder: no effect
    assert await claims.claim(session_id, now=time.time(), lease_seconds=30) == NotClaimed(
        Refusal.BUSY, State.RECEIVED
    )
    assert await store.timeline(session_id) == before
    await claims.apply(session_id, fresh.fence, change_to(Event.PSP_RETRY), release=True)
    assert isinstance(await claims.claim(session_id, now=time.time(), lease_seconds=30), Claimed)


async def test_a_lapsed_lease_nobody_took_over_is_still_the_holders(
    store: SessionStore, claims: Claims
) -> None:
    session_id = await stored(store)
    held = await claim(claims, session_id, lease=0.05)
    await asyncio.sleep(0.1)
    assert await claims.renew(session_id, held.fence, lease_seconds=30, now=time.time())
    assert await claims.claim(session_id, now=time.time(), lease_seconds=30) == NotClaimed(
        Refusal.BUSY, State.RECEIVED
    )
    await claims.apply(session_id, held.fence, change_to(Event.PSP_RETRY))


async def test_the_outcome_and_its_ledger_settlement_are_one_write(
    store: SessionStore, claims: Claims, redis: fakeredis.FakeAsyncRedis
) -> None:
    ledger = LedgerStore(redis)
    await ledger.open("pay-1", Book("EUR", 5000))
    session_id = await stored(store, payment_id="pay-1")
    held = await claim(claims, session_id)
    await ledger.reserve("pay-1", session_id, Op.CAPTURE, 1000, "EUR", now=0.0)
    stolen = await claims.claim(session_id, now=time.time() + 60, lease_seconds=30)
    assert stolen == NotClaimed(Refusal.BUSY, State.RECEIVED)
    approved = Change.of(
        Event.PSP_SETTLED,
        at=1.0,
        due_at=None,
        fields={"outcome": Outcome.APPROVED},
        ledger=LedgerVerdict("pay-1", approved=True),
    )
    await redis.hset(f"payhook:s:{session_id}", "fence", held.fence + 1)  # taken over
    with pytest.raises(LeaseLost):
        await claims.apply(session_id, held.fence, approved)
    book = await ledger.get("pay-1")
    assert book is not None
    assert (book.captured, book.reserved(Op.CAPTURE)) == (0, 1000)
    await claims.apply(session_id, held.fence + 1, approved)
    book = await ledger.get("pay-1")
    assert book is not None
    assert (book.captured, book.reserved(Op.CAPTURE)) == (1000, 0)


async def test_a_claim_a_failover_lost_is_never_handed_out_again(
    store: SessionStore, claims: Claims, redis: fakeredis.FakeAsyncRedis
) -> None:
    session_id = await stored(store)
    before = await redis.hgetall(f"payhook:s:{session_id}")
    lost = await claim(claims, session_id)
    # The primary died before its replica saw the claim: the promoted replica has the
    # session as it was, with no lease. Its holder still works, and may reconnect there.
    await redis.delete(f"payhook:s:{session_id}", f"payhook:lease:{session_id}")
    await redis.hset(f"payhook:s:{session_id}", mapping=before)
    taken = await claim(claims, session_id)
    assert taken.fence != lost.fence
    with pytest.raises(LeaseLost):
        await claims.apply(session_id, lost.fence, change_to(Event.PSP_RETRY))
    assert not await claims.renew(session_id, lost.fence, lease_seconds=30, now=time.time())


@pytest.mark.parametrize("planted", [DUE, WORKABLE, PENDING])
async def test_a_claim_that_cannot_finish_changes_nothing(
    store: SessionStore, claims: Claims, redis: fakeredis.FakeAsyncRedis, planted: str
) -> None:
    session_id = await stored(store)
    await redis.delete(planted)
    await redis.set(planted, "in the way")
    before = {key: await redis.dump(key) for key in sorted(await redis.keys("*"))}
    with pytest.raises(StoreCorrupt, match=planted):
        await claims.claim(session_id, now=time.time(), lease_seconds=30)
    assert {key: await redis.dump(key) for key in sorted(await redis.keys("*"))} == before
