"""`payhook replay`: resume failed sessions, one by one or in bulk, at a bounded rate."""

from __future__ import annotations

import sys

from config import Settings
from readouts.query import SessionFilter, find_sessions
from redisio.connect import tool_client
from sessions.replay import replay
from sessions.store import SessionStore
from transport.celery_app import create_celery
from transport.messages import CeleryHandoff


async def run_replay(
    settings: Settings,
    session_ids: list[str],
    wanted: SessionFilter | None,
    *,
    dry_run: bool,
    rate: float,
) -> int:
    redis = tool_client(settings)
    try:
        store = SessionStore(redis, CeleryHandoff(create_celery(settings)))
        if wanted is not None:
            session_ids = [s.id for s in await find_sessions(store, wanted)]
        results = await replay(
            store,
            session_ids,
            lease_seconds=settings.lease_seconds,
            per_second=rate,
            dry_run=dry_run,
            actor="payhook replay",
        )
    finally:
        await redis.aclose()
    for result in results:
        print(f"{result.session_id}  {result.note}")
    done = [r for r in results if r.state is not None]
    verb = "would replay" if dry_run else "replayed"
    print(f"{verb} {len(done)} of {len(results)} session(s)")
    skipped = len(results) - len(done)
    if skipped and wanted is None:
        print(f"{skipped} session(s) were not replayed", file=sys.stderr)
        return 1
    return 0
