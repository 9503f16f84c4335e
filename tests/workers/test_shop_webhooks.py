"""Processing Shopify's webhooks: the ladder's decisions as pure functions, and runs against a
real redis-server: claimed under a fenced lease, done once, retried and dead-lettered when
the work fails, replayed, and queued again by the sweep when due."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from config import Settings
from errors import LeaseLost
from sessions.keys import timeline_key
from sessions.states import State
from sessions.store import SessionStore
from shops.tokens import ShopTokens
from shops.webhook_store import WebhookClaim, WebhookStore, fingerprint, replay_webhooks
from shops.webhooks import (
    WEBHOOK_DUE,
    WEBHOOK_RECEIVED,
    HookState,
    Topic,
    Webhook,
    WebhookEvent,
    webhook_key,
)
from tests.factories import SHOP, RedisDb, make_session, received_event
from transport.celery_app import create_celery
from transport.messages import WEBHOOK_QUEUE, CeleryHandoff
from workers.retry_policy import RetryPolicy
from workers.shop_webhooks import (
    DeadLettered,
    NotRun,
    Processed,
    Retrying,
    WebhookServices,
    decide_done,
    decide_failure,
    process,
)
from workers.sweeper import sweep

DB = 12
POLICY = RetryPolicy((1.0, 2.0), max_attempts=3, deadline_seconds=0)


def received(webhook_id: str = "wh-1", **fields: object) -> Webhook:
    now = time.time()
    values: dict[str, object] = {
        "id": webhook_id,
        "topic": Topic.APP_UNINSTALLED,
        "shop": SHOP,
        "triggered_at": now,
        "received_at": now,
        "state": HookState.RECEIVED,
        "updated_at": now,
        "round_since": now,
        **fields,
    }
    return Webhook.model_validate(values)


def test_a_failure_retries_on_the_ladder_until_its_cap_and_deadline_have_passed() -> None:
    webhook = received(round_since=100.0)
    first = decide_failure(webhook, "boom", POLICY, 101.0)
    assert first.state is HookState.RETRYING
    assert isinstance(first.step, Retrying)
    assert 0 <= first.step.delay <= 1.0
    assert first.due_at == first.fields["not_before"] == 101.0 + first.step.delay
    third = decide_failure(webhook.model_copy(update={"attempts": 2}), "boom", POLICY, 102.0)
    assert third.state is HookState.FAILED
    assert (third.fields["attempts"], third.due_at) == (3, None)
    patient = replace(POLICY, deadline_seconds=3600)
    waits = decide_failure(webhook.model_copy(update={"attempts": 9}), "boom", patient, 200.0)
    assert waits.state is HookState.RETRYING  # the deadline has not passed yet


def test_done_drops_the_customer_identifiers_it_was_given() -> None:
    decision = decide_done("ok", 5.0)
    assert decision.fields["payload"] is None
    assert (decision.state, decision.due_at) == (HookState.DONE, None)


@pytest.fixture
async def redis(redis_db: RedisDb) -> Redis:
    return await redis_db(DB)


@pytest.fixture
def hooks(redis: Redis) -> WebhookStore:
    handoff = CeleryHandoff(create_celery(Settings()))
    return WebhookStore(redis, handoff, retention_seconds=600)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def services(redis: Redis, hooks: WebhookStore, clock: Clock) -> WebhookServices:
    return WebhookServices(
        hooks=hooks,
        store=SessionStore(redis),
        tokens=ShopTokens(redis),
        policy=POLICY,
        lease_seconds=5,
        clock=clock,
    )


async def take_in(hooks: WebhookStore, webhook: Webhook) -> None:
    event = WebhookEvent(at=webhook.received_at, event="received", state=HookState.RECEIVED)
    await hooks.receive(
        webhook, event, fingerprint=fingerprint(webhook.topic, webhook.shop, b"{}"), due_at=0
    )


async def test_a_webhook_is_processed_once_and_its_record_expires(
    redis: Redis, hooks: WebhookStore
) -> None:
    clock = Clock()
    await take_in(hooks, received(payload='{"email": "x@example.com"}'))
    step = await process("wh-1", services(redis, hooks, clock))
    assert isinstance(step, Processed)
    assert "token" in step.result
    again = await process("wh-1", services(redis, hooks, clock))
    assert isinstance(again, NotRun)
    assert "finished" in again.reason
    done = await hooks.get("wh-1")
    assert done is not None
    assert (done.state, done.payload) == (HookState.DONE, None)
    assert 0 < await redis.ttl(webhook_key("wh-1")) <= 600
    assert await redis.zscore(WEBHOOK_DUE, "wh-1") is None
    # Done, it is replayed only when asked to do its work again, and then kept until done.
    [refused] = await replay_webhooks(hooks, ["wh-1"], lease_seconds=5, now=clock.now)
    assert not refused.replayed
    [again] = await replay_webhooks(hooks, ["wh-1"], lease_seconds=5, now=clock.now, again=True)
    assert again.replayed
    assert await redis.ttl(webhook_key("wh-1")) == -1
    assert isinstance(await process("wh-1", services(redis, hooks, clock)), Processed)


async def test_a_done_customer_webhook_is_never_done_again(
    redis: Redis, hooks: WebhookStore
) -> None:
    customer = received(topic=Topic.CUSTOMERS_REDACT, payload='{"email": "x@example.com"}')
    await take_in(hooks, customer)
    assert isinstance(await process("wh-1", services(redis, hooks, Clock())), Processed)
    [refused] = await replay_webhooks(hooks, ["wh-1"], lease_seconds=5, now=1.0, again=True)
    assert (refused.replayed, refused.note) == (False, "not failed (it is done)")


async def test_failing_work_is_retried_dead_lettered_then_replayed(
    redis: Redis, hooks: WebhookStore
) -> None:
    clock = Clock()
    store = SessionStore(redis)
    stuck = make_session()
    await store.create(stuck, received_event(), due_at=clock.now + 30, queue=False)
    await redis.delete(timeline_key(stuck.id))
    await redis.set(timeline_key(stuck.id), "not a list")  # no write to it can succeed
    await take_in(hooks, received())
    steps = []
    for _ in range(3):
        steps.append(await process("wh-1", services(redis, hooks, clock)))
        if isinstance(steps[-1], Retrying) and steps[-1].delay > 0.5:
            # Inside its backoff (full jitter may draw one too short to tell), nothing runs.
            early = await process("wh-1", services(redis, hooks, clock))
            assert isinstance(early, NotRun)
            assert "early" in early.reason
        clock.now += 2.5  # past the backoff
    assert [type(s) for s in steps] == [Retrying, Retrying, DeadLettered]
    dead = await hooks.get("wh-1")
    assert dead is not None
    assert (dead.state, dead.attempts) == (HookState.FAILED, 3)
    assert stuck.id in (dead.last_error or "")
    assert [w.id for w in await hooks.failed(10)] == ["wh-1"]

    await redis.delete(timeline_key(stuck.id))
    replayed = await replay_webhooks(hooks, ["wh-1"], lease_seconds=5, now=clock.now)
    assert [r.replayed for r in replayed] == [True]
    assert await redis.llen(WEBHOOK_QUEUE) == 2  # received, replayed
    assert isinstance(await process("wh-1", services(redis, hooks, clock)), Processed)
    assert await hooks.failed(10) == []
    failed = await store.get(stuck.id)
    assert failed is not None
    assert failed.state is State.FAILED
    again = await replay_webhooks(hooks, ["wh-1", "nope"], lease_seconds=5, now=clock.now)
    assert [r.note for r in again] == ["not failed (it is done)", "no such webhook"]


async def test_a_run_that_lost_its_lease_stores_nothing(redis: Redis, hooks: WebhookStore) -> None:
    await take_in(hooks, received())
    first = await hooks.claim("wh-1", now=time.time(), lease_seconds=0.001)
    assert isinstance(first, WebhookClaim)
    await asyncio.sleep(0.01)
    second = await hooks.claim("wh-1", now=time.time(), lease_seconds=5)
    assert isinstance(second, WebhookClaim)
    event = WebhookEvent(at=time.time(), event="done", state=HookState.DONE)
    with pytest.raises(LeaseLost):
        await hooks.settle("wh-1", first.fence, HookState.DONE, event, fields={}, due_at=None)
    stored = await hooks.get("wh-1")
    assert stored is not None
    assert (stored.state, stored.fence) == (HookState.RECEIVED, second.fence)


async def test_a_second_worker_finds_the_webhook_busy_and_does_nothing(
    redis: Redis, hooks: WebhookStore
) -> None:
    await take_in(hooks, received())
    first = await hooks.claim("wh-1", now=time.time(), lease_seconds=30)
    assert isinstance(first, WebhookClaim)
    second = await process("wh-1", services(redis, hooks, Clock()))
    assert isinstance(second, NotRun)
    assert "busy" in second.reason
    stored = await hooks.get("wh-1")
    assert stored is not None
    assert (stored.state, stored.deliveries, stored.fence) == (
        HookState.RECEIVED,
        1,
        first.fence,
    )


async def test_the_sweep_forgets_webhooks_past_their_retention_and_keeps_the_rest(
    redis: Redis, hooks: WebhookStore
) -> None:
    now = time.time()
    await take_in(hooks, received("wh-old", received_at=now - 700, state=HookState.DONE))
    await take_in(hooks, received("wh-new", received_at=now - 10, state=HookState.DONE))

    await sweep(SessionStore(redis), now=now, limit=10, hold_for=5, prune_seconds=0, webhooks=hooks)

    # The listing keeps what the retention (600 s here) still covers.
    assert await redis.zscore(WEBHOOK_RECEIVED, "wh-old") is None
    assert await redis.zscore(WEBHOOK_RECEIVED, "wh-new") is not None
    assert [w.id for w in await hooks.recent(10)] == ["wh-new"]


async def test_the_sweep_queues_a_due_webhook_again_and_holds_it_a_lease_ahead(
    redis: Redis, hooks: WebhookStore
) -> None:
    await take_in(hooks, received())
    await redis.delete(WEBHOOK_QUEUE)  # its message was lost
    now = time.time()
    await sweep(SessionStore(redis), now=now, limit=10, hold_for=5, prune_seconds=0, webhooks=hooks)
    assert await redis.llen(WEBHOOK_QUEUE) == 1
    assert await redis.zscore(WEBHOOK_DUE, "wh-1") == pytest.approx(now + 5)
    await sweep(SessionStore(redis), now=now, limit=10, hold_for=5, prune_seconds=0, webhooks=hooks)
    assert await redis.llen(WEBHOOK_QUEUE) == 1  # not due again yet
