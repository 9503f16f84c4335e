"""The due-set summary's indexes: what `/metrics` reads instead of scanning the due set.

| key | holds |
|---|---|
| `idx:workable` | every due session a worker still has to move, by its creation time |
| `idx:pending` | every due payment reported pending, by the time its window closes |
| `idx:confirming` | every payment waiting for Shopify's confirmation request, by creation time |
| `idx:due-indexed` | `done` once every due session is indexed; while a build runs, how far it got |

A session is in one of the three sorted sets exactly when it is in the due set and its data
is there: a pending payment in `idx:pending` (scored by `pending_expires_at`, or by its last
write when it has none, as its report to Shopify reads it), a payment waiting for Shopify's
confirmation request in `idx:confirming` (neither waits on a worker), any other in
`idx:workable`.
Every script that writes a session's state or its place in the due set ends with
`index_due`, which puts the session where that rule says from what is stored at that
moment, in the same atomic step. So the oldest unfinished session is the first entry of
`idx:workable`, the pending payments are the size of `idx:pending` and the first window to
close is its first entry: a few O(log n) reads, whatever the size of the due set
(`readouts.stats.due_summary`).

A store written by a version without the indexes has due sessions that are in neither set.
Until `idx:due-indexed` says `done`, the summary reads the bounded scan it used before, and
every sweep builds the indexes a batch at a time (`build`): a `ZSCAN` of the due set, then of
both indexes (which drops entries whose session has left the due set), each id put in place
by `index_due`. The cursor is kept in `idx:due-indexed`, so a build survives a restart of
beat and every batch is one short script. Writes meanwhile index their own sessions, so the
build only ever has to catch up with what was there before it. A fresh store is indexed
from its first session (an empty due set has nothing to catch up with).

A process of the older version still running next to this one (a rolling upgrade) moves
sessions without touching the indexes. Each sweep therefore also checks the head of each
index (`repair`): entries that break the rule are put right until the first entry that
holds, so the oldest age and the first closing window are right again within a sweep;
`payhook sessions reindex` rebuilds the whole of both.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from sessions.keys import CONFIRMING, DUE, DUE_INDEXED, PENDING, WORKABLE, WRONG_TYPE, text

# `due_place(due, hash, id)`: which index the session belongs in ('workable', 'pending',
# 'confirming' or nil) and at what score; `index_due(due, workable, pending, confirming, hash, id)`
# puts it there. The caller has checked the four keys' types. Scores go from the hash to ZADD as the
# stored text, never through a Lua number (which keeps 14 digits), and a field that is not a finite
# number is no score (ZADD would fail halfway through the caller's writes).
INDEX_DUE = """
local function finite(value)
  local n = tonumber(value)
  if n and n == n and n ~= math.huge and n ~= -math.huge then return value end
  return nil
end
local function due_place(due, hash, id)
  local at = redis.call('ZSCORE', due, id)
  if not at then return nil end
  local f = redis.call('HMGET', hash, 'state', 'created_at', 'pending_expires_at', 'updated_at')
  if f[1] == 'pending' then
    local closes = finite(f[3]) or finite(f[4]) or at
    return 'pending', closes
  end
  if f[1] == 'confirming' then return finite(f[2]) and 'confirming' or nil, f[2] end
  if f[1] and finite(f[2]) then return 'workable', f[2] end
  return nil
end
local function index_due(due, workable, pending, confirming, hash, id)
  local place, score = due_place(due, hash, id)
  local indexes = {{workable, 'workable'}, {pending, 'pending'}, {confirming, 'confirming'}}
  for _, index in ipairs(indexes) do
    if place == index[2] then
      redis.call('ZADD', index[1], score, id)
    else
      redis.call('ZREM', index[1], id)
    end
  end
end
"""

BUILT = "done"
START = "due:0"

# What a build walks, in order: the due set (sessions not yet indexed), then each index
# (entries whose session left the due set without the index being told); `idx:due-indexed`
# holds the part and its ZSCAN cursor between batches. KEYS: due, workable, pending,
# confirming, due-indexed. ARGV: ids per batch, session key prefix. Returns the ids looked at and
# whether the build is done (1).
BUILD = (
    WRONG_TYPE
    + INDEX_DUE
    + """
local bad = wrong_type({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'zset',
                        KEYS[5], 'string'})
if bad then return {'wrongtype', bad} end
local at = redis.call('GET', KEYS[5]) or 'due:0'
if at == 'done' then return {'ok', 0, 1} end
local phase, cursor = string.match(at, '^(%a+):(%d+)$')
local sources = {due = KEYS[1], workable = KEYS[2], pending = KEYS[3], confirming = KEYS[4]}
local following = {due = 'workable', workable = 'pending', pending = 'confirming',
                   confirming = 'done'}
if not sources[phase] then phase, cursor = 'due', '0' end
local reply = redis.call('ZSCAN', sources[phase], cursor, 'COUNT', tonumber(ARGV[1]))
local entries = reply[2]
for i = 1, #entries, 2 do
  index_due(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2] .. entries[i], entries[i])
end
local next_at = phase .. ':' .. reply[1]
if reply[1] == '0' then
  next_at = following[phase]
  if next_at ~= 'done' then next_at = next_at .. ':0' end
end
redis.call('SET', KEYS[5], next_at)
return {'ok', #entries / 2, next_at == 'done' and 1 or 0}
"""
)

# KEYS: due, workable, pending, confirming. ARGV: most entries to put right, session key
# prefix.
# Each index's first entry is checked against the rule, and put right, until one holds.
REPAIR = (
    WRONG_TYPE
    + INDEX_DUE
    + """
local bad = wrong_type({KEYS[1], 'zset', KEYS[2], 'zset', KEYS[3], 'zset', KEYS[4], 'zset'})
if bad then return {'wrongtype', bad} end
local budget, fixed = tonumber(ARGV[1]), 0
for _, index in ipairs({{KEYS[2], 'workable'}, {KEYS[3], 'pending'}, {KEYS[4], 'confirming'}}) do
  while fixed < budget do
    local head = redis.call('ZRANGE', index[1], 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local place, score = due_place(KEYS[1], ARGV[2] .. head[1], head[1])
    if place == index[2] and tonumber(score) == tonumber(head[2]) then break end
    index_due(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[2] .. head[1], head[1])
    fixed = fixed + 1
  end
end
return {'ok', fixed}
"""
)


@dataclass(frozen=True)
class IndexState:
    """How the indexes stand, for `payhook doctor` and `payhook sessions reindex`."""

    built: bool
    # The part of a build under way ('due', 'workable', 'pending' or 'confirming'); None
    # when built or when no build has begun (a store from before the indexes whose sweeper
    # has not run).
    phase: str | None
    due: int
    indexed: int


async def index_state(redis: Redis) -> IndexState:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(DUE_INDEXED)
        pipe.zcard(DUE)
        pipe.zcard(WORKABLE)
        pipe.zcard(PENDING)
        pipe.zcard(CONFIRMING)
        at, due, workable, pending, confirming = await pipe.execute()
    mark = None if at is None else text(at)
    return IndexState(
        built=mark == BUILT,
        phase=None if mark in (None, BUILT) else mark.partition(":")[0],
        due=int(due),
        indexed=int(workable) + int(pending) + int(confirming),
    )
