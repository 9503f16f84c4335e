"""`payhook sessions reindex`: build the due summary's indexes again, from the start, now.

The sweeper builds them on its own in a store written before they existed, and puts right
the first entries of each every sweep. After an older version ran next to this one (a
rolling upgrade) entries further in may be wrong too: `payhook doctor` says so, and this
walks the whole due set and both indexes, a batch per script, while everything keeps
running. Until it is done the metrics read the bounded scan (`readouts.stats`).
"""

from __future__ import annotations

import time

from config import Settings
from redisio.connect import tool_client
from sessions.due_index import index_state
from sessions.store import SessionStore

PROGRESS_SECONDS = 5.0


async def reindex(settings: Settings) -> int:
    redis = tool_client(settings)
    try:
        store = SessionStore(redis)
        started = last = time.monotonic()
        await store.restart_due_index()
        looked_at = 0
        while True:
            batch = await store.build_due_index(limit=settings.sweep_batch)
            looked_at += batch.looked_at
            if batch.done:
                break
            if time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                print(f"{looked_at} entries looked at", flush=True)
        state = await index_state(redis)
    finally:
        await redis.aclose()
    print(
        f"indexed: {state.indexed} index entries for {state.due} due sessions "
        f"({looked_at} entries looked at in {time.monotonic() - started:.1f}s)"
    )
    return 0
