"""The sweeper: moves sessions whose due time has passed back into the queue.

A session is always in the due set until it is reported or failed, with the time by which
something must have happened to it. Anything that loses a task message (a killed worker, a
Redis restart, a message dropped by the broker) therefore ends up here, and so do retries
scheduled too far out for a Celery countdown. Re-queuing a session that is in fact being
worked on is harmless: the delivery finds it leased and does nothing.
"""

from __future__ import annotations

import logging

from sessions.store import SessionStore

log = logging.getLogger("payhook.sweeper")


async def sweep(store: SessionStore, *, now: float, limit: int, hold_for: float) -> int:
    """Queue up to `limit` due sessions again; returns how many were queued. Also drops up to
    `limit` sessions whose retention ran out from the listing index."""
    queued = await store.requeue_due(now, limit=limit, hold_for=hold_for)
    for session_id in queued:
        log.info("re-kicked due session", extra={"session_id": session_id})
    pruned = await store.prune_expired(now, limit=limit)
    if pruned:
        log.info("pruned expired sessions", extra={"count": pruned})
    return len(queued)
