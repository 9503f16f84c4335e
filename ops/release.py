"""`payhook sessions release SESSION_ID`: give back the money a failed session holds
(see `readouts.held`), after asking the provider:

| the provider says | release |
|---|---|
| nothing was applied | the reservation is returned; a replay may reserve again |
| it was applied | refused: `payhook replay` reports it to Shopify and commits it |
| cannot be reached | refused, unless `--force` (the operator checked the provider) |

A released session keeps its PSP-uncertain mark, so a replay looks the operation up at the
provider before it may send it again.
"""

from __future__ import annotations

import sys
import time

from redis.asyncio import Redis

from config import Settings
from errors import StaleState
from readouts.held import money_held
from redisio.connect import tool_client
from sessions import decisions
from sessions.ledger_store import LedgerStore
from sessions.store import SessionStore
from workers.connectors.base import NotFound, TryAgain
from workers.connectors.build import build_connector
from workers.connectors.order_lock import OrderLock
from workers.lifecycle.kinds import LEDGERED


async def release(settings: Settings, session_id: str, *, force: bool) -> int:
    """`payhook sessions release`: give back a failed session's reservation."""
    redis = tool_client(settings)
    try:
        return await _release(settings, redis, session_id, force=force)
    finally:
        await redis.aclose()


async def _release(settings: Settings, redis: Redis, session_id: str, *, force: bool) -> int:
    store, ledger = SessionStore(redis), LedgerStore(redis)
    session = await store.get(session_id)
    if session is None:
        return _refuse(f"no session {session_id}")
    held = await money_held(ledger, session)
    if held is None:
        return _refuse(f"session {session_id} holds no money (state {session.state})")
    connector = build_connector(settings, redis)
    try:
        known = await LEDGERED[session.kind].psp_status(connector, ledger, session)
    finally:
        await connector.close()
    if isinstance(known, TryAgain) and not force:
        return _refuse(
            f"the provider cannot say what happened ({known.reason}); check it there, "
            "then release with --force if nothing was applied"
        )
    if not isinstance(known, NotFound | TryAgain):
        return _refuse(
            f"the provider has this {held.op.value}: `payhook replay {session_id}` "
            "reports it to Shopify and settles the reservation"
        )
    checked = "operator checked the provider" if force else "the provider has no such operation"
    detail = f"{held.describe()} given back: {checked}"
    change = decisions.release(session, detail, time.time())
    try:
        await store.change(session, change)
    except StaleState:
        return _refuse(f"session {session_id} moved on (replayed?); nothing released")
    # A connector that runs one operation at a time per provider order kept the order locked
    # for this session while its outcome was unknown; it is known now, so the order is free.
    provider_id, _ = await ledger.provider_payment(session.payment_id)
    lock = OrderLock(redis, settings.connector, ttl_seconds=settings.psp_order_lock_seconds)
    await lock.release(provider_id or session.payment_id, session.id)
    print(f"released: {held.describe()}")
    return 0


def _refuse(message: str) -> int:
    print(f"payhook sessions release: {message}", file=sys.stderr)
    return 1
