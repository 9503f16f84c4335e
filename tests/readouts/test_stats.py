"""What `readouts.stats` reads from a real Redis: the figures behind the web gauges and
`payhook sessions stats`."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from readouts.stats import DUE_SCAN, collect, due_summary, failed_by_kind
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Op, Outcome, Session
from sessions.states import Event, State
from sessions.store import SessionStore
from tests.factories import RedisDb, change_to, make_session, received_event

DB = 5
NOW = 1_800_000_000.0


@pytest.fixture
async def redis(redis_db: RedisDb) -> Redis:
    return await redis_db(DB)


@pytest.fixture
def store(redis: Redis) -> SessionStore:
    return SessionStore(redis)


async def stored(store: SessionStore, *, age: float, due_in: float = 0.0, **fields: Any) -> Session:
    session = make_session(created_at=NOW - age, updated_at=NOW - age, **fields)
    await store.create(session, received_event(NOW - age), due_at=NOW + due_in, queue=False)
    return session


async def fail(store: SessionStore, session: Session) -> None:
    await store.change(session, change_to(Event.FAILED, at=NOW, failed_at=NOW, last_error="x"))


async def pended(store: SessionStore, session: Session, closes: float) -> None:
    """A payment settled with a pending outcome, then reported pending until `closes`."""
    await store.change(session, change_to(Event.PSP_SETTLED, at=NOW, outcome=Outcome.PENDING))
    settled = session.model_copy(update={"state": State.SETTLED})
    await store.change(
        settled, change_to(Event.REPORTED_PENDING, at=NOW, pending_expires_at=closes, due_at=closes)
    )


async def test_an_empty_store_shows_nothing_due_and_nothing_failed(redis: Redis) -> None:
    due = await due_summary(redis, NOW)
    assert (due.depth, due.overdue, due.oldest_unfinished_seconds) == (0, 0, 0.0)
    assert (due.pending_payments, due.pending_closes_in) == (0, None)
    assert await failed_by_kind(redis) == {"payment": 0, "capture": 0, "refund": 0, "void": 0}


async def test_the_oldest_unfinished_session_is_found_whatever_its_due_time(
    redis: Redis, store: SessionStore
) -> None:
    await stored(store, age=30, due_in=-5)
    # The oldest waits in a long backoff: its due time is the furthest away.
    await stored(store, age=7200, due_in=3600)
    await stored(store, age=10, due_in=20)
    due = await due_summary(redis, NOW)
    assert due.depth == 3
    assert due.overdue == 1
    assert due.oldest_unfinished_seconds == pytest.approx(7200, abs=0.01)


async def test_pending_payments_count_apart_with_their_first_closing_window(
    redis: Redis, store: SessionStore
) -> None:
    for age, closes_in in ((90_000, 3_000), (50_000, 40_000)):
        await pended(store, await stored(store, age=age, kind=Kind.PAYMENT), NOW + closes_in)
    await stored(store, age=60)
    due = await due_summary(redis, NOW)
    assert (due.depth, due.pending_payments) == (3, 2)
    assert due.pending_closes_in == pytest.approx(3_000, abs=0.01)
    # A payment waiting for its PSP is not work a worker is late with.
    assert due.oldest_unfinished_seconds == pytest.approx(60, abs=0.01)


async def test_past_the_old_scan_the_oldest_age_and_the_pending_payments_are_exact(
    redis: Redis, store: SessionStore
) -> None:
    # More due sessions than the old scan read, all due before the two that matter: the
    # oldest waits in a long backoff, and every pending window closes later still.
    async def young(i: int) -> None:
        await stored(store, age=10 + i % 50, due_in=float(i % 600))

    for start in range(0, DUE_SCAN + 100, 50):
        await asyncio.gather(*(young(i) for i in range(start, start + 50)))
    await stored(store, age=86_400, due_in=7_200)
    for closes_in in (90_000, 30_000, 60_000):
        payment = await stored(store, age=120, kind=Kind.PAYMENT, due_in=5_000)
        await pended(store, payment, NOW + closes_in)
    due = await due_summary(redis, NOW)
    assert due.depth == DUE_SCAN + 100 + 1 + 3
    assert due.oldest_unfinished_seconds == pytest.approx(86_400, abs=0.01)
    assert due.pending_payments == 3
    assert due.pending_closes_in == pytest.approx(30_000, abs=0.01)


async def test_a_payment_awaiting_shopifys_confirmation_is_not_work_a_worker_is_late_with(
    redis: Redis, store: SessionStore
) -> None:
    session = await stored(store, age=5_000, kind=Kind.PAYMENT)
    await store.change(session, change_to(Event.PSP_SETTLED, at=NOW, outcome=Outcome.APPROVED))
    settled = session.model_copy(update={"state": State.SETTLED})
    closes = NOW + 3_600
    await store.change(settled, change_to(Event.CONFIRMATION_REQUESTED, at=NOW, due_at=closes))
    await stored(store, age=60)
    due = await due_summary(redis, NOW)
    assert (due.depth, due.pending_payments) == (2, 0)
    assert due.oldest_unfinished_seconds == pytest.approx(60, abs=0.01)


async def test_failed_sessions_leave_the_due_set_and_count_by_kind(
    redis: Redis, store: SessionStore
) -> None:
    for kind in (Kind.CAPTURE, Kind.CAPTURE, Kind.REFUND):
        await fail(store, await stored(store, age=100, kind=kind))
    assert await failed_by_kind(redis) == {"payment": 0, "capture": 2, "refund": 1, "void": 0}
    assert (await due_summary(redis, NOW)).depth == 0


async def test_collect_counts_states_and_the_money_failed_sessions_hold(
    redis: Redis, store: SessionStore
) -> None:
    ledger = LedgerStore(redis)
    holding = []
    for amount in ("12.50", "0.75"):
        session = await stored(store, age=50, amount=Decimal(amount))
        await ledger.open(session.payment_id, Book(currency="EUR", authorized=10_000))
        minor = int(Decimal(amount) * 100)
        await ledger.reserve(session.payment_id, session.id, Op.CAPTURE, minor, "EUR", NOW)
        holding.append(session)
    for session in holding:
        await fail(store, session)
    # Failed with nothing reserved: counted as failed, holds nothing.
    await fail(store, await stored(store, age=40))
    await stored(store, age=5)
    stats = await collect(redis, NOW)
    assert stats.by_state == {("failed", "capture"): 3, ("received", "capture"): 1}
    assert (stats.scanned, stats.complete) == (4, True)
    assert stats.failed["capture"] == 3
    assert stats.held == {"EUR": Decimal("13.25")}
    assert (stats.held_sessions, stats.voids_held) == (2, 0)
    assert stats.due.depth == 1
