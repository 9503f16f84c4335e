"""Shopify's webhooks in Redis, with the durability sessions have.

A webhook is stored, put in its due set and queued in one Lua call before Shopify hears
`200`; a repeat of its `X-Shopify-Webhook-Id` changes nothing. A worker claims it (a lease
carrying a fencing token, as for sessions), and every write of what came of an attempt
carries the token and is one Lua call: done, a retry (due again at its time, when the
sweeper queues it again), or a dead letter (`whidx:failed`), which a replay puts back. A lost
task message or a worker killed mid-run leaves the webhook in the due set, and the sweeper
queues it again once its lease has run out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from redis.asyncio import Redis

from errors import LeaseLost, StaleState, StoreCorrupt
from redisio.replication import NONE, Replication
from sessions.change import field_value
from sessions.handoff import Envelope, WebhookHandoff
from sessions.keys import WRONG_TYPE, text
from sessions.leases import (
    EARLY_TOLERANCE_SECONDS,
    TAKE_LEASE,
    LeaseScripts,
    Refusal,
    hash_fields,
)
from shops.webhooks import (
    EVENTS_MAX,
    SHOP_TOPICS,
    WEBHOOK_DUE,
    WEBHOOK_FAILED,
    WEBHOOK_RECEIVED,
    HookState,
    Topic,
    Webhook,
    WebhookEvent,
    webhook_events_key,
    webhook_key,
    webhook_lease_key,
    webhook_report_key,
)

__all__ = ["Received", "WebhookClaim", "WebhookStore", "fingerprint"]


# KEYS: record, events, received index, due set, queue. ARGV: fingerprint, id, received_at,
# due_at, task message, fields (JSON object), first event.
_RECEIVE = (
    WRONG_TYPE
    + """
local bad = wrong_type({KEYS[1], 'hash', KEYS[2], 'list', KEYS[3], 'zset', KEYS[4], 'zset',
                        KEYS[5], 'list'})
if bad then return {'wrongtype', bad} end
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if fp then
  if fp ~= ARGV[1] then return {'conflict'} end
  -- Written again as it is, so a WAIT after it covers the first delivery's write.
  redis.call('HSET', KEYS[1], 'fingerprint', fp)
  return {'duplicate'}
end
local flat = {'fingerprint', ARGV[1]}
for name, value in pairs(cjson.decode(ARGV[6])) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('RPUSH', KEYS[2], ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
if ARGV[5] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[5]) end
return {'created'}
"""
)

_CLAIM = (
    TAKE_LEASE
    + """
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'received' and state ~= 'retrying' then return {'finished', state} end
local refused = lease_refused(KEYS[1], KEYS[2], now, tonumber(ARGV[4]))
if refused then return {refused, state} end
take_lease(KEYS[1], KEYS[2], lease_ms)
redis.call('ZADD', KEYS[3], now + lease_ms / 1000, ARGV[3])
return {'claimed', redis.call('HGETALL', KEYS[1])}
"""
)

# A fenced write of what an attempt came to. KEYS: record, events, due set, failed index,
# lease. ARGV: fence, target state, fields to set (JSON object), fields to clear (JSON
# list), event, due_at ('' leaves the due set), id, retention seconds (for done), events kept.
_SETTLE = (
    WRONG_TYPE
    + """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {'missing'} end
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then
  return {'fenced', redis.call('HGET', KEYS[1], 'fence') or '0'}
end
if current ~= 'received' and current ~= 'retrying' then return {'refused', current} end
local bad = wrong_type({KEYS[2], 'list', KEYS[3], 'zset', KEYS[4], 'zset', KEYS[5], 'string'})
if bad then return {'wrongtype', bad} end
local target = ARGV[2]
redis.call('HSET', KEYS[1], 'state', target)
for name, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[1], name, value) end
for _, name in ipairs(cjson.decode(ARGV[4])) do redis.call('HDEL', KEYS[1], name) end
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[9]), -1)
if ARGV[6] == '' then redis.call('ZREM', KEYS[3], ARGV[7])
else redis.call('ZADD', KEYS[3], ARGV[6], ARGV[7]) end
if target == 'failed' then
  redis.call('ZADD', KEYS[4], redis.call('HGET', KEYS[1], 'updated_at'), ARGV[7])
