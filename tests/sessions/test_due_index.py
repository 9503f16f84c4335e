"""The due-set summary's indexes against a real redis-server: after any sequence of the
store's writes (intake, claim, retry, pending, the PSP's verdict, report, failure, release,
replay, the sweeper, expiry) they hold exactly what a recomputation from the session hashes
gives, and a store written before they existed is indexed by the sweeper without ever
reporting a wrong summary."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from errors import LeaseLost, StaleState
from ops.redis_server import LocalRedis
from readouts.stats import DueSummary, due_summary
from sessions import decisions
from sessions.change import Change
from sessions.claims import Claimed, Claims
from sessions.decisions import PspWord, psp_word
from sessions.keys import (
    CONFIRMING,
    DUE,
    DUE_INDEXED,
    PENDING,
    WORKABLE,
    session_key,
    text,
    timeline_key,
)
from sessions.models import Kind, Outcome, Session
from sessions.states import Event, State
from sessions.store import SessionStore
from tests.factories import RedisDb, change_to, make_session, received_event

DB = 11
NOW = 1_800_000_000.0
LEASE = 30.0


@pytest.fixture
async def redis(redis_db: RedisDb) -> Redis:
    return await redis_db(DB)


@dataclass(frozen=True)
class Indexes:
    workable: dict[str, float]
    pending: dict[str, float]
    confirming: dict[str, float]


async def indexes(redis: Redis) -> Indexes:
    async def read(key: str) -> dict[str, float]:
        entries = await redis.zrange(key, 0, -1, withscores=True)
        return {text(entry[0]): float(entry[1]) for entry in entries}

    return Indexes(await read(WORKABLE), await read(PENDING), await read(CONFIRMING))


async def recomputed(redis: Redis) -> Indexes:
    """What the indexes must hold, from the due set and the session hashes alone: every
    due session that still has its data, a pending payment by the close of its window (its
    last write's time when it has none), any other by its creation time (a payment waiting
    for Shopify's confirmation in an index of its own)."""
    workable: dict[str, float] = {}
    pending: dict[str, float] = {}
    confirming: dict[str, float] = {}
    for member in await redis.zrange(DUE, 0, -1):
        session_id = text(member)
        fields = {
            text(k): text(v) for k, v in (await redis.hgetall(session_key(session_id))).items()
        }
        if not fields:
            continue
        if fields["state"] == State.PENDING:
            pending[session_id] = float(fields.get("pending_expires_at") or fields["updated_at"])
        elif fields["state"] == State.CONFIRMING:
            confirming[session_id] = float(fields["created_at"])
        else:
            workable[session_id] = float(fields["created_at"])
    return Indexes(workable, pending, confirming)


def exact(expected: Indexes, depth: int, overdue: int, now: float) -> DueSummary:
    oldest = min(expected.workable.values(), default=None)
    soonest = min(expected.pending.values(), default=None)
    return DueSummary(
        depth=depth,
        overdue=overdue,
        oldest_unfinished_seconds=0.0 if oldest is None else max(0.0, now - oldest),
        pending_payments=len(expected.pending),
        pending_closes_in=None if soonest is None else soonest - now,
    )


async def assert_consistent(redis: Redis, now: float) -> None:
    expected = await recomputed(redis)
    assert await indexes(redis) == expected
    summary = await due_summary(redis, now)
    assert summary.indexed
    assert summary == exact(expected, summary.depth, summary.overdue, now)


# Each step names an operation and which of a few sessions it is about, so that the same
# sessions meet many different writes in many orders. A worker's steps come up more often
# than the rest, so that sessions get far along their lifecycle.
OPERATIONS = (
    *("create", "create payment"),
    *("work", "work", "work", "work", "work", "work"),
    *("claim", "claim", "retry", "settle", "settle", "pend", "pend", "confirm"),
    *("report", "report", "verdict", "fail", "release", "replay", "replay"),
    *("sweep", "wait", "expire", "expire", "vanish"),
)
STEPS = st.lists(
    st.tuples(st.sampled_from(OPERATIONS), st.integers(min_value=0, max_value=2)),
    min_size=20,
    max_size=80,
)


@dataclass
class World:
    redis: Redis
    store: SessionStore
    claims: Claims
    now: float = NOW
    fences: dict[str, int] = field(default_factory=dict)

    async def session(self, session_id: str) -> Session | None:
        return await self.store.get(session_id)

    async def fenced(self, session_id: str, change: Change, *, release: bool = False) -> None:
        fence = self.fences.get(session_id)
        if fence is not None:
            await self.claims.apply(session_id, fence, change, release=release)

    async def work(self, session_id: str) -> None:
        """What a worker's run writes: a claim, then the session's next step, releasing the
        lease with it (the run ends there: a retry, or the next step's own delivery)."""
        now = self.now
        claim = await self.claims.claim(session_id, now=now, lease_seconds=LEASE)
        if not isinstance(claim, Claimed):
            return
        session, fence = claim.session, claim.fence
        self.fences[session_id] = fence
        if session.state is State.PENDING:
            # Its window closed without the PSP's word: declined, to be reported.
            closed = change_to(
                Event.PENDING_EXPIRED, at=now, outcome=Outcome.DECLINED, due_at=now + LEASE
            )
            await self.claims.apply(session_id, fence, closed, release=True)
        elif session.outcome is None:
            outcome = Outcome.PENDING if session.kind is Kind.PAYMENT else Outcome.APPROVED
            settled = change_to(Event.PSP_SETTLED, at=now, outcome=outcome, due_at=now + LEASE)
            await self.claims.apply(session_id, fence, settled, release=True)
        elif session.outcome is Outcome.PENDING:
            closes = now + 1_000
            pend = change_to(
                Event.REPORTED_PENDING, at=now, pending_expires_at=closes, due_at=closes
            )
            await self.claims.apply(session_id, fence, pend, release=True)
        else:
            done = change_to(Event.REPORTED, at=now)
            await self.claims.apply(session_id, fence, done, release=True)

    async def step(self, operation: str, which: int) -> None:
        self.now += 7.0
        now = self.now
        session_id = f"s{which}"
        session = await self.session(session_id)
        if operation in ("create", "create payment"):
            kind = Kind.PAYMENT if operation == "create payment" else Kind.CAPTURE
            new = make_session(id=session_id, kind=kind, created_at=now, updated_at=now)
            await self.store.create(new, received_event(now), due_at=now + LEASE, queue=False)
        elif operation == "work":
            await self.work(session_id)
        elif operation == "claim":
            claim = await self.claims.claim(session_id, now=now, lease_seconds=LEASE)
            if isinstance(claim, Claimed):
                self.fences[session_id] = claim.fence
        elif operation == "retry":
            retry = change_to(Event.PSP_RETRY, at=now, not_before=now + 5, due_at=now + 5 + LEASE)
            await self.fenced(session_id, retry)
        elif operation == "settle" and session is not None:
            outcome = Outcome.PENDING if session.kind is Kind.PAYMENT else Outcome.APPROVED
            settle = change_to(Event.PSP_SETTLED, at=now, outcome=outcome, due_at=now + LEASE)
            await self.fenced(session_id, settle)
        elif operation == "confirm" and session is not None and session.kind is Kind.PAYMENT:
            # paymentSessionConfirm sent: Shopify's confirmation request or the window next.
            await self.fenced(
                session_id,
                change_to(Event.CONFIRMATION_REQUESTED, at=now, due_at=now + 3_600),
                release=True,
            )
        elif operation == "pend":
            closes = now + 1_000 + which
            pend = change_to(
                Event.REPORTED_PENDING, at=now, pending_expires_at=closes, due_at=closes
            )
            await self.fenced(session_id, pend, release=True)
        elif operation == "verdict" and session is not None:
            # As the PSP's callback writes it: whoever holds the session is superseded.
            word = PspWord(Outcome.APPROVED, f"ref-{session_id}")
            verdict = psp_word(session, word, now, lease_seconds=LEASE, pending_seconds=1_000)
            if isinstance(verdict, Change):
                await self.store.change(session, verdict, queue=False)
        elif operation == "report":
            await self.fenced(session_id, change_to(Event.REPORTED, at=now), release=True)
        elif operation == "fail" and session is not None:
            failed = change_to(Event.FAILED, at=now, failed_at=now, last_error="x")
            await self.store.change(session, failed)
        elif operation == "release" and session is not None:
            # `payhook sessions release`: a failed session stays failed and out of the due set.
            given_back = Change.of(
                Event.RESERVATION_RELEASED, at=now, due_at=None, expect=frozenset({State.FAILED})
            )
            await self.store.change(session, given_back)
        elif operation == "replay" and session is not None:
            replayed = decisions.replay(session, now, actor="test", lease_seconds=LEASE)
            if isinstance(replayed, Change):
                await self.store.change(session, replayed, queue=True)
        elif operation == "wait":
            # Backoffs end and pending windows close.
            self.now += 2_000.0
        elif operation == "sweep":
            await self.store.requeue_due(now + 10_000, limit=100, hold_for=LEASE)
        elif operation == "expire" and session is not None and session.state is State.REPORTED:
            # Retention ran out: Redis drops the data on its own, the sweeper the listing.
            await self.redis.delete(session_key(session_id), timeline_key(session_id))
            await self.store.prune_expired(now + 10**9, limit=100)
        elif operation == "vanish":
            # Data gone from under an unfinished session (an operator's DEL, an eviction):
            # once it is due, the sweeper drops its due entry, and its index entry with it.
            await self.redis.delete(session_key(session_id))
            due_at = await self.redis.zscore(DUE, session_id)
            if due_at is not None:
                await self.store.requeue_due(due_at, limit=100, hold_for=LEASE)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS)
