"""The session queue keeps kombu's promises while taking many messages at once: every
message taken is recorded as kombu records a delivery, so kombu's own visibility-timeout
restore (real kombu, real redis-server) puts back what a dead worker took; acks forget,
giving back puts a message first in line, and a message that is not a session task is said
to be so. The intake's own messages (`CeleryHandoff`) are the ones queued."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import fakeredis
import orjson
import pytest
from kombu import Connection
from redis.asyncio import Redis

from config import Settings
from errors import BadMessage
from ops.redis_server import LocalRedis
from sessions.models import Kind
from transport.broker import TRANSPORT
from transport.celery_app import create_celery
from transport.messages import QUEUE, CeleryHandoff, task_name
from transport.session_queue import UNACKED, UNACKED_INDEX, SessionQueue, decode

DB = 14
HANDOFF = CeleryHandoff(create_celery(Settings()))


async def queue_sessions(redis: Redis | fakeredis.FakeAsyncRedis, *ids: str) -> None:
    for session_id in ids:
        # As the intake's script queues: kombu's publish pushes on the left.
        await redis.lpush(QUEUE, HANDOFF.envelope(Kind.CAPTURE, session_id).body)


def tag_of(raw: bytes) -> str:
    tag: str = orjson.loads(raw)["properties"]["delivery_tag"]
    return tag


async def test_taken_messages_come_oldest_first_each_recorded_as_kombu_records_a_delivery(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await queue_sessions(redis, "s1", "s2", "s3")
    queue = SessionQueue(redis)
    before = time.time()

    taken = await queue.take(2)

    assert [decode(raw).session_id for raw in taken] == ["s1", "s2"]
    assert await redis.llen(QUEUE) == 1
    for raw in taken:
        recorded = await redis.hget(UNACKED, tag_of(raw))
        assert recorded is not None
        assert json.loads(recorded) == [json.loads(raw), "", QUEUE]
        score = await redis.zscore(UNACKED_INDEX, tag_of(raw))
        assert score is not None
        assert before <= score <= time.time()
    assert [decode(raw).session_id for raw in await queue.take(10)] == ["s3"]
    assert await queue.take(10) == []


async def test_acked_deliveries_are_forgotten_and_given_back_ones_come_first_once(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await queue_sessions(redis, "s1", "s2", "s3")
    queue = SessionQueue(redis)
    first, second = (decode(raw) for raw in await queue.take(2))

    await queue.ack([tag_of(first.raw)])
    assert await queue.give_back([second]) == 1
    assert await queue.give_back([second]) == 0  # no longer recorded: not pushed twice

    assert await redis.hkeys(UNACKED) == []
    assert await redis.zcard(UNACKED_INDEX) == 0
    assert [decode(raw).session_id for raw in await queue.take(10)] == ["s2", "s3"]


async def test_an_idle_wait_takes_the_next_message_records_it_and_says_what_is_left(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    queue = SessionQueue(redis)
    assert await queue.wait(0.05) == ([], 0)
    await queue_sessions(redis, "s1", "s2")
    [raw], left = await queue.wait(0.05)
    assert decode(raw).session_id == "s1"
    assert left == 1
    assert await redis.hexists(UNACKED, tag_of(raw))


def test_a_message_that_is_not_a_session_task_is_refused_with_its_tag() -> None:
    good = json.loads(HANDOFF.envelope(Kind.REFUND, "s1").body)
    no_body = {**good, "body": "bm90IGpzb24="}  # base64 of "not json"
    with pytest.raises(BadMessage) as refused:
        decode(json.dumps(no_body).encode())
    assert refused.value.tag == good["properties"]["delivery_tag"]
    with pytest.raises(BadMessage):
        decode(b"[1, 2")
    delivery = decode(json.dumps(good).encode())
    assert (delivery.task, delivery.session_id, delivery.eta) == (
        task_name(Kind.REFUND),
        "s1",
        None,
    )


def test_a_countdown_message_celery_wrote_runs_at_its_eta() -> None:
    celery = create_celery(Settings())
    eta = datetime.now(UTC) + timedelta(seconds=30)
    built = celery.amqp.as_task_v2("t1", task_name(Kind.VOID), args=("s9",), eta=eta)
    message = json.loads(HANDOFF.envelope(Kind.VOID, "s9").body)
    message["headers"]["eta"] = built.headers["eta"]
    delivery = decode(json.dumps(message).encode())
    assert delivery.eta == pytest.approx(eta.timestamp(), abs=0.01)


@pytest.fixture
def broker_url(redis_server: LocalRedis) -> Iterator[str]:
    url = f"redis://127.0.0.1:{redis_server.port}/{DB}"
    return url


@pytest.fixture
async def real_redis(broker_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(broker_url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def test_kombu_puts_back_the_messages_a_dead_consumer_had_taken(
    real_redis: Redis, broker_url: str
) -> None:
    await queue_sessions(real_redis, "s1", "s2")
    taken = await SessionQueue(real_redis).take(10)
    assert len(taken) == 2
    assert await real_redis.llen(QUEUE) == 0
    # The consumer dies here. Any Celery worker's channel runs kombu's restore; with a
    # visibility timeout of 0 every recorded delivery is already due to come back.
    with Connection(
        broker_url, transport=TRANSPORT, transport_options={"visibility_timeout": 0}
    ) as connection:
        channel = connection.default_channel
        channel.qos.restore_visible(num=100, interval=1)

    assert await real_redis.hlen(UNACKED) == 0
    again = await SessionQueue(real_redis).take(10)
    assert sorted(decode(raw).session_id for raw in again) == ["s1", "s2"]
    assert all(orjson.loads(raw)["headers"]["redelivered"] for raw in again)
