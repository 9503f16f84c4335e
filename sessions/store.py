"""The Redis session store: the single source of truth for every session.

Keys (all under `payhook:`):

| key | type | holds |
|---|---|---|
| `s:{id}` | hash | the session's fields (see `Session`) plus its request fingerprint |
| `s:{id}:timeline` | list | JSON `TimelineEvent`s, oldest first |
| `idx:created` | sorted set | session id by creation time, for listing |
| `due` | sorted set | every unfinished session id by the time it must next be looked at |
| `idx:failed[:kind:{k}│:shop:{s}]` | sorted sets | failed sessions by time of failure |
| `lease:{id}` | string | the worker currently running the session, with an expiry |

Every write that changes state is one Lua script, so a session's fields, its state and its
timeline never disagree, and a concurrent duplicate can neither create a second session nor
overwrite the first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from sessions.models import Session, TimelineEvent
from sessions.states import State

PREFIX = "payhook:"
INDEX_CREATED = f"{PREFIX}idx:created"
DUE = f"{PREFIX}due"
FAILED = f"{PREFIX}idx:failed"


def failed_index(*, kind: str | None = None, shop: str | None = None) -> str:
    if kind is not None:
        return f"{FAILED}:kind:{kind}"
    if shop is not None:
        return f"{FAILED}:shop:{shop}"
    return FAILED


def session_key(session_id: str) -> str:
    return f"{PREFIX}s:{session_id}"


def timeline_key(session_id: str) -> str:
    return f"{PREFIX}s:{session_id}:timeline"


def lease_key(session_id: str) -> str:
    return f"{PREFIX}lease:{session_id}"


_CREATE = """
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if fp then
  if fp == ARGV[1] then return {'duplicate'} end
  return {'conflict', fp}
end
local fields = cjson.decode(ARGV[4])
for name, value in pairs(fields) do redis.call('HSET', KEYS[1], name, value) end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
if ARGV[7] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[7]) end
return {'created'}
"""

_UPDATE = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {'missing'} end
local allowed = false
for _, state in ipairs(cjson.decode(ARGV[1])) do
  if state == current then allowed = true end
end
if not allowed then return {'refused', current} end
local change = cjson.decode(ARGV[2])
for name, value in pairs(change['set']) do redis.call('HSET', KEYS[1], name, value) end
for _, name in ipairs(change['unset']) do redis.call('HDEL', KEYS[1], name) end
redis.call('RPUSH', KEYS[2], ARGV[3])
local target = change['set']['state']
if target == 'failed' or current == 'failed' then
  local kind = redis.call('HGET', KEYS[1], 'kind')
  local shop = redis.call('HGET', KEYS[1], 'shop')
  local indexes = {KEYS[4], KEYS[4] .. ':kind:' .. kind, KEYS[4] .. ':shop:' .. shop}
  for _, index in ipairs(indexes) do
    if target == 'failed' then
      redis.call('ZADD', index, change['set']['updated_at'], ARGV[5])
    else
      redis.call('ZREM', index, ARGV[5])
    end
  end
end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[3], ARGV[5])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end
return {'ok', current}
"""

_REPLAY = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'failed' then return {'refused', state or 'missing'} end
local target = 'received'
if redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then target = 'settled' end
redis.call('HSET', KEYS[1], 'state', target, 'updated_at', ARGV[1], 'phase_attempts', 0,
           'phase_since', ARGV[1], 'deliveries', 0)
redis.call('HINCRBY', KEYS[1], 'replays', 1)
redis.call('HDEL', KEYS[1], 'failed_at')
local event = cjson.decode(ARGV[2])
event['state'] = target
redis.call('RPUSH', KEYS[2], cjson.encode(event))
local kind = redis.call('HGET', KEYS[1], 'kind')
local shop = redis.call('HGET', KEYS[1], 'shop')
for _, index in ipairs({KEYS[4], KEYS[4] .. ':kind:' .. kind, KEYS[4] .. ':shop:' .. shop}) do
  redis.call('ZREM', index, ARGV[4])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