def test_after_any_sequence_of_writes_the_indexes_equal_a_recomputation(
    redis_server: LocalRedis, steps: list[tuple[str, int]]
) -> None:
    async def run() -> None:
        redis = Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/{DB}")
        try:
            await redis.flushdb()
            world = World(redis, SessionStore(redis), Claims(redis))
            for operation, which in steps:
                # A refused write changes nothing; the indexes must still agree.
                with contextlib.suppress(StaleState, LeaseLost):
                    await world.step(operation, which)
                await assert_consistent(redis, world.now)
        finally:
            await redis.aclose()

    asyncio.run(run())


async def created(store: SessionStore, *, age: float, **fields: object) -> Session:
    session = make_session(created_at=NOW - age, updated_at=NOW - age, **fields)
    await store.create(session, received_event(NOW - age), due_at=NOW + 30, queue=False)
    return session


async def pending_payment(store: SessionStore, *, age: float, closes_in: float) -> Session:
    session = await created(store, age=age, kind=Kind.PAYMENT)
    await store.change(session, change_to(Event.PSP_SETTLED, at=NOW, outcome=Outcome.PENDING))
    settled = session.model_copy(update={"state": State.SETTLED})
    closes = NOW + closes_in
    pend = change_to(Event.REPORTED_PENDING, at=NOW, pending_expires_at=closes, due_at=closes)
    await store.change(settled, pend)
    return session


