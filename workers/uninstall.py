"""A shop uninstalled the app: its token goes, and every session of it not yet finished fails
now, with the reason, through the session store's single write path.

Each session is failed by `workers.lifecycle.settling.shop_gone`, as a dead letter whose
ledger reservation is given back when no PSP request can have been applied and kept (money
held) when one may have, or is under way. The write takes the session from any worker
holding it (its fencing token moves on, so that worker's later writes change nothing) and is
refused if the session changed since it was read; it is then read again. A session admitted
while this runs finds the tombstone at its claim and fails there the same way
(`workers.lifecycle.runner`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from errors import SessionsLeft, StaleState
from sessions.change import Change
from sessions.keys import DUE, session_key, text
from sessions.store import SessionStore, decode
from workers.lifecycle.kinds import LIFECYCLES
from workers.lifecycle.settling import MONEY_HELD, shop_gone

log = logging.getLogger("payhook.webhooks")

BATCH = 500
# A session a worker keeps writing is read again this often before the webhook is retried.
READS_PER_SESSION = 5


@dataclass
class Failed:
    """What failing a shop's unfinished sessions did."""

    failed: list[str] = field(default_factory=list)
    # Of those, the ones whose reservation stays: the PSP may have moved the money.
    holding: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        text_ = f"{len(self.failed)} unfinished session(s) failed"
        if self.holding:
            text_ += f", {len(self.holding)} holding money ({', '.join(self.holding[:10])})"
        return text_


async def unfinished_of(redis: Redis, shop: str) -> list[str]:
    """The shop's sessions in the due set (every unfinished session is there)."""
    found: list[str] = []
    seen: set[str] = set()
    cursor = 0
    while True:
        cursor, page = await redis.zscan(DUE, cursor, count=BATCH)
        ids = [text(member) for member, _ in page if text(member) not in seen]
        seen.update(ids)
        if ids:
            async with redis.pipeline(transaction=False) as pipe:
                for session_id in ids:
                    pipe.hget(session_key(session_id), "shop")
                shops = await pipe.execute()
            found += [
                i for i, s in zip(ids, shops, strict=True) if s is not None and text(s) == shop
            ]
        if cursor == 0:
            return found


async def fail_unfinished(
    store: SessionStore,
    shop: str,
    reason: str,
    *,
    clock: Callable[[], float],
    created_by: float | None = None,
) -> Failed:
    """Fail every unfinished session of `shop` (created by `created_by`, when given: a
    re-installed shop's later sessions are its own again). Raises `SessionsLeft` when some
    could not be, after trying every one."""
    done = Failed()
    for session_id in await unfinished_of(store.redis, shop):
        try:
            await _fail_one(store, session_id, shop, reason, clock, created_by, done)
        except Exception as exc:  # one bad session must not keep the others unfailed
            log.error(
                "could not fail a session of an uninstalled shop",
                extra={"session_id": session_id, "shop": shop, "error": repr(exc)},
            )
            done.errors[session_id] = f"{type(exc).__name__}: {exc}"
    if done.errors:
        first, error = next(iter(done.errors.items()))
        raise SessionsLeft(
            f"{len(done.errors)} session(s) of {shop} not failed ({first}: {error}); "
            f"{done.describe()}"
        )
    return done


async def _fail_one(
    store: SessionStore,
    session_id: str,
    shop: str,
    reason: str,
    clock: Callable[[], float],
    created_by: float | None,
    done: Failed,
) -> None:
    for _ in range(READS_PER_SESSION):
        raw = await store.redis.hgetall(session_key(session_id))
        fields = {text(k): text(v) for k, v in raw.items()}
        if not fields or fields.get("state") in ("reported", "failed"):
            return
        session = decode(fields)
        if session.shop != shop or (created_by is not None and session.created_at > created_by):
            return
        decision = shop_gone(
            session, reason, clock(), ledger=LIFECYCLES[session.kind].ledger_operation(session)
        )
        change: Change = dataclasses.replace(
            decision.change,
            # Whatever worker holds it is done with it; and nothing written since the read
            # (a retry's fields, say) is overwritten by a decision made without it.
            supersede=True,
            when={"updated_at": frozenset({fields.get("updated_at", "")})},
        )
        try:
            await store.change(session, change)
        except StaleState:
            continue
        done.failed.append(session_id)
        if change.ledger is None and decision.change.event.detail == MONEY_HELD:
            done.holding.append(session_id)
        log.warning(
            "session failed: shop uninstalled",
            extra={"session_id": session_id, "shop": shop, "kind": session.kind.value},
        )
        return
    raise SessionsLeft(f"session {session_id} kept changing while it was being failed")
