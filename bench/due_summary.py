"""What one scrape's due-set summary costs Redis, with 20,000 and with 1,000,000 sessions due.

    python -m bench.due_summary [--sizes 20000 1000000] [--scrapes 200]

For each size, a fresh `redis-server` (AOF off: this measures reads) is filled by a bulk
loader, a Lua script that writes 5,000 sessions a call, ten calls a round trip: hashes with
the fields intake writes, the listing index and the due set, as a store from before the due
summary's indexes. Nine in ten are unfinished work, due within ten minutes, one in a hundred
of them in a long backoff (created one to two days ago, due in hours); one in ten is a
payment reported pending, due when its window closes, within three days. Then, in the same
run and on the same data:

1. the old scan (`due_summary_by_scan`, the baseline): a script over the 5,000 most due;
2. that script's reading over every due session, 50,000 a call: the exact answer, and what
   an exact scan would cost;
3. the sweeper's build of the indexes (`build_due_index`, 500 ids a batch): the one-off cost
   of an upgraded store;
4. the summary from the indexes (`due_summary`).

Each reading is timed over `scrapes` summaries (the old scan over a tenth of them): the
client's time (median), Redis's own time per scrape (INFO commandstats, the top-level calls:
the old way's ZCARD, ZCOUNT and EVAL, the new way's MULTI and EXEC, each with what it ran
inside; mean), every command Redis executed per scrape, and what SLOWLOG records at Redis's
default threshold of 10 ms (`slow`: entries per scrape; `longest`: the longest of them).
The answers follow: the oldest unfinished age, the pending payments and when the first
pending window closes. Redis runs on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
from redis.asyncio import Redis

from ops.redis_server import LocalRedis, free_port
from readouts.stats import DueSummary, due_summary, due_summary_by_scan
from sessions.intake import encode_value
from sessions.keys import DUE, INDEX_CREATED, session_key, text
from sessions.models import Kind, Session
from sessions.states import State
from sessions.store import SessionStore

LOAD_BATCH = 5_000
LOAD_PIPELINE = 10
BUILD_BATCH = 500  # PAYHOOK_SWEEP_BATCH's default
SLOWLOG_DEFAULT_MICROS = 10_000

# KEYS: listing, due. ARGV: first index, count, now, the fields every session shares (JSON),
# session key prefix. Pseudo-random from the index alone (Weyl sequences), so every run
# loads the same store.
_LOAD = """
local first, count, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local shared = {}
for name, value in pairs(cjson.decode(ARGV[4])) do
  shared[#shared + 1] = name
  shared[#shared + 1] = value
end
local steps = {2654435761, 2246822519, 3266489917}
local function u(i, k) return ((i * steps[k]) % 4294967296) / 4294967296 end
local function t(x) return string.format('%.6f', x) end
local states = {'received', 'settling', 'settled'}
for i = first, first + count - 1 do
  local id = string.format('bench%08d', i)
  local created, due, state, extra
  if i % 10 == 0 then
    state = 'pending'
    due = now + 60 + u(i, 1) * 259200
    created = now - 600 - u(i, 2) * 3600
    extra = {'kind', 'payment', 'outcome', 'pending', 'report', 'pending',
             'pending_expires_at', t(due)}
  elseif i % 100 == 1 then
    state = 'settling'
    created = now - 86400 - u(i, 2) * 86400
    due = now + 3600 + u(i, 3) * 25200
    extra = {'not_before', t(due - 30)}
  else
    state = states[i % 3 + 1]
    created = now - u(i, 2) * 21600
    due = now - 60 + u(i, 3) * 660
    extra = {}
  end
  local key = ARGV[5] .. id
  redis.call('HSET', key, unpack(shared))
  redis.call('HSET', key, 'id', id, 'state', state, 'created_at', t(created),
             'updated_at', t(created), unpack(extra))
  redis.call('ZADD', KEYS[1], t(created), id)
  redis.call('ZADD', KEYS[2], t(due), id)
end
return count
"""


def _shared_fields(now: float) -> dict[str, str]:
    """The fields of a capture as intake stores them; each session overrides its own."""
    session = Session(
        id="bench",
        kind=Kind.CAPTURE,
        gid="gid://shopify/CaptureSession/bench",
        shop="bench-shop.myshopify.com",
        payment_id="pay_bench",
        amount=Decimal("10.00"),
        currency="EUR",
        merchant_locale="en",
        proposed_at=datetime.fromtimestamp(now, UTC),
        test=True,
        request_id="bench",
        api_version="2025-10",
        state=State.RECEIVED,
        created_at=now,
        updated_at=now,
    )
    dumped = session.model_dump(mode="json")
    fields = {name: encode_value(value) for name, value in dumped.items() if value is not None}
    return {**fields, "fingerprint": session.fingerprint()}


async def load(redis: Redis, sessions: int, now: float) -> None:
    script = redis.register_script(_LOAD)
    shared = orjson.dumps(_shared_fields(now))
    # Numbered from 1: the sequences all start at 0 for session 0.
    starts = list(range(1, sessions + 1, LOAD_BATCH))
    for group in range(0, len(starts), LOAD_PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for start in starts[group : group + LOAD_PIPELINE]:
                count = min(LOAD_BATCH, sessions + 1 - start)
                args: list[bytes | str | int] = [start, count, repr(now), shared, session_key("")]
                await script(keys=[INDEX_CREATED, DUE], args=args, client=pipe)
            await pipe.execute()


@dataclass(frozen=True)
class Reading:
    summary: DueSummary
    median_ms: float
    redis_micros: float
    commands: float
    slow_entries: float
    longest_ms: float | None


async def _stats(redis: Redis) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): value for name, value in found.items()}


async def measure(
    redis: Redis,
    read: Callable[[], Awaitable[DueSummary]],
    *,
    scrapes: int,
    top_level: Sequence[str],
) -> Reading:
    await read()  # the script is loaded and the connection open before anything counts
    await redis.config_set("slowlog-log-slower-than", SLOWLOG_DEFAULT_MICROS)
    await redis.slowlog_reset()
    await redis.config_resetstat()
    times = []
    summary = None
    for _ in range(scrapes):
        started = time.perf_counter()
        summary = await read()
        times.append(time.perf_counter() - started)
    stats = await _stats(redis)
    assert summary is not None
    ours = {name: value for name, value in stats.items() if name != "config"}
    slow = [
        entry
        for entry in await redis.slowlog_get(10_000)
        if not text(entry["command"]).upper().startswith(("CONFIG", "SLOWLOG", "INFO"))
    ]
    return Reading(
        summary=summary,
        median_ms=statistics.median(times) * 1000,
        redis_micros=sum(ours.get(name, {}).get("usec", 0) for name in top_level) / scrapes,
        commands=sum(value["calls"] for value in ours.values()) / scrapes,
        slow_entries=len(slow) / scrapes,
        longest_ms=max(entry["duration"] for entry in slow) / 1000 if slow else None,
    )


@dataclass(frozen=True)
class Build:
    seconds: float
    batches: int
    # 0 when no batch took Redis 10 ms (nothing in SLOWLOG).
    longest_batch_ms: float
    # Redis memory the two indexes take.
    index_bytes: int


async def _used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def build(store: SessionStore) -> Build:
    """The sweeper's build, batch after batch with no pause; the longest batch is the
    longest EVALSHA in SLOWLOG (Redis's own time; under 10 ms when none is there)."""
    redis = store.redis
    before = await _used_memory(redis)
    await redis.config_set("slowlog-log-slower-than", SLOWLOG_DEFAULT_MICROS)
    await redis.slowlog_reset()
    started = time.perf_counter()
    batches = 0
    while True:
        done = (await store.build_due_index(limit=BUILD_BATCH)).done
        batches += 1
        if done:
            break
    seconds = time.perf_counter() - started
    scripts = [
        int(entry["duration"])
        for entry in await redis.slowlog_get(10_000)
        if text(entry["command"]).upper().startswith("EVALSHA")
    ]
    longest = max(scripts, default=0) / 1000
    return Build(seconds, batches, longest, await _used_memory(redis) - before)


@dataclass(frozen=True)
class SizeResult:
    sessions: int
    load_seconds: float
    old: Reading
    exact: DueSummary
    exact_scan_ms: float
    build: Build
    new: Reading


# The old script's reading over one slice of the due set by rank, so that every due session
# can be read without holding Redis past its script time limit. ARGV: first, last rank,
# session key prefix.
_SCAN_SLICE = """
local entries = redis.call('ZRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), 'WITHSCORES')
local oldest, soonest, pending = nil, nil, 0
for i = 1, #entries, 2 do
  local f = redis.call('HMGET', ARGV[3] .. entries[i], 'state', 'created_at', 'pending_expires_at')
  if f[1] == 'pending' then
    pending = pending + 1
    local closes = tonumber(f[3]) or tonumber(entries[i + 1])
    if soonest == nil or closes < soonest then soonest = closes end
  elseif f[2] then
    local created = tonumber(f[2])
    if created and (oldest == nil or created < oldest) then oldest = created end
  end
end
return {oldest and string.format('%.6f', oldest) or '', pending,
        soonest and string.format('%.6f', soonest) or ''}
"""
EXACT_SLICE = 50_000


async def exact_by_full_scan(redis: Redis, now: float, sessions: int) -> DueSummary:
    """The old scan's reading over every due session, a slice per script."""
    scan = redis.register_script(_SCAN_SLICE)
    oldest: list[float] = []
    soonest: list[float] = []
    pending = 0
    for first in range(0, sessions, EXACT_SLICE):
        last = first + EXACT_SLICE - 1
        reply = await scan(keys=[DUE], args=[first, last, session_key("")])
        oldest += [float(text(reply[0]))] if text(reply[0]) else []
        soonest += [float(text(reply[2]))] if text(reply[2]) else []
        pending += int(reply[1])
    return DueSummary(
        depth=sessions,
        overdue=int(await redis.zcount(DUE, "-inf", repr(now))),
        oldest_unfinished_seconds=now - min(oldest) if oldest else 0.0,
        pending_payments=pending,
        pending_closes_in=min(soonest) - now if soonest else None,
    )


async def run_size(sessions: int, scrapes: int) -> SizeResult:
    directory = Path(tempfile.mkdtemp(prefix="bench-due-"))
    server = LocalRedis(directory, port=free_port()).start()
    redis = Redis(port=server.port)
    try:
        await redis.config_set("appendonly", "no")
        now = time.time()
        started = time.perf_counter()
        await load(redis, sessions, now)
        load_seconds = time.perf_counter() - started
        old = await measure(
            redis,
            lambda: due_summary_by_scan(redis, now),
            scrapes=max(1, scrapes // 10),
            top_level=("zcard", "zcount", "eval"),
        )
        started = time.perf_counter()
        exact = await exact_by_full_scan(redis, now, sessions)
        exact_ms = (time.perf_counter() - started) * 1000
        built = await build(SessionStore(redis))
        new = await measure(
            redis, lambda: due_summary(redis, now), scrapes=scrapes, top_level=("multi", "exec")
        )
        assert new.summary.indexed
        return SizeResult(sessions, load_seconds, old, exact, exact_ms, built, new)
    finally:
        await redis.aclose()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _answer(summary: DueSummary) -> str:
    closes = "-" if summary.pending_closes_in is None else f"{summary.pending_closes_in:.0f}"
    return f"{summary.oldest_unfinished_seconds:9.0f} {summary.pending_payments:9d} {closes:>9}"


def _row(method: str, reading: Reading) -> str:
    longest = "-" if reading.longest_ms is None else f"{reading.longest_ms:.1f}"
    return (
        f"  {method:14s} {reading.median_ms:9.3f} {reading.redis_micros:10.1f} "
        f"{reading.commands:9.0f} {reading.slow_entries:5.2f} {longest:>8} "
        f"{_answer(reading.summary)}"
    )


def report(result: SizeResult) -> None:
    built = result.build.longest_batch_ms
    longest = f"{built:.1f} ms" if built else "under 10 ms"
    print(f"{result.sessions:,} sessions due (loaded in {result.load_seconds:.1f} s)")
    print(
        f"  {'':14s} {'client ms':>9} {'Redis µs':>10} {'commands':>9} {'slow':>5} "
        f"{'longest':>8} {'oldest s':>9} {'pending':>9} {'closes s':>9}\n"
        f"  {'per scrape:':14s} {'(median)':>9} {'(mean)':>10} {'':>9} {'':>5} {'ms':>8}"
    )
    print(_row("old scan", result.old))
    print(_row("indexes", result.new))
    print(f"  {'exact':14s} {'':9s} {'':10s} {'':9s} {'':5s} {'':8s} {_answer(result.exact)}")
    print(
        f"  an exact scan of every due session: {result.exact_scan_ms:.0f} ms; "
        f"building the indexes: {result.build.seconds:.1f} s in {result.build.batches} "
        f"batches (longest in Redis {longest}), "
        f"{result.build.index_bytes / result.sessions:.0f} bytes per due session"
    )
    print(
        f"  the indexes read in {result.new.redis_micros / result.old.redis_micros:.2%} of the "
        "old scan's Redis time"
    )


async def run(sizes: Sequence[int], scrapes: int) -> None:
    for sessions in sizes:
        report(await run_size(sessions, scrapes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 1_000_000])
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.sizes, args.scrapes))


if __name__ == "__main__":
    main()
