"""Failing an uninstalled shop's unfinished sessions, on a real redis-server: each through the
single write path, its reservation given back only where no PSP request can have been
applied, a worker holding one superseded, other shops and finished sessions untouched."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from errors import LeaseLost, SessionsLeft
from sessions.change import Change
from sessions.claims import Claimed, Claims
from sessions.ledger import Book, Reserved
from sessions.ledger_store import LedgerStore
from sessions.models import Op, Outcome, Session
from sessions.states import Event, State
from sessions.store import SessionStore
from tests.factories import SHOP, RedisDb, make_session, received_event
from workers.lifecycle.settling import MONEY_HELD, NOTHING_HELD, RESERVATION_RETURNED
from workers.uninstall import fail_unfinished

DB = 10
REASON = f"{SHOP} uninstalled the app (test)"


@pytest.fixture
async def redis(redis_db: RedisDb) -> Redis:
    return await redis_db(DB)


@pytest.fixture
def store(redis: Redis) -> SessionStore:
    return SessionStore(redis)


@pytest.fixture
def ledger(redis: Redis) -> LedgerStore:
    return LedgerStore(redis)


async def stored(
    store: SessionStore, ledger: LedgerStore, *, reserve: bool, **fields: Any
) -> Session:
    """A capture of 10.00 EUR on its own authorized payment, in the state `fields` give."""
    session = make_session(**fields)
    await store.create(session, received_event(), due_at=time.time() + 30, queue=False)
    await ledger.open(session.payment_id, Book("EUR", 5000))
    if reserve:
        reserved = await ledger.reserve(
            session.payment_id, session.id, Op.CAPTURE, 1000, "EUR", time.time()
        )
        assert isinstance(reserved, Reserved)
    if session.state is not State.RECEIVED:
        happened = Event.REPORT_RETRY if session.state is State.SETTLED else Event.PSP_RETRY
        change = Change.of(happened, at=time.time(), due_at=time.time() + 30, fields=fields)
        await store.change(session, change)
    return session


async def after(store: SessionStore, session: Session) -> tuple[Session, list[str]]:
    found = await store.get(session.id)
    assert found is not None
    return found, [e.detail or "" for e in await store.timeline(session.id)]


async def test_each_unfinished_session_fails_with_its_money_where_it_must_be(
    store: SessionStore, ledger: LedgerStore
) -> None:
    untried = await stored(store, ledger, reserve=False)
    refused = await stored(
        store, ledger, reserve=True, state=State.SETTLING, psp_attempts=2, psp_uncertain=False
    )
    unknown = await stored(
        store, ledger, reserve=True, state=State.SETTLING, psp_attempts=1, psp_uncertain=True
    )
    settled = await stored(
        store, ledger, reserve=False, state=State.SETTLED, outcome=Outcome.APPROVED
    )
    other_shop = await stored(store, ledger, reserve=True, shop="other.myshopify.com")

    done = await fail_unfinished(store, SHOP, REASON, clock=time.time)

    assert sorted(done.failed) == sorted([untried.id, refused.id, unknown.id, settled.id])
    assert done.holding == [unknown.id]
    for session in (untried, refused, unknown, settled):
        found, _ = await after(store, session)
        assert found.state is State.FAILED
        assert found.last_error == REASON
    # Every attempt was refused before it was applied: the money is given back.
    assert await ledger.held(refused.payment_id, refused.id) is None
    assert RESERVATION_RETURNED in (await after(store, refused))[1]
    assert NOTHING_HELD in (await after(store, untried))[1]
    # The PSP may have moved it: the reservation stays, for an operator to check.
    assert await ledger.held(unknown.payment_id, unknown.id) == (Op.CAPTURE, 1000)
    assert MONEY_HELD in (await after(store, unknown))[1]
    assert any("outcome (approved) stands" in d for d in (await after(store, settled))[1])
    # Listed as dead letters of the shop; the other shop's session is as it was.
    assert sorted(await store.failed_ids(shop=SHOP)) == sorted(done.failed)
    assert (await store.get(other_shop.id)) == other_shop
    assert await ledger.held(other_shop.payment_id, other_shop.id) == (Op.CAPTURE, 1000)
    # Nothing is left to fail: a second run finds nothing.
    again = await fail_unfinished(store, SHOP, REASON, clock=time.time)
    assert again.failed == []


async def test_a_session_a_worker_holds_is_taken_from_it_and_its_money_kept(
    store: SessionStore, ledger: LedgerStore, redis: Redis
) -> None:
    session = await stored(store, ledger, reserve=True)
    claims = Claims(redis)
    claim = await claims.claim(session.id, now=time.time(), lease_seconds=30)
    assert isinstance(claim, Claimed)

    done = await fail_unfinished(store, SHOP, REASON, clock=time.time)

    assert done.holding == [session.id]  # the worker may be at the PSP right now
    assert await ledger.held(session.payment_id, session.id) == (Op.CAPTURE, 1000)
    # That worker's next write changes nothing, and its lease is gone.
    late = Change.of(
        Event.PSP_SETTLED,
        at=time.time(),
        due_at=None,
        fields={"outcome": Outcome.APPROVED, "amount": Decimal("10.00")},
    )
    with pytest.raises(LeaseLost):
        await claims.apply(session.id, claim.fence, late)
    assert not await claims.renew(session.id, claim.fence, lease_seconds=30, now=time.time())
    assert (await after(store, session))[0].state is State.FAILED


async def test_sessions_of_a_shop_reinstalled_since_the_uninstall_stay_its_own(
    store: SessionStore, ledger: LedgerStore
) -> None:
    before = await stored(store, ledger, reserve=False, created_at=time.time() - 60)
    since = await stored(store, ledger, reserve=False)
    done = await fail_unfinished(store, SHOP, REASON, clock=time.time, created_by=time.time() - 30)
    assert done.failed == [before.id]
    assert (await after(store, since))[0].state is State.RECEIVED


async def test_a_session_that_cannot_be_written_leaves_the_others_failed_and_says_so(
    store: SessionStore, ledger: LedgerStore, redis: Redis
) -> None:
    broken = await stored(store, ledger, reserve=False)
    fine = await stored(store, ledger, reserve=False)
    await redis.delete(f"payhook:timeline:{broken.id}")
    await redis.set(f"payhook:timeline:{broken.id}", "not a list")
    with pytest.raises(SessionsLeft, match=broken.id):
        await fail_unfinished(store, SHOP, REASON, clock=time.time)
    assert (await after(store, fine))[0].state is State.FAILED
    found = await store.get(broken.id)
    assert found is not None
    assert found.state is State.RECEIVED