async def legacy(redis: Redis) -> None:
    """The store as a version without the indexes left it: the same sessions and due set,
    nothing else."""
    await redis.delete(WORKABLE, PENDING, DUE_INDEXED)


async def test_a_store_from_before_the_indexes_is_read_by_the_bounded_scan_until_indexed(
    redis: Redis,
) -> None:
    store = SessionStore(redis)
    for age in (300, 50, 20):
        await created(store, age=age)
    await pending_payment(store, age=10, closes_in=900)
    await legacy(redis)

    # Empty indexes would read as nothing stuck: until they are built, the old scan answers.
    before = await due_summary(redis, NOW)
    assert not before.indexed
    assert (before.depth, before.pending_payments) == (4, 1)
    assert before.oldest_unfinished_seconds == pytest.approx(300, abs=0.01)

    # Batches of one: the build goes on where the last batch stopped.
    batches = 0
    while not (await store.build_due_index(limit=1)).done:
        batches += 1
        assert batches < 20
    after = await due_summary(redis, NOW)
    assert after.indexed
    assert after == DueSummary(**{**vars(before), "indexed": True})
    assert await indexes(redis) == await recomputed(redis)


async def test_writes_while_the_index_is_built_are_kept(redis: Redis) -> None:
    store = SessionStore(redis)
    early = [await created(store, age=100 + i) for i in range(300)]
    await legacy(redis)
    await store.build_due_index(limit=50)
    # The build is under way: sessions come and go and are indexed by their own writes.
    await created(store, age=5_000)
    for session in early[:40]:
        await store.change(session, change_to(Event.FAILED, at=NOW, failed_at=NOW))
    await pending_payment(store, age=1, closes_in=60)
    while not (await store.build_due_index(limit=50)).done:
        pass
    assert await indexes(redis) == await recomputed(redis)
    summary = await due_summary(redis, NOW)
    assert summary.indexed
    assert summary.oldest_unfinished_seconds == pytest.approx(5_000, abs=0.01)
    assert summary.pending_payments == 1


async def test_a_fresh_store_is_indexed_from_its_first_session(redis: Redis) -> None:
    store = SessionStore(redis)
    await created(store, age=42)
    assert text(await redis.get(DUE_INDEXED)) == "done"
    summary = await due_summary(redis, NOW)
    assert summary.indexed
    assert summary.oldest_unfinished_seconds == pytest.approx(42, abs=0.01)


async def stale(redis: Redis, session: Session) -> None:
    """What a process of the older version leaves when it finishes a session another
    version indexed: the session leaves the due set, its index entry stays."""
    await redis.hset(session_key(session.id), "state", State.REPORTED.value)
    await redis.zrem(DUE, session.id)


async def test_repair_drops_stale_entries_at_the_head_of_each_index(redis: Redis) -> None:
    store = SessionStore(redis)
    finished = [await created(store, age=900 + i) for i in range(3)]
    await created(store, age=60)
    gone = await pending_payment(store, age=30, closes_in=10)
    await pending_payment(store, age=30, closes_in=500)
    for session in [*finished, gone]:
        await stale(redis, session)
    assert (await due_summary(redis, NOW)).oldest_unfinished_seconds > 900

    assert await store.repair_due_index(limit=100) == 4
    summary = await due_summary(redis, NOW)
    assert summary.oldest_unfinished_seconds == pytest.approx(60, abs=0.01)
    assert summary.pending_payments == 1
    assert summary.pending_closes_in == pytest.approx(500)
    # A consistent head is where repair stops: nothing left to fix costs two lookups.
    assert await store.repair_due_index(limit=100) == 0


async def test_a_rebuild_drops_stale_entries_anywhere_in_the_indexes(redis: Redis) -> None:
    store = SessionStore(redis)
    await created(store, age=5_000)
    behind = [await created(store, age=100 + i) for i in range(20)]
    for session in behind[::2]:
        await stale(redis, session)
    await store.restart_due_index()
    assert not (await due_summary(redis, NOW)).indexed
    while not (await store.build_due_index(limit=3)).done:
        pass
    assert await indexes(redis) == await recomputed(redis)
    assert len((await indexes(redis)).workable) == 11