if ARGV[5] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[5]) end
return {'ok', target}
"""

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Created(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class CreateResult:
    status: Created
    stored_fingerprint: str | None = None


class StaleState(Exception):
    """The session was not in any of the expected states when an update was attempted."""

    def __init__(self, session_id: str, current: str | None) -> None:
        super().__init__(f"session {session_id} is {current or 'missing'}")
        self.current = current


def _encode(session: Session) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in session.model_dump(mode="json").items():
        if value is None:
            continue
        fields[name] = json.dumps(value) if isinstance(value, bool) else str(value)
    return fields


def _decode(fields: Mapping[str, str]) -> Session:
    data: dict[str, Any] = {k: v for k, v in fields.items() if k != "fingerprint"}
    return Session.model_validate(data)


def _field_value(value: object) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, StrEnum):
        return value.value
    return str(value)


class SessionStore:
    """Async access to sessions; shared by the web handlers and the workers."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = redis.register_script(_CREATE)
        self._update = redis.register_script(_UPDATE)
        self._release = redis.register_script(_RELEASE)
        self._claim = redis.register_script(_CLAIM)
        self._replay = redis.register_script(_REPLAY)

    @property
    def redis(self) -> Redis:
        return self._redis

    async def create(
        self,
        session: Session,
        event: TimelineEvent,
        *,
        due_at: float,
        enqueue: tuple[str, str] | None = None,
    ) -> CreateResult:
        """Store a new session in one round trip, or say why not (duplicate or conflict).

        The session enters the due set at `due_at`: if the task message that should carry it
        is lost, the sweeper picks it up from there. `enqueue` is (list, message): pushed in
        the same atomic step, only when the session is new.
        """
        queue, message = enqueue or ("", "")
        reply = await self._create(
            keys=[session_key(session.id), timeline_key(session.id), INDEX_CREATED, DUE, queue],
            args=[
                session.fingerprint(),
                repr(session.created_at),
                event.model_dump_json(exclude_none=True),
                json.dumps(_encode(session)),
                session.id,
                repr(due_at),
                message,
            ],
        )
        status = Created(_text(reply[0]))
        return CreateResult(status, _text(reply[1]) if len(reply) > 1 else None)

    async def get(self, session_id: str) -> Session | None:
        fields = await self._redis.hgetall(session_key(session_id))
        if not fields:
            return None
        return _decode({_text(k): _text(v) for k, v in fields.items()})

    async def timeline(self, session_id: str) -> list[TimelineEvent]:
        raw = await self._redis.lrange(timeline_key(session_id), 0, -1)
        return [TimelineEvent.model_validate_json(item) for item in raw]

    async def update(
        self,
        session_id: str,
        *,
        expect: Iterable[State],
        event: TimelineEvent,
        due_at: float | None,
        fields: Mapping[str, object | None] | None = None,
    ) -> State:
        """Apply `fields` and append `event` if the session is in one of `expect`.

        The event's state is written as the session's new state, and the session is due
        again at `due_at` (`None` takes it out of the due set: nothing more will happen to it
        without an operator). Returns the state the session was in; raises `StaleState` when
        another actor moved it first.
        """
        change: dict[str, object | None] = {"state": event.state, "updated_at": event.at}
        change.update(fields or {})
        payload = {
            "set": {k: _field_value(v) for k, v in change.items() if v is not None},
            "unset": [k for k, v in change.items() if v is None],
        }
        reply = await self._update(
            keys=[session_key(session_id), timeline_key(session_id), DUE, FAILED],
            args=[
                json.dumps([str(s) for s in expect]),
                json.dumps(payload),
                event.model_dump_json(exclude_none=True),
                "" if due_at is None else repr(due_at),
                session_id,
            ],
        )
        if _text(reply[0]) != "ok":
            raise StaleState(session_id, _text(reply[1]) if len(reply) > 1 else None)
        return State(_text(reply[1]))

    async def count_delivery(self, session_id: str) -> int:
        """Count one more task delivery for the session (the poison-message guard)."""
        return int(await self._redis.hincrby(session_key(session_id), "deliveries", 1))

    async def replay(
        self,
        session_id: str,
        event: TimelineEvent,
        *,
        due_at: float,
        enqueue: tuple[str, str] | None = None,
    ) -> State:
        """Put a failed session back at its recovery point and queue it, atomically.

        A session with a stored PSP outcome resumes at `settled` (Shopify is told, the PSP
        is not asked again); one without resumes at `received`. The phase's attempt count,
        its deadline clock and the delivery counter start over. Raises `StaleState` if the
        session is not failed.
        """
        queue, message = enqueue or ("", "")
        reply = await self._replay(
            keys=[session_key(session_id), timeline_key(session_id), DUE, FAILED, queue],
            args=[
                repr(event.at),
                event.model_dump_json(exclude_none=True),
                repr(due_at),
                session_id,
                message,
            ],
        )
        if _text(reply[0]) != "ok":
            raise StaleState(session_id, _text(reply[1]))
        return State(_text(reply[1]))

    async def failed_ids(
        self,
        *,
        kind: str | None = None,
        shop: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[str]:
        """Failed sessions, oldest failure first, from the narrowest index that applies."""
        index = failed_index(kind=kind, shop=shop if kind is None else None)
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        ids = [_text(i) for i in await self._redis.zrangebyscore(index, low, high)]
        if kind is not None and shop is not None:
            in_shop = await self._redis.zrangebyscore(failed_index(shop=shop), low, high)
            wanted = {_text(i) for i in in_shop}
            ids = [i for i in ids if i in wanted]
        return ids[:limit]

    async def claim_due(self, now: float, *, limit: int, hold_for: float) -> list[str]:
        """Ids due at `now`, pushed `hold_for` seconds ahead so the next sweep skips them."""
        reply = await self._claim(keys=[DUE], args=[repr(now), limit, repr(now + hold_for)])
        return [_text(item) for item in reply]

    async def due_count(self) -> int:
        return int(await self._redis.zcard(DUE))

    async def acquire_lease(self, session_id: str, owner: str, seconds: float) -> bool:
        ok = await self._redis.set(lease_key(session_id), owner, nx=True, px=int(seconds * 1000))
        return bool(ok)

    async def release_lease(self, session_id: str, owner: str) -> None:
        await self._release(keys=[lease_key(session_id)], args=[owner])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
