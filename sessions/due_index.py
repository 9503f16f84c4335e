"""The due-set summary's indexes: what `/metrics` reads instead of scanning the due set.

| key | holds |
|---|---|
| `idx:workable` | every due session a worker still has to move, by its creation time |
| `idx:pending` | every due payment reported pending, by the time its window closes |
| `idx:due-indexed` | `done` once every due session is indexed |

A session is in one of the two sorted sets exactly when it is in the due set and its data is
there: a pending payment in `idx:pending` (scored by `pending_expires_at`, or by its last
write when it has none, as its report to Shopify reads it), any other in `idx:workable`.
Every script that writes a session's state or its place in the due set ends with
`index_due`, which puts the session where that rule says from what is stored at that
moment, in the same atomic step. So the oldest unfinished session is the first entry of
`idx:workable`, the pending payments are the size of `idx:pending` and the first window to
close is its first entry: a few O(log n) reads, whatever the size of the due set
(`sessions.stats.due_summary`).

A store written by a version without the indexes has due sessions that are in neither set:
until `idx:due-indexed` says `done`, the summary reads the bounded scan it used before. A
fresh store is indexed from its first session (an empty due set has nothing to catch up
with).
"""

from __future__ import annotations

# `due_place(due, hash, id)`: which index the session belongs in ('workable', 'pending' or
# nil) and at what score; `index_due(due, workable, pending, hash, id)` puts it there. The
# caller has checked the three keys' types. Scores go from the hash to ZADD as the stored
# text, never through a Lua number (which keeps 14 digits), and a field that is not a
# finite number is no score (ZADD would fail halfway through the caller's writes).
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
  if f[1] and finite(f[2]) then return 'workable', f[2] end
  return nil
end
local function index_due(due, workable, pending, hash, id)
  local place, score = due_place(due, hash, id)
  if place == 'workable' then
    redis.call('ZADD', workable, score, id)
    redis.call('ZREM', pending, id)
  elseif place == 'pending' then
    redis.call('ZADD', pending, score, id)
    redis.call('ZREM', workable, id)
  else
    redis.call('ZREM', workable, id)
    redis.call('ZREM', pending, id)
  end
end
"""

BUILT = "done"
