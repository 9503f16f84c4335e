"""The session store against fakeredis (the Lua scripts run in fakeredis' Lua engine)."""

from __future__ import annotations

from decimal import Decimal

import fakeredis
import pytest

from errors import StaleState, StoreCorrupt
from sessions.keys import DUE, PENDING, WORKABLE, failed_index, timeline_key
from sessions.models import Outcome, Session
from sessions.states import Event, State
from sessions.store import Change, Created, SessionStore
from tests.factories import ListHandoff, change_to, make_session, received_event


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> SessionStore:
    return SessionStore(redis, ListHandoff())


async def queued(redis: fakeredis.FakeAsyncRedis) -> list[str]:
    return [m.decode() for m in await redis.lrange(ListHandoff.queue, 0, -1)]


async def test_a_created_session_reads_back_identically(store: SessionStore) -> None:
    session = make_session(amount=Decimal("12.30"), test=False)
    result = await store.create(
        session, received_event(), due_at=session.created_at + 60, queue=False
    )
    assert result.status is Created.CREATED
    assert await store.get(session.id) == session
    assert [e.event for e in await store.timeline(session.id)] == ["received"]


async def test_a_new_session_is_queued_in_the_same_step_and_a_duplicate_is_not(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=True)
    again = make_session(id=session.id, amount=Decimal("10.0"), request_id="other")
    result = await store.create(again, received_event(), due_at=0, queue=True)
    assert result.status is Created.DUPLICATE
    assert await store.get(session.id) == session
    assert len(await store.timeline(session.id)) == 1
    assert await queued(redis) == [f"capture:{session.id}"]


async def test_a_different_amount_under_the_same_id_is_a_conflict(store: SessionStore) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=False)
    result = await store.create(
        make_session(id=session.id, amount=Decimal("11.00")),
        received_event(),
        due_at=0,
        queue=False,
    )
    assert result.status is Created.CONFLICT
    assert result.stored_fingerprint == session.fingerprint()
    assert (await store.get(session.id)) == session


async def test_a_change_moves_state_sets_fields_and_appends_to_the_timeline(
    store: SessionStore,
) -> None:
    session = make_session(last_error="boom")
    await store.create(session, received_event(), due_at=0, queue=False)
    before = await store.change(
        session, change_to(Event.PSP_RETRY, psp_attempts=1, last_error=None, due_at=50.0)
    )
    assert before is State.RECEIVED
    stored = await store.get(session.id)
    assert stored is not None
    assert (stored.state, stored.psp_attempts, stored.last_error) == (State.SETTLING, 1, None)
    assert [e.event for e in await store.timeline(session.id)] == ["received", "psp_retry"]


@pytest.mark.parametrize(
    ("start", "happened"),
    [
        (State.RECEIVED, Event.REPORTED),
        (State.RECEIVED, Event.REPORTED_PENDING),
        (State.SETTLED, Event.PSP_RETRY),
        (State.REPORTED, Event.FAILED),
        (State.FAILED, Event.REPORTED),
        # A second settlement over a stored outcome, by whoever writes it.
        (State.SETTLED, Event.PSP_SETTLED),
        (State.PENDING, Event.PSP_SETTLED),
    ],
)
async def test_a_transition_the_state_machine_forbids_is_refused_and_changes_nothing(
    store: SessionStore, start: State, happened: Event
) -> None:
    session = make_session(state=start)
    await store.create(session, received_event(), due_at=0, queue=False)
    with pytest.raises(StaleState, match=start.value):
        await store.change(session, change_to(happened))
    assert await store.get(session.id) == session
    assert len(await store.timeline(session.id)) == 1


async def test_a_change_narrowed_to_one_source_is_refused_from_another(
    store: SessionStore,
) -> None:
    session = make_session(state=State.PENDING)
    await store.create(session, received_event(), due_at=0, queue=False)
    change = Change.of(Event.PSP_SETTLED, at=1.0, due_at=None, expect=frozenset({State.RECEIVED}))
    with pytest.raises(StaleState, match="pending"):
        await store.change(session, change)


async def test_a_change_can_queue_the_session_in_the_same_step(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=False)
    verdict = Change.of(
        Event.PSP_SETTLED,
        at=1.0,
        due_at=None,
        fields={"outcome": Outcome.APPROVED},
        expect=frozenset({State.RECEIVED}),
    )
    await store.change(session, verdict, queue=True)
    assert await queued(redis) == [f"capture:{session.id}"]
    with pytest.raises(StaleState):
        await store.change(session, verdict, queue=True)
    assert await queued(redis) == [f"capture:{session.id}"]


