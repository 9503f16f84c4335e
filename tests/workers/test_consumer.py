"""The session consumer runs the intake's queued messages with at most its limit in flight,
acknowledges each once its session's run has ended, lets a session that retries soon wait
without its slot, settles a duplicated message once, drops what is not a session task, and on
a drain gives back every message no run finished. The consumer, the runner and the intake's
messages against fakeredis, the simulator PSP and the sandbox Shopify as a real server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from decimal import Decimal

import fakeredis
import pytest

from config import Settings
from sessions.models import Kind, Op
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from tests.workers.conftest import ServicesFor
from transport.celery_app import create_celery
from transport.messages import QUEUE, CeleryHandoff
from transport.session_queue import UNACKED, UNACKED_INDEX, SessionQueue
from workers.connectors.base import Operation, Result
from workers.connectors.simulator import Magic, SimulatorConnector, magic_amount
from workers.consumer import SessionConsumer
from workers.lifecycle.moves import Policy
from workers.retry_policy import RetryPolicy
from workers.runtime import BY_TASK

HANDOFF = CeleryHandoff(create_celery(Settings()))


class PacedPSP(SimulatorConnector):
    """The simulator, `seconds` slow per capture, counting how many captures overlap."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis, seconds: float) -> None:
        super().__init__(redis)
        self.seconds = seconds
        self.now = 0
        self.peak = 0
        self.order: list[str] = []

    async def settle(self, kind: Op, operation: Operation) -> Result:
        if kind is not Op.CAPTURE:
            return await super().settle(kind, operation)
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(self.seconds)
            result = await super().settle(kind, operation)
            self.order.append(operation.idempotency_key)
            return result
        finally:
            self.now -= 1


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> SessionStore:
    return SessionStore(redis, HANDOFF)


Consuming = Callable[..., Awaitable[SessionConsumer]]


@pytest.fixture
async def consuming(
    redis: fakeredis.FakeAsyncRedis, services_for: ServicesFor
) -> AsyncIterator[Consuming]:
    started: list[SessionConsumer] = []

    async def start(
        psp: SimulatorConnector, *, in_flight: int, **policy: Policy
    ) -> SessionConsumer:
        services = services_for(psp)
        if "policy" in policy:
            services = replace(services, policy=policy["policy"])
        consumer = SessionConsumer(
            SessionQueue(redis),
            services,
            BY_TASK,
            in_flight=in_flight,
            longest_wait=60,
            idle_wait=0.05,
        )
        consumer.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        await consumer.drain(1)


async def queue_captures(store: SessionStore, count: int, amount: str = "10.00") -> list[str]:
    ids = []
    for _ in range(count):
        session = make_session(amount=Decimal(amount))
        await store.create(session, received_event(), due_at=time.time() + 60, queue=True)
        ids.append(session.id)
    return ids


