"""The sweeper: moves sessions whose due time has passed back into the queue, and keeps the
listing index as small as retention says.

A session is always in the due set until it is reported or failed, with the time by which
something must have happened to it. Anything that loses a task message (a killed worker, a
Redis restart, a message dropped by the broker) therefore ends up here, and so do retries
scheduled too far out for a Celery countdown. Re-queuing a session that is in fact being
worked on is harmless: the delivery finds it leased and does nothing.

Pruning must keep up with any report rate, or the listing index grows without bound: a sweep
prunes batch after batch until none is left expired or its time budget is spent. Each batch
is one short Lua call, so Redis serves everyone else between them.

The due summary's indexes (`sessions.due_index`) are kept by the write scripts; a sweep puts
right the head of each (entries a process of an older version left behind) and, in a store
written before them, builds them batch after batch within a budget of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from config import Settings
from errors import StoreCorrupt
from sessions.store import SessionStore
from shops.webhook_store import WebhookStore

log = logging.getLogger("payhook.sweeper")


async def sweep(
    store: SessionStore,
    *,
    now: float,
    limit: int,
    hold_for: float,
    prune_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    webhooks: WebhookStore | None = None,
) -> int:
    """Queue up to `limit` due sessions again; returns how many were queued. Then drop every
    session whose retention ran out from the listing index, `limit` per batch, for at most
    `prune_seconds` (at least one batch), and look after the due summary's indexes: their
    heads, then (until they are built) `limit` ids per batch for as long again. Due Shopify
    webhooks are queued again the same way (their retries are due-set entries, as a session's
    long waits are)."""
    queued = await store.requeue_due(now, limit=limit, hold_for=hold_for)
    for session_id in queued:
        log.info("re-kicked due session", extra={"session_id": session_id})
    if webhooks is not None:
        for webhook_id in await webhooks.requeue_due(now, limit=limit, hold_for=hold_for):
            log.info("re-kicked due webhook", extra={"webhook_id": webhook_id})
        await webhooks.forget_expired(now)
    pruned = await prune(store, now=now, limit=limit, seconds=prune_seconds, clock=clock)
    if pruned:
        log.info("pruned expired sessions", extra={"count": pruned})
    await index_due(store, limit=limit, seconds=prune_seconds, clock=clock)
    return len(queued)


async def prune(
    store: SessionStore,
    *,
    now: float,
    limit: int,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Prune in batches until a batch comes back short or `seconds` have passed; returns
    how many sessions left the listing. Every id a batch looks at leaves the expired range
    (`SessionStore.prune_expired`), so this always ends."""
    stop = clock() + seconds
    dropped = 0
    while True:
        batch = await store.prune_expired(now, limit=limit)
        dropped += batch.dropped
        if batch.looked_at < limit or clock() >= stop:
            return dropped


async def index_due(
    store: SessionStore,
    *,
    limit: int,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Put right the head of each due summary index, then build them in batches until they
    are built or `seconds` have passed (at least one batch); True once they are built. A key
    of the wrong type is logged, not raised: the sweep's own work is done by then, and the
    next sweep tries again."""
    try:
        repaired = await store.repair_due_index(limit=limit)
        if repaired:
            log.warning("put right due index entries", extra={"count": repaired})
        stop = clock() + seconds
        looked_at = 0
        while True:
            batch = await store.build_due_index(limit=limit)
            looked_at += batch.looked_at
            if batch.done or clock() >= stop:
                break
    except StoreCorrupt as exc:
        log.error("due index not kept", extra={"key": exc.key})
        return False
    if looked_at:
        log.info("indexed due sessions", extra={"count": looked_at, "done": batch.done})
    return batch.done


async def sweep_as_configured(
    store: SessionStore, settings: Settings, *, now: float, webhooks: WebhookStore | None = None
) -> int:
    """One sweep with the batch, lease and pruning budget the settings give (beat's task)."""
    return await sweep(
        store,
        now=now,
        limit=settings.sweep_batch,
        hold_for=settings.lease_seconds,
        prune_seconds=settings.sweep_prune_seconds,
        webhooks=webhooks,
    )
