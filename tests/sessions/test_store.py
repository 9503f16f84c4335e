"""The session store against fakeredis (the Lua scripts run in fakeredis' Lua engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import fakeredis
import pytest

from sessions.models import TimelineEvent
from sessions.states import State
from sessions.store import Created, SessionStore, StaleState
from tests.factories import make_session, received_event


@pytest.fixture
async def store() -> AsyncIterator[SessionStore]:
    redis = fakeredis.FakeAsyncRedis()
    yield SessionStore(redis)
    await redis.aclose()


async def test_a_created_session_reads_back_identically(store: SessionStore) -> None:
    session = make_session(amount=Decimal("12.30"), test=False)
    result = await store.create(session, received_event(), due_at=session.created_at + 60)
    assert result.status is Created.CREATED
    assert await store.get(session.id) == session
    assert [e.event for e in await store.timeline(session.id)] == ["received"]


async def test_the_same_request_again_is_a_duplicate_and_changes_nothing(
    store: SessionStore,
) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0)
    again = make_session(id=session.id, amount=Decimal("10.0"), request_id="other")
    result = await store.create(again, received_event(), due_at=0)
    assert result.status is Created.DUPLICATE
    assert await store.get(session.id) == session
    assert len(await store.timeline(session.id)) == 1


async def test_a_different_amount_under_the_same_id_is_a_conflict(store: SessionStore) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0)
    result = await store.create(
        make_session(id=session.id, amount=Decimal("11.00")), received_event(), due_at=0
    )
    assert result.status is Created.CONFLICT
    assert result.stored_fingerprint == session.fingerprint()
    assert (await store.get(session.id)) == session


async def test_update_moves_state_and_appends_to_the_timeline(store: SessionStore) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0)
    event = TimelineEvent(at=1.0, event="psp_attempt", state=State.SETTLING, attempt=1)
    before = await store.update(
        session.id, expect=(State.RECEIVED,), event=event, due_at=50.0, fields={"psp_attempts": 1}
    )
    assert before is State.RECEIVED
    stored = await store.get(session.id)
    assert stored is not None
    assert (stored.state, stored.psp_attempts) == (State.SETTLING, 1)
    assert [e.event for e in await store.timeline(session.id)] == ["received", "psp_attempt"]


async def test_update_from_an_unexpected_state_is_refused(store: SessionStore) -> None:
    session = make_session()
    await store.create(session, received_event(), due_at=0)
    event = TimelineEvent(at=1.0, event="reported", state=State.REPORTED)
    with pytest.raises(StaleState, match="received"):
        await store.update(session.id, expect=(State.SETTLED,), event=event, due_at=None)
    assert len(await store.timeline(session.id)) == 1


async def test_fields_set_to_none_are_removed(store: SessionStore) -> None:
    session = make_session(last_error="boom")
    await store.create(session, received_event(), due_at=0)
    event = TimelineEvent(at=1.0, event="psp_attempt", state=State.SETTLING)
    await store.update(
        session.id, expect=(State.RECEIVED,), event=event, due_at=1.0, fields={"last_error": None}
    )
    stored = await store.get(session.id)
    assert stored is not None
    assert stored.last_error is None


async def test_due_sessions_are_claimed_once_until_they_fall_due_again(
    store: SessionStore,
) -> None:
    early, late = make_session(), make_session()
    await store.create(early, received_event(), due_at=100.0)
    await store.create(late, received_event(), due_at=300.0)
    assert await store.claim_due(150.0, limit=10, hold_for=60.0) == [early.id]
    assert await store.claim_due(150.0, limit=10, hold_for=60.0) == []
    assert set(await store.claim_due(400.0, limit=10, hold_for=60.0)) == {early.id, late.id}


async def test_a_finished_session_leaves_the_due_set(store: SessionStore) -> None:
    session = make_session(state=State.SETTLED)
    await store.create(session, received_event(), due_at=10.0)
    event = TimelineEvent(at=1.0, event="reported", state=State.REPORTED)
    await store.update(session.id, expect=(State.SETTLED,), event=event, due_at=None)
    assert await store.due_count() == 0


async def test_a_lease_has_one_owner_until_released(store: SessionStore) -> None:
    assert await store.acquire_lease("s1", "worker-a", 30)
    assert not await store.acquire_lease("s1", "worker-b", 30)
    await store.release_lease("s1", "worker-b")  # not the owner: no effect
    assert not await store.acquire_lease("s1", "worker-b", 30)
    await store.release_lease("s1", "worker-a")
    assert await store.acquire_lease("s1", "worker-b", 30)
