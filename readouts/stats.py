"""What is flowing, what is stuck and what failed, read from Redis at a bounded cost: the web
process's gauges (computed at scrape time), the dashboard and `payhook sessions stats`.

The due set holds every unfinished session. Its depth and how many are overdue are single
commands. The oldest unfinished session a worker still has to move, the pending payments and
the first pending window to close come from two sorted sets the write scripts keep in step
with the due set (`sessions.due_index`): the first entry of each and the size of one. The
whole summary is six commands in one `MULTI`, each O(log n) at most, so a scrape costs the
same with a million sessions due as with none, and its answers are exact however many there
are (`python -m bench.due_summary` measures both).

A store written before those indexes existed is read the old way until the sweeper has
indexed it: one script over at most `DUE_SCAN` due sessions, the most due first, which
cannot see past them (`due_summary_by_scan`; `DueSummary.indexed` says which answered).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from redis.asyncio import Redis

from readouts.held import holdings
from sessions.due_index import BUILT
from sessions.keys import (
    DUE,
    DUE_INDEXED,
    INDEX_CREATED,
    PENDING,
    WORKABLE,
    failed_index,
    session_key,
    text,
)
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Op
from sessions.money import format_amount, minor_units
from sessions.store import SessionStore

# What the summary read before the indexes, and still reads while a store is indexed.
DUE_SCAN = 5_000
# `payhook sessions stats` counts states over the newest sessions of the listing index.
COUNT_SCAN = 20_000
# Counted in Redis, this many sessions per script: 20 round trips for the whole scan, and
# no one script holds Redis up for long (`python -m bench.dashboard` prints the longest).
_COUNT_BATCH = 1_000

# (state, kind) counts over one slice of the listing index, newest first: the slice's length,
# then "state kind" and its count for each pair found.
COUNT_SLICE = """
local ids = redis.call('ZREVRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local counts = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[3] .. id, 'state', 'kind')
  if f[1] and f[2] then
    local pair = f[1] .. ' ' .. f[2]
    counts[pair] = (counts[pair] or 0) + 1
  end
end
local out = {#ids}
for pair, n in pairs(counts) do
  table.insert(out, pair)
  table.insert(out, n)
end
return out
"""

# Oldest creation time among unfinished sessions that a worker still has to move (a payment
# reported pending only waits for its PSP or its window, one confirming for Shopify's
# confirmation request or its window), the number of pending payments and when the first
# pending window closes, over the `DUE_SCAN` most due sessions. Numbers go back as text:
# Redis truncates Lua numbers.
DUE_SCAN_SCRIPT = """
local entries = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local oldest, soonest, pending = nil, nil, 0
for i = 1, #entries, 2 do
  local f = redis.call('HMGET', ARGV[2] .. entries[i], 'state', 'created_at', 'pending_expires_at')
  if f[1] == 'pending' then
    pending = pending + 1
    local closes = tonumber(f[3]) or tonumber(entries[i + 1])
    if soonest == nil or closes < soonest then soonest = closes end
  elseif f[1] ~= 'confirming' and f[2] then
    local created = tonumber(f[2])
    if created and (oldest == nil or created < oldest) then oldest = created end
  end
end
return {oldest and string.format('%.3f', oldest) or '', pending,
        soonest and string.format('%.3f', soonest) or ''}
"""


@dataclass(frozen=True)
class DueSummary:
    depth: int
    # Due time already passed: the sweeper should have handed them to a worker.
    overdue: int
    # Age of the oldest session a worker still has to move (0 when there is none).
    oldest_unfinished_seconds: float
    pending_payments: int
    # Seconds until the first pending payment's window closes; None when none is pending.
    pending_closes_in: float | None
    # False: the store is still being indexed, and the three figures above come from the
    # bounded scan (exact only when `DUE_SCAN` or fewer sessions are due).
    indexed: bool = True


async def due_summary(redis: Redis, now: float) -> DueSummary:
    """The due-set summary from the indexes (a few O(log n) reads in one round trip), or from
    the bounded scan while a store written before them is being indexed."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zcard(DUE)
        pipe.zcount(DUE, "-inf", repr(now))
        pipe.get(DUE_INDEXED)
        pipe.zrange(WORKABLE, 0, 0, withscores=True)
        pipe.zcard(PENDING)
        pipe.zrange(PENDING, 0, 0, withscores=True)
        depth, overdue, built, oldest, pending, soonest = await pipe.execute()
    if not depth:
        # Nothing due: nothing to miss, whether or not the indexes are built yet.
        return DueSummary(
            depth=0,
            overdue=0,
            oldest_unfinished_seconds=0.0,
            pending_payments=0,
            pending_closes_in=None,
        )
    if built is None or text(built) != BUILT:
        return await due_summary_by_scan(redis, now)
    return DueSummary(
        depth=int(depth),
        overdue=int(overdue),
        oldest_unfinished_seconds=max(0.0, now - oldest[0][1]) if oldest else 0.0,
        pending_payments=int(pending),
        pending_closes_in=soonest[0][1] - now if soonest else None,
    )


async def due_summary_by_scan(redis: Redis, now: float) -> DueSummary:
    """The summary as it was read before the indexes: the fields of at most `DUE_SCAN` due
    sessions, the most due first, in one script that holds Redis for tens of milliseconds."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(DUE)
        pipe.zcount(DUE, "-inf", repr(now))
        depth, overdue = await pipe.execute()
    script = redis.eval(DUE_SCAN_SCRIPT, 1, DUE, DUE_SCAN, session_key(""))
    oldest, pending, soonest = await script
    oldest_at = text(oldest)
    soonest_at = text(soonest)
    return DueSummary(
        depth=int(depth),
        overdue=int(overdue),
        oldest_unfinished_seconds=max(0.0, now - float(oldest_at)) if oldest_at else 0.0,
        pending_payments=int(pending),
        pending_closes_in=float(soonest_at) - now if soonest_at else None,
        indexed=False,
    )


async def failed_by_kind(redis: Redis) -> dict[str, int]:
    async with redis.pipeline(transaction=False) as pipe:
        for kind in Kind:
            pipe.zcard(failed_index(kind=kind.value))
        counts = await pipe.execute()
    return {kind.value: int(count) for kind, count in zip(Kind, counts, strict=True)}


@dataclass(frozen=True)
class Stats:
    # (state, kind) -> sessions, over the newest `scanned` sessions of the listing index.
    by_state: dict[tuple[str, str], int]
    scanned: int
    complete: bool
    failed: dict[str, int]
    due: DueSummary
    # Money failed sessions keep reserved: currency -> amount, and voids held.
    held: dict[str, Decimal] = field(default_factory=dict)
    held_sessions: int = 0
    voids_held: int = 0


async def _count_states(redis: Redis) -> tuple[Counter[tuple[str, str]], int, bool]:
    counts: Counter[tuple[str, str]] = Counter()
    scanned = 0
    # Registered: each slice then sends the script's hash, not its text.
    count_slice = redis.register_script(COUNT_SLICE)
    for offset in range(0, COUNT_SCAN, _COUNT_BATCH):
        last = offset + _COUNT_BATCH - 1
        reply = await count_slice(keys=[INDEX_CREATED], args=[offset, last, session_key("")])
        for i in range(1, len(reply), 2):
            state, _, kind = text(reply[i]).partition(" ")
            counts[(state, kind)] += int(reply[i + 1])
        scanned += int(reply[0])
        if int(reply[0]) < _COUNT_BATCH:
            return counts, scanned, True
    return counts, scanned, await redis.zcard(INDEX_CREATED) <= scanned


async def collect(redis: Redis, now: float) -> Stats:
    counts, scanned, complete = await _count_states(redis)
    held: dict[str, int] = {}
    held_sessions = voids = 0
    async for _, hold in holdings(SessionStore(redis), LedgerStore(redis), scan=COUNT_SCAN):
        held_sessions += 1
        if hold.op is Op.VOID:
            voids += 1
        else:
            held[hold.currency] = held.get(hold.currency, 0) + hold.minor
    return Stats(
        by_state=dict(counts),
        scanned=scanned,
        complete=complete,
        failed=await failed_by_kind(redis),
        due=await due_summary(redis, now),
        held={c: Decimal(minor).scaleb(-minor_units(c)) for c, minor in sorted(held.items())},
        held_sessions=held_sessions,
        voids_held=voids,
    )


def held_text(amount: Decimal, currency: str) -> str:
    return f"{format_amount(amount, currency)} {currency}"
