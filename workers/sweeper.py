"""The sweeper: moves sessions whose due time has passed back into Celery.

A session is always in the due set until it is reported or failed, with the time by which
something must have happened to it. Anything that loses a task message (a killed worker, a
Redis restart, a message dropped by the broker) therefore ends up here, and so do retries
scheduled too far out for a Celery countdown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sessions.models import Kind
from sessions.store import SessionStore

log = logging.getLogger("payhook.sweeper")


async def sweep(
    store: SessionStore,
    dispatch: Callable[[Kind, str], None],
    *,
    now: float,
    limit: int,
    hold_for: float,
) -> int:
    """Dispatch up to `limit` due sessions; returns how many were dispatched."""
    dispatched = 0
    for session_id in await store.claim_due(now, limit=limit, hold_for=hold_for):
        session = await store.get(session_id)
        if session is None:
            continue
        dispatch(session.kind, session_id)
        dispatched += 1
        log.info(
            "re-kicked due session",
            extra={
                "session_id": session_id,
                "shop": session.shop,
                "kind": str(session.kind),
                "state": str(session.state),
            },
        )
    return dispatched
