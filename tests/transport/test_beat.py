"""The beat lock: one holder at a time, kept while it ticks, taken over once it lapses."""

from __future__ import annotations

import time

import fakeredis
import pytest
from celery import Celery

from sessions.keys import BEAT_LOCK
from transport.beat import BeatLock, LockedScheduler


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_one_beat_holds_the_lock_and_the_other_waits(redis: fakeredis.FakeRedis) -> None:
    first = BeatLock(redis, seconds=5, owner="host-a")
    second = BeatLock(redis, seconds=5, owner="host-b")
    assert first.hold()
    assert not second.hold()
    # Extending keeps it: the holder ticks, the other keeps asking.
    assert first.hold()
    assert not second.hold()
    assert redis.get(BEAT_LOCK) == b"host-a"


def test_a_released_or_lapsed_lock_is_taken_over(redis: fakeredis.FakeRedis) -> None:
    first = BeatLock(redis, seconds=0.2, owner="host-a")
    second = BeatLock(redis, seconds=0.2, owner="host-b")
    assert first.hold()
    first.release()
    assert second.hold()
    # host-b dies without a word: its lock lapses and host-a takes over.
    time.sleep(0.3)
    assert first.hold()
    # A release by a beat that no longer holds the lock leaves the holder's alone.
    second.release()
    assert redis.get(BEAT_LOCK) == b"host-a"


def test_a_scheduler_without_the_lock_sends_nothing(redis: fakeredis.FakeRedis) -> None:
    app = Celery("beat-test", broker="memory://", set_as_current=False)
    sent: list[str] = []
    app.conf.beat_schedule = {"sweep": {"task": "payhook.sweep", "schedule": 0.01}}
    BeatLock(redis, seconds=5, owner="elsewhere").hold()
    scheduler_class = type(
        "Scheduler", (LockedScheduler,), {"lock": BeatLock(redis, seconds=3, owner="here")}
    )
    scheduler = scheduler_class(app=app)
    scheduler.apply_async = lambda entry, **_: sent.append(entry.task)  # type: ignore[method-assign,assignment,misc]
    time.sleep(0.02)
    assert scheduler.tick() == pytest.approx(1.0)
    assert sent == []
    redis.delete(BEAT_LOCK)
    time.sleep(0.02)
    scheduler.tick()
    assert sent == ["payhook.sweep"]