async def test_due_sessions_are_requeued_once_until_they_fall_due_again(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    early, late = make_session(), make_session()
    await store.create(early, received_event(), due_at=100.0, queue=False)
    await store.create(late, received_event(), due_at=300.0, queue=False)
    assert await store.requeue_due(150.0, limit=10, hold_for=60.0) == [early.id]
    assert await store.requeue_due(150.0, limit=10, hold_for=60.0) == []
    assert set(await store.requeue_due(400.0, limit=10, hold_for=60.0)) == {early.id, late.id}
    assert sorted(await queued(redis)) == sorted(
        [f"capture:{early.id}", f"capture:{early.id}", f"capture:{late.id}"]
    )


async def test_a_due_entry_without_a_session_is_dropped_and_the_batch_goes_on(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=100.0, queue=False)
    await redis.zadd(DUE, {"ghost": 50.0})
    assert await store.requeue_due(150.0, limit=10, hold_for=60.0) == [session.id]
    assert await redis.zscore(DUE, "ghost") is None


async def test_a_finished_session_leaves_the_due_set(store: SessionStore) -> None:
    session = make_session(state=State.SETTLED)
    await store.create(session, received_event(), due_at=10.0, queue=False)
    await store.change(session, change_to(Event.REPORTED))
    assert await store.due_count() == 0


async def everything(redis: fakeredis.FakeAsyncRedis) -> dict[bytes, bytes | None]:
    return {key: await redis.dump(key) for key in sorted(await redis.keys("*"))}


@pytest.mark.parametrize("planted", ["timeline", "due", "queue", "workable", "pending"])
async def test_a_create_that_cannot_finish_changes_nothing(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis, planted: str
) -> None:
    # A key of the wrong type where the script writes last: Redis does not roll a script
    # back, so it must refuse before its first write.
    session = make_session()
    key = {
        "timeline": timeline_key(session.id),
        "due": DUE,
        "queue": ListHandoff.queue,
        "workable": WORKABLE,
        "pending": PENDING,
    }[planted]
    await redis.set(key, "in the way")
    before = await everything(redis)
    with pytest.raises(StoreCorrupt, match=key):
        await store.create(session, received_event(), due_at=0, queue=True)
    assert await everything(redis) == before


@pytest.mark.parametrize("planted", ["timeline", "failed index", "queue", "workable", "pending"])
async def test_a_change_that_cannot_finish_changes_nothing(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis, planted: str
) -> None:
    session = make_session(state=State.SETTLED, outcome=Outcome.APPROVED)
    await store.create(session, received_event(), due_at=0, queue=False)
    key = {
        "timeline": timeline_key(session.id),
        "failed index": failed_index(shop=session.shop),
        "queue": ListHandoff.queue,
        "workable": WORKABLE,
        "pending": PENDING,
    }[planted]
    await redis.delete(key)
    await redis.set(key, "in the way")
    before = await everything(redis)
    with pytest.raises(StoreCorrupt, match=key):
        await store.change(session, change_to(Event.FAILED, failed_at=2.0), queue=True)
    assert await everything(redis) == before


@pytest.mark.parametrize("planted", [WORKABLE, PENDING])
async def test_a_sweep_leaves_an_index_of_another_type_alone_and_still_moves_sessions(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis, planted: str
) -> None:
    # The indexes only feed the metrics: one in the way must not stop the re-kicks.
    session = make_session()
    await store.create(session, received_event(), due_at=100.0, queue=False)
    await redis.zadd(DUE, {"ghost": 50.0})
    await redis.delete(planted)
    await redis.set(planted, "in the way")
    await store.requeue_due(150.0, limit=10, hold_for=60.0)
    assert await redis.zscore(DUE, session.id) == 210.0
    assert await redis.zscore(DUE, "ghost") is None
    assert await redis.get(planted) == b"in the way"


async def test_a_sweep_over_a_due_set_of_another_type_changes_nothing(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    await redis.set(DUE, "in the way")
    before = await everything(redis)
    with pytest.raises(StoreCorrupt, match=DUE):
        await store.requeue_due(150.0, limit=10, hold_for=60.0)
    assert await everything(redis) == before


async def test_a_decision_whose_write_lost_a_race_is_decided_again_on_a_fresh_read(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=False)
    seen: list[State] = []

    def decide(read: Session | None) -> Change:
        assert read is not None
        seen.append(read.state)
        return Change.of(Event.FAILED, at=3.0, due_at=None, expect=frozenset({read.state}))

    class Raced(SessionStore):
        """Another writer moves the session between the first read and its write."""

        async def get(self, session_id: str) -> Session | None:
            read = await super().get(session_id)
            if not seen:
                await store.change(session, change_to(Event.PSP_RETRY, at=2.0, due_at=5.0))
            return read

    raced = Raced(redis, ListHandoff())
    done = await raced.decide_and_change(session.id, decide, attempts=3)

    assert done is not None
    assert seen == [State.RECEIVED, State.SETTLING]
    stored = await store.get(session.id)
    assert stored is not None
    assert stored.state is State.FAILED
    assert await queued(redis) == [f"capture:{session.id}"]


async def test_a_decision_that_keeps_losing_its_race_gives_up_and_writes_nothing(
    store: SessionStore,
) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=False)

    asked: list[Session | None] = []

    def stale(read: Session | None) -> Change:
        # Always decided on a state the session is no longer in.
        asked.append(read)
        return Change.of(Event.FAILED, at=3.0, due_at=None, expect=frozenset({State.SETTLING}))

    assert await store.decide_and_change(session.id, stale, attempts=3) is None
    assert len(asked) == 3  # each attempt on a fresh read, and no more
    assert await store.get(session.id) == session


async def test_a_decision_to_write_nothing_is_returned_as_it_is(store: SessionStore) -> None:
    assert await store.decide_and_change("gone", lambda read: read, attempts=1) == (None, None)
