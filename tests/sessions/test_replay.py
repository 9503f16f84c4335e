"""Replaying failed sessions (`sessions.replay`) through the one write path, against fakeredis:
back to the recovery point and queued in one step, each failure replayed at most once."""

from __future__ import annotations

import fakeredis
import pytest

from errors import StaleState
from sessions import decisions
from sessions.change import Change
from sessions.keys import DUE, failed_index
from sessions.models import Outcome
from sessions.replay import replay
from sessions.states import Event, State
from sessions.store import SessionStore
from tests.factories import ListHandoff, change_to, make_session, received_event


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> SessionStore:
    return SessionStore(redis, ListHandoff())


async def failed(store: SessionStore, **fields: object) -> None:
    session = make_session(**fields)
    await store.create(session, received_event(), due_at=0, queue=False)
    await store.change(session, change_to(Event.FAILED, at=2.0, failed_at=2.0, last_error="x"))


async def queued(redis: fakeredis.FakeAsyncRedis) -> list[str]:
    return [m.decode() for m in await redis.lrange(ListHandoff.queue, 0, -1)]


@pytest.mark.parametrize(
    ("outcome", "resumes"), [(None, State.RECEIVED), (Outcome.APPROVED, State.SETTLED)]
)
async def test_a_replay_resumes_at_the_recovery_point_queued_and_out_of_the_failed_index(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis, outcome: Outcome | None, resumes: State
) -> None:
    await failed(store, id="s1", outcome=outcome, deliveries=7, phase_attempts=3)

    [done] = await replay(store, ["s1"], lease_seconds=30, per_second=0)

    assert (done.state, done.note) == (resumes, f"resumes at {resumes}")
    session = await store.get("s1")
    assert session is not None
    assert (session.state, session.replays, session.deliveries) == (resumes, 1, 0)
    assert (session.phase_attempts, session.failed_at, session.not_before) == (0, None, None)
    assert await queued(redis) == ["capture:s1"]
    assert await redis.zscore(failed_index(), "s1") is None
    assert await redis.zscore(DUE, "s1") is not None
    timeline = await store.timeline("s1")
    assert (timeline[-1].event, timeline[-1].state) == ("replayed", resumes)


async def test_a_replay_from_a_read_older_than_another_replay_changes_nothing(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    # Two operators replay the same dead letter: the second read it before the first
    # replay, whose run then failed again before the second's write landed.
    await failed(store, id="s1")
    stale = await store.get("s1")
    assert stale is not None
    await replay(store, ["s1"], lease_seconds=30, per_second=0)
    again = await store.get("s1")
    assert again is not None
    await store.change(again, change_to(Event.FAILED, at=3.0, failed_at=3.0, last_error="y"))

    late = decisions.replay(stale, 4.0, actor="operator", lease_seconds=30)
    assert isinstance(late, Change)
    with pytest.raises(StaleState):
        await store.change(stale, late, queue=True)

    session = await store.get("s1")
    assert session is not None
    assert (session.state, session.replays, session.last_error) == (State.FAILED, 1, "y")
    assert await queued(redis) == ["capture:s1"]


async def test_a_session_that_is_not_failed_or_not_there_is_not_replayed(
    store: SessionStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    session = make_session(id="s1")
    await store.create(session, received_event(), due_at=0, queue=False)

    done = await replay(store, ["s1", "gone"], lease_seconds=30, per_second=0)

    assert [(r.state, r.note) for r in done] == [
        (None, "not failed (it is received)"),
        (None, "no such session"),
    ]
    assert await store.get("s1") == session
    assert await queued(redis) == []


async def test_a_bulk_replay_paces_its_writes_and_waits_for_nothing_else(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("sessions.replay.asyncio.sleep", wait)
    for session_id in ("live1", "live2"):
        live = make_session(id=session_id)
        await store.create(live, received_event(), due_at=0, queue=False)
    await failed(store, id="f1")
    await failed(store, id="f2")

    done = await replay(
        store, ["live1", "f1", "gone", "live2", "f2"], lease_seconds=30, per_second=4
    )

    assert [r.state for r in done] == [None, State.RECEIVED, None, None, State.RECEIVED]
    assert waits == [0.25]  # between the two writes only
