"""One state change of a session, written atomically: the single write path of the store.

A `Change` names the new state (its event's state), the fields to set or clear, the timeline
event and when the session is next due. `apply_change` writes it in one Lua call that also:

- refuses unless the session's current state may move to the new one (`sessions.states`);
- with a fencing token, refuses unless the token is still the session's latest claim, so a
  worker whose lease lapsed and was taken over changes nothing;
- with `when`, refuses unless the named fields hold one of the given values, so a change
  that rests on what was read (a pending outcome, say) cannot overwrite what changed since;
- with `supersede`, takes the session from whichever worker holds it: the fencing token
  moves on and the lease is dropped, so that worker's writes change nothing any more;
- puts the session in its place in the due summary's indexes (`sessions.due_index`);
- optionally settles the session's ledger reservation, releases the lease and pushes the
  session's task message, all in the same step: either everything happens or nothing does.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from errors import LeaseLost, StaleState, StoreCorrupt
from sessions.change import Change, LedgerVerdict, field_value
from sessions.due_index import INDEX_DUE
from sessions.handoff import Envelope
from sessions.keys import (
    CONFIRMING,
    DUE,
    EXPIRING,
    FAILED,
    PENDING,
    RETENTION_SECONDS,
    TIMELINE_MAX_EVENTS,
    WORKABLE,
    WRONG_TYPE,
    lease_key,
    session_key,
    text,
    timeline_key,
)
from sessions.ledger_store import SETTLE_RESERVATION, ledger_keys
from sessions.states import State

# The next fencing token of the session hash `key`: past both the last token this server saw
# and its clock in microseconds, so a replica promoted before it saw a claim (whose holder
# still works) never hands that claim's token to anyone else.
NEXT_FENCE = """
local function next_fence(key)
  local clock = redis.call('TIME')
  local fence = math.max(tonumber(redis.call('HGET', key, 'fence') or '0') + 1,
                         tonumber(clock[1]) * 1000000 + tonumber(clock[2]))
  redis.call('HSET', key, 'fence', fence)
  return fence
end
"""

APPLY = (
    SETTLE_RESERVATION
    + WRONG_TYPE
    + NEXT_FENCE
    + INDEX_DUE
    + """
local id = ARGV[6]
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {'missing'} end
if ARGV[1] ~= '' then
  local fence = redis.call('HGET', KEYS[1], 'fence') or '0'
  if fence ~= ARGV[1] then return {'fenced', fence} end
end
local allowed = false
for _, state in ipairs(cjson.decode(ARGV[2])) do
  if state == current then allowed = true end
end
if not allowed then return {'refused', current} end
local change = cjson.decode(ARGV[3])
for _, condition in ipairs(change['when']) do
  local held = redis.call('HGET', KEYS[1], condition[1]) or ''
  local matched = false
  for _, value in ipairs(condition[2]) do
    if value == held then matched = true end
  end
  if not matched then return {'refused', current} end
end
local target = change['set']['state']
local indexes = {}
if target == 'failed' or current == 'failed' then
  local kind = redis.call('HGET', KEYS[1], 'kind')
  local shop = redis.call('HGET', KEYS[1], 'shop')
  indexes = {KEYS[4], KEYS[4] .. ':kind:' .. kind, KEYS[4] .. ':shop:' .. shop}
end
local expected = {KEYS[2], 'list', KEYS[3], 'zset', KEYS[5], 'string', KEYS[6], 'list',
                  KEYS[7], 'hash', KEYS[8], 'hash', KEYS[9], 'set', KEYS[10], 'zset',
                  KEYS[11], 'zset', KEYS[12], 'zset', KEYS[13], 'zset'}
for _, index in ipairs(indexes) do
  table.insert(expected, index)
  table.insert(expected, 'zset')
end
local bad = wrong_type(expected)
if bad then return {'wrongtype', bad} end
if ARGV[12] == '1' then
  next_fence(KEYS[1])
  redis.call('DEL', KEYS[5])