end
if target == 'done' then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[8]))
end
if redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
return {'ok', current}
"""
)

# KEYS: record, events, due set, failed index, queue. ARGV: now, event, due_at, id, message,
# '1' to take a done webhook too (it no longer expires).
_REPLAY = (
    WRONG_TYPE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'failed' and not (state == 'done' and ARGV[6] == '1') then
  return {'refused', state or 'missing'}
end
local bad = wrong_type({KEYS[2], 'list', KEYS[3], 'zset', KEYS[4], 'zset', KEYS[5], 'list'})
if bad then return {'wrongtype', bad} end
redis.call('HSET', KEYS[1], 'state', 'received', 'updated_at', ARGV[1], 'attempts', 0,
           'round_since', ARGV[1], 'deliveries', 0)
redis.call('HDEL', KEYS[1], 'failed_at', 'not_before', 'done_at')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
if ARGV[5] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[5]) end
return {'ok'}
"""
)

# Due webhooks, each pushed `hold` ahead; an id whose record is gone leaves the set.
_CLAIM_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local found = {}
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[4] .. id) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    table.insert(found, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return found
"""


class Received(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class WebhookClaim:
    webhook: Webhook

    @property
    def fence(self) -> int:
        return self.webhook.fence


@dataclass(frozen=True)
class NotClaimed:
    reason: Refusal
    state: str | None = None


def fingerprint(topic: Topic, shop: str, body: bytes) -> str:
    """What a repeated webhook id must repeat: its topic, its shop and its body."""
    return f"{topic}|{shop}|{hashlib.sha256(body).hexdigest()}"


def decode(fields: Mapping[Any, Any]) -> Webhook | None:
    data = {text(k): text(v) for k, v in fields.items()}
    data.pop("fingerprint", None)
    return Webhook.model_validate(data) if data else None


class WebhookStore:
    def __init__(
        self,
        redis: Redis,
        handoff: WebhookHandoff | None = None,
        *,
        replication: Replication = NONE,
        retention_seconds: int = 30 * 86400,
    ) -> None:
        self._redis = redis
        self._handoff = handoff
        self._replication = replication
        self._retention = retention_seconds
        self._receive = redis.register_script(_RECEIVE)
        self._claim = redis.register_script(_CLAIM)
        self._leases = LeaseScripts(
            redis, record_key=webhook_key, lease_key=webhook_lease_key, due=WEBHOOK_DUE
        )
        self._settle = redis.register_script(_SETTLE)
        self._replay = redis.register_script(_REPLAY)
        self._claim_due = redis.register_script(_CLAIM_DUE)

    def _envelope(self, webhook_id: str) -> Envelope | None:
        return None if self._handoff is None else self._handoff.webhook_envelope(webhook_id)

    async def receive(
        self, webhook: Webhook, event: WebhookEvent, *, fingerprint: str, due_at: float
    ) -> Received:
        """Store a new webhook, its due entry and its task message in one step; a repeat of
        its id (same topic, shop and body) changes nothing. Returns once the required
        replicas hold it (`NotReplicated` otherwise: the record stays)."""
        envelope = self._envelope(webhook.id)
        fields = {
            name: field_value(value)
            for name, value in webhook.model_dump(mode="json").items()
            if value is not None
        }
        reply = await self._replication.run(
            self._redis,
            self._receive,
            [
                webhook_key(webhook.id),
                webhook_events_key(webhook.id),
                WEBHOOK_RECEIVED,
                WEBHOOK_DUE,
                envelope.queue if envelope else "",
            ],
            [
                fingerprint,
                webhook.id,
                repr(webhook.received_at),
                repr(due_at),
                envelope.body if envelope else "",
                orjson.dumps(fields),
                event.model_dump_json(exclude_none=True),
            ],
        )
        if text(reply[0]) == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        return Received(text(reply[0]))

    async def get(self, webhook_id: str) -> Webhook | None:
        return decode(await self._redis.hgetall(webhook_key(webhook_id)))

    async def get_many(self, ids: Sequence[str]) -> list[Webhook | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(webhook_key(webhook_id))
            found = await pipe.execute()
        return [decode(fields) for fields in found]

    async def events(self, webhook_id: str) -> list[WebhookEvent]:
        raw = await self._redis.lrange(webhook_events_key(webhook_id), 0, -1)
        return [WebhookEvent.model_validate_json(item) for item in raw]

    async def claim(
        self, webhook_id: str, *, now: float, lease_seconds: float
    ) -> WebhookClaim | NotClaimed:
        reply = await self._claim(
            keys=[webhook_key(webhook_id), webhook_lease_key(webhook_id), WEBHOOK_DUE],
            args=[repr(now), int(lease_seconds * 1000), webhook_id, EARLY_TOLERANCE_SECONDS],
        )
        verdict = text(reply[0])
        if verdict != "claimed":
            return NotClaimed(Refusal(verdict), text(reply[1]) if len(reply) > 1 else None)
        webhook = decode(hash_fields(reply[1]))
        assert webhook is not None
        return WebhookClaim(webhook)

    async def renew(self, webhook_id: str, fence: int, *, lease_seconds: float, now: float) -> bool:
        return await self._leases.renew(webhook_id, fence, lease_seconds=lease_seconds, now=now)

    async def release(self, webhook_id: str, fence: int) -> None:
        await self._leases.release(webhook_id, fence)

    async def settle(
        self,
        webhook_id: str,
        fence: int,
        state: HookState,
        event: WebhookEvent,
        *,
        fields: Mapping[str, object | None],
        due_at: float | None,
    ) -> None:
        """Store what an attempt came to under the claim's fence, releasing the lease.

        Raises `LeaseLost` when another claim took the webhook over, `StaleState` when it
        is no longer unfinished.
        """
        updates = {"updated_at": event.at, **fields}
        reply = await self._settle(
            keys=[
                webhook_key(webhook_id),
                webhook_events_key(webhook_id),
                WEBHOOK_DUE,
                WEBHOOK_FAILED,
                webhook_lease_key(webhook_id),
            ],
            args=[
                str(fence),
                state.value,
                json.dumps({k: field_value(v) for k, v in updates.items() if v is not None}),
                json.dumps([k for k, v in updates.items() if v is None]),
                event.model_dump_json(exclude_none=True),
                "" if due_at is None else repr(due_at),
                webhook_id,
                str(self._retention),
                str(EVENTS_MAX),
            ],
        )
        verdict = text(reply[0])
        if verdict == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        if verdict == "fenced":
            raise LeaseLost(webhook_id, fence, int(text(reply[1])))
        if verdict != "ok":
            raise StaleState(webhook_id, text(reply[1]) if len(reply) > 1 else None)

    async def replay(
        self, webhook_id: str, event: WebhookEvent, *, due_at: float, done_too: bool = False
    ) -> None:
        """Put a dead letter back, its round starting over, and queue it, atomically;
        `StaleState` unless it is failed (or, with `done_too`, done)."""
        envelope = self._envelope(webhook_id)
        reply = await self._replay(
            keys=[
                webhook_key(webhook_id),
                webhook_events_key(webhook_id),
                WEBHOOK_DUE,
                WEBHOOK_FAILED,
                envelope.queue if envelope else "",
            ],
            args=[
                repr(event.at),
                event.model_dump_json(exclude_none=True),
                repr(due_at),
                webhook_id,
                envelope.body if envelope else "",
                "1" if done_too else "",
            ],
        )
        if text(reply[0]) == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        if text(reply[0]) != "ok":
            raise StaleState(webhook_id, text(reply[1]))

    async def requeue_due(self, now: float, *, limit: int, hold_for: float) -> list[str]:
        """Queue again up to `limit` webhooks whose due time has passed (the sweeper)."""
        found = await self._claim_due(
            keys=[WEBHOOK_DUE], args=[repr(now), limit, repr(now + hold_for), webhook_key("")]
        )
        ids = [text(i) for i in found]
        envelopes = [e for e in (self._envelope(i) for i in ids) if e is not None]
        if envelopes:
            async with self._redis.pipeline(transaction=False) as pipe:
                for envelope in envelopes:
                    pipe.lpush(envelope.queue, envelope.body)
                await pipe.execute()
        return ids if envelopes else []

    async def forget_expired(self, now: float) -> int:
        """Drop webhooks received before the retention period from the listing (their
        records have expired; dead letters stay in the failed index)."""
        dropped: int = await self._redis.zremrangebyscore(
            WEBHOOK_RECEIVED, "-inf", repr(now - self._retention)
        )
        return dropped

    async def recent(self, limit: int) -> list[Webhook]:
        ids = [text(i) for i in await self._redis.zrevrange(WEBHOOK_RECEIVED, 0, limit - 1)]
        return [w for w in await self.get_many(ids) if w is not None]

    async def failed(self, limit: int) -> list[Webhook]:
        ids = [text(i) for i in await self._redis.zrange(WEBHOOK_FAILED, 0, limit - 1)]
        return [w for w in await self.get_many(ids) if w is not None]

    async def of_shop(self, shop: str) -> list[Webhook]:
        """The shop's webhooks still in the listing (received within the retention)."""
        found: list[Webhook] = []
        cursor = 0
        while True:
            cursor, page = await self._redis.zscan(WEBHOOK_RECEIVED, cursor, count=500)
            webhooks = await self.get_many([text(member) for member, _ in page])
            found += [w for w in webhooks if w is not None and w.shop == shop]
            if cursor == 0:
                return found

    async def save_report(self, webhook_id: str, report: Mapping[str, Any]) -> None:
        await self._redis.set(
            webhook_report_key(webhook_id), orjson.dumps(report), ex=self._retention
        )

    async def report(self, webhook_id: str) -> dict[str, Any] | None:
        raw = await self._redis.get(webhook_report_key(webhook_id))
        if raw is None:
            return None
        found: dict[str, Any] = orjson.loads(raw)
        return found

    async def drop_reports(self, webhook_ids: Sequence[str]) -> int:
        if not webhook_ids:
            return 0
        return int(await self._redis.delete(*(webhook_report_key(i) for i in webhook_ids)))


@dataclass(frozen=True)
class WebhookReplayed:
    webhook_id: str
    replayed: bool
    note: str


async def replay_webhooks(
    store: WebhookStore,
    webhook_ids: Sequence[str],
    *,
    lease_seconds: float,
    now: float,
    actor: str = "operator",
    dry_run: bool = False,
    again: bool = False,
) -> list[WebhookReplayed]:
    """Put each failed webhook back in the queue, its ladder starting over. With `again`, a
    done `app/uninstalled` or `shop/redact` too: their work needs nothing the record dropped
    when it was done, and doing it again erases what was kept then (money held, released
    since)."""
    results: list[WebhookReplayed] = []
    for webhook_id, webhook in zip(webhook_ids, await store.get_many(webhook_ids), strict=True):
        if webhook is None:
            results.append(WebhookReplayed(webhook_id, False, "no such webhook"))
            continue
        repeatable = again and webhook.state is HookState.DONE and webhook.topic in SHOP_TOPICS
        if webhook.state is not HookState.FAILED and not repeatable:
            results.append(
                WebhookReplayed(webhook_id, False, f"not failed (it is {webhook.state})")
            )
            continue
        if dry_run:
            results.append(WebhookReplayed(webhook_id, True, "would be replayed"))
            continue
        event = WebhookEvent(
            at=now,
            event="replayed",
            state=HookState.RECEIVED,
            detail=f"by {actor}; last error: {webhook.last_error}",
        )
        try:
            await store.replay(webhook_id, event, due_at=now + lease_seconds, done_too=repeatable)
        except StaleState as exc:
            results.append(WebhookReplayed(webhook_id, False, f"not failed ({exc.current})"))
            continue
        results.append(WebhookReplayed(webhook_id, True, "queued again"))
    return results