async def until_final(store: SessionStore, ids: list[str], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sessions = [await store.get(i) for i in ids]
        if all(s is not None and s.state is State.REPORTED for s in sessions):
            return
        await asyncio.sleep(0.02)
    raise AssertionError([s.state if s else None for s in sessions])


async def nothing_unacked(redis: fakeredis.FakeAsyncRedis, seconds: float = 2) -> None:
    for _ in range(int(seconds / 0.01)):
        if not await redis.hlen(UNACKED):
            break
        await asyncio.sleep(0.01)
    assert await redis.hlen(UNACKED) == 0
    assert await redis.zcard(UNACKED_INDEX) == 0


async def test_queued_sessions_all_report_with_at_most_the_limit_in_flight_every_message_acked(
    redis: fakeredis.FakeAsyncRedis, store: SessionStore, consuming: Consuming
) -> None:
    psp = PacedPSP(redis, 0.02)
    ids = await queue_captures(store, 30)
    await consuming(psp, in_flight=8)

    await until_final(store, ids)

    assert psp.peak == 8
    assert await redis.llen(QUEUE) == 0
    await nothing_unacked(redis)
    assert [(await psp.book(Op.CAPTURE, i)).charges for i in ids] == [1] * 30


async def test_a_message_queued_twice_settles_its_session_once(
    redis: fakeredis.FakeAsyncRedis, store: SessionStore, consuming: Consuming
) -> None:
    psp = PacedPSP(redis, 0.05)
    [session_id] = await queue_captures(store, 1)
    await redis.lpush(QUEUE, HANDOFF.envelope(Kind.CAPTURE, session_id).body)
    await consuming(psp, in_flight=4)

    await until_final(store, [session_id])
    await nothing_unacked(redis)

    assert (await psp.book(Op.CAPTURE, session_id)).calls == 1


async def test_a_session_retrying_soon_waits_without_its_slot_and_keeps_its_message(
    redis: fakeredis.FakeAsyncRedis, store: SessionStore, consuming: Consuming
) -> None:
    psp = PacedPSP(redis, 0)
    # ...53: the simulator answers 503 three times before it approves.
    [flaky] = await queue_captures(store, 1, amount=magic_amount(Magic.FLAKY))
    # Retries a second apart: room enough, on a busy host too, for another session to run
    # in the slot while the flaky one waits.
    ladder = RetryPolicy((1.0,), max_attempts=6)
    policy = Policy(psp=ladder, shopify=ladder, lease_seconds=10, max_deliveries=5)
    await consuming(psp, in_flight=1, policy=policy)
    for _ in range(200):
        if (await psp.book(Op.CAPTURE, flaky)).calls:
            break
        await asyncio.sleep(0.01)
    # The flaky session is waiting for its retry: its message stays recorded, and the one
    # slot is free for the next session.
    assert await redis.hlen(UNACKED) == 1
    [steady] = await queue_captures(store, 1)

    await until_final(store, [steady], seconds=0.8)
    waiting = await store.get(flaky)
    assert waiting is not None
    assert waiting.state is State.SETTLING
    await until_final(store, [flaky])
    await nothing_unacked(redis)

    assert psp.order.count(steady) == 1
    assert psp.order[-1] == flaky
    assert (await psp.book(Op.CAPTURE, flaky)).calls == 4


async def test_a_drain_gives_back_every_message_no_run_finished(
    redis: fakeredis.FakeAsyncRedis, store: SessionStore, consuming: Consuming
) -> None:
    psp = PacedPSP(redis, 30)  # never answers within the drain
    ids = await queue_captures(store, 6)
    consumer = await consuming(psp, in_flight=4)
    for _ in range(500):
        if psp.now == 4:
            break
        await asyncio.sleep(0.01)

    began = time.monotonic()
    await consumer.drain(0.2)

    assert time.monotonic() - began < 3
    assert await redis.hlen(UNACKED) == 0
    # The two never taken, then the four given back, each once; the next take starts with
    # the ones given back.
    queued = [json.loads(raw)["headers"]["argsrepr"] for raw in await redis.lrange(QUEUE, 0, -1)]
    assert sorted(queued) == sorted(f"('{i}',)" for i in ids)


async def test_a_message_that_is_no_session_task_is_dropped_and_the_rest_run(
    redis: fakeredis.FakeAsyncRedis, store: SessionStore, consuming: Consuming
) -> None:
    stranger = json.loads(HANDOFF.envelope(Kind.CAPTURE, "whatever").body)
    stranger["headers"]["task"] = "someone.else"
    await redis.lpush(QUEUE, json.dumps(stranger), b"not json at all")
    ids = await queue_captures(store, 2)
    await consuming(PacedPSP(redis, 0), in_flight=4)

    await until_final(store, ids)
    await nothing_unacked(redis)
    assert await redis.llen(QUEUE) == 0


async def test_a_drain_lets_a_session_waiting_for_its_retry_go_to_the_due_set(
    redis: fakeredis.FakeAsyncRedis, store: SessionStore, consuming: Consuming
) -> None:
    [flaky] = await queue_captures(store, 1, amount=magic_amount(Magic.FLAKY))
    ladder = RetryPolicy((30.0,), max_attempts=6)
    policy = Policy(psp=ladder, shopify=ladder, lease_seconds=10, max_deliveries=5)
    consumer = await consuming(PacedPSP(redis, 0), in_flight=2, policy=policy)
    for _ in range(200):
        if any(held.waiting_until for held in consumer.running()):
            break
        await asyncio.sleep(0.01)

    await consumer.drain(1)

    assert await redis.hlen(UNACKED) == 0
    assert await redis.llen(QUEUE) == 0  # not given back: it is not due for 30 s
    waiting = await store.get(flaky)
    assert waiting is not None
    assert waiting.state is State.SETTLING
    assert await store.due_count() == 1