end
for name, value in pairs(change['set']) do redis.call('HSET', KEYS[1], name, value) end
for _, name in ipairs(change['unset']) do redis.call('HDEL', KEYS[1], name) end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[11]), -1)
if target == 'reported' then
  -- Finished: kept for the retention period (Shopify's retries find it), then gone.
  local ttl = tonumber(ARGV[10])
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('ZADD', KEYS[10], tonumber(change['set']['updated_at']) + ttl, id)
end
for _, index in ipairs(indexes) do
  if target == 'failed' then
    redis.call('ZADD', index, change['set']['updated_at'], id)
  else
    redis.call('ZREM', index, id)
  end
end
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('ZADD', KEYS[3], ARGV[5], id)
end
index_due(KEYS[3], KEYS[11], KEYS[12], KEYS[13], KEYS[1], id)
if ARGV[8] == '1' and redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
if ARGV[9] ~= '' then
  settle_reservation(KEYS[7], KEYS[8], KEYS[9], id, ARGV[9] == '1', ARGV[9] ~= 'returned',
                     ARGV[13], tonumber(ARGV[14]))
end
if ARGV[7] ~= '' then redis.call('LPUSH', KEYS[6], ARGV[7]) end
return {'ok', current}
"""
)


async def apply_change(
    script: AsyncScript,
    session_id: str,
    change: Change,
    *,
    fence: int | None = None,
    release: bool = False,
    envelope: Envelope | None = None,
    retention_seconds: int = RETENTION_SECONDS,
) -> State:
    """Write `change`; returns the state the session was in. A session that is reported
    expires (with its timeline) `retention_seconds` later.

    Raises `StaleState` when the session is not in a state the change may start from, and
    `LeaseLost` when `fence` is no longer the session's latest claim.
    """
    updates: dict[str, object | None] = {
        "state": change.state,
        "updated_at": change.event.at,
        **change.fields,
    }
    payload = {
        "set": {k: field_value(v) for k, v in updates.items() if v is not None},
        "unset": [k for k, v in updates.items() if v is None],
        "when": [[k, sorted(v)] for k, v in change.when.items()],
    }
    ledger = change.ledger
    book_keys = ledger_keys(ledger.payment_id) if ledger else ["", "", ""]
    reply = await script(
        keys=[
            session_key(session_id),
            timeline_key(session_id),
            DUE,
            FAILED,
            lease_key(session_id),
            envelope.queue if envelope else "",
            *book_keys,
            EXPIRING,
            WORKABLE,
            PENDING,
            CONFIRMING,
        ],
        args=[
            "" if fence is None else str(fence),
            json.dumps(sorted(change.sources())),
            json.dumps(payload),
            change.event.model_dump_json(exclude_none=True),
            "" if change.due_at is None else repr(change.due_at),
            session_id,
            envelope.body if envelope else "",
            "1" if release else "",
            _ledger_argument(ledger),
            str(retention_seconds),
            str(TIMELINE_MAX_EVENTS),
            "1" if change.supersede else "",
            ledger.op.value if ledger and ledger.op else "",
            str(ledger.amount if ledger else 0),
        ],
    )
    verdict = text(reply[0])
    if verdict == "wrongtype":
        raise StoreCorrupt(text(reply[1]))
    if verdict == "fenced":
        raise LeaseLost(session_id, fence or 0, int(text(reply[1])))
    if verdict != "ok":
        raise StaleState(session_id, text(reply[1]) if len(reply) > 1 else None)
    return State(text(reply[1]))


def _ledger_argument(ledger: LedgerVerdict | None) -> str:
    if ledger is None:
        return ""
    if ledger.approved:
        return "1"
    return "0" if ledger.final else "returned"


def register_apply(redis: Redis) -> AsyncScript:
    return redis.register_script(APPLY)
