"""Replaying failed sessions: back to their recovery point, queued again, at a bounded rate.

A replay never repeats a PSP call whose answer is stored: a session that failed while
reporting resumes at `settled` and only Shopify is called again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from errors import StaleState
from sessions import decisions
from sessions.models import Session
from sessions.states import State
from sessions.store import SessionStore


@dataclass(frozen=True)
class Replayed:
    session_id: str
    state: State | None  # where it resumes; None when it was not replayed
    note: str


async def replay(
    store: SessionStore,
    session_ids: Iterable[str],
    *,
    lease_seconds: float,
    per_second: float,
    dry_run: bool = False,
    actor: str = "operator",
) -> list[Replayed]:
    """Replay each failed session in order, no faster than `per_second`.

    The rate limit keeps a bulk replay from flooding the queue ahead of live traffic.
    """
    results: list[Replayed] = []
    gap = 1.0 / per_second if per_second > 0 else 0.0
    wrote = False
    async for session_id, session in _read(store, session_ids):
        if session is None:
            results.append(Replayed(session_id, None, "no such session"))
            continue
        if wrote and gap and not dry_run and session.state is State.FAILED:
            # The pace is between writes: a session that is not replayed costs no wait.
            await asyncio.sleep(gap)
        decided = decisions.replay(session, time.time(), actor=actor, lease_seconds=lease_seconds)
        if isinstance(decided, decisions.Refused):
            results.append(Replayed(session_id, None, decided.message))
            continue
        if dry_run:
            results.append(Replayed(session_id, decided.state, f"would resume at {decided.state}"))
            continue
        try:
            # Back at its recovery point and queued, in one write.
            await store.change(session, decided, queue=True)
            wrote = True
        except StaleState as exc:
            results.append(Replayed(session_id, None, f"not failed ({exc.current})"))
            continue
        results.append(Replayed(session_id, decided.state, f"resumes at {decided.state}"))
    return results


# Sessions are read this many to a round trip, each batch just before it is replayed: at the
# replay rate a read is at most seconds old, and the replay's write refuses a session that
# changed since (StaleState) all the same.
READ_BATCH = 100


async def _read(
    store: SessionStore, session_ids: Iterable[str]
) -> AsyncIterator[tuple[str, Session | None]]:
    ids = list(session_ids)
    for start in range(0, len(ids), READ_BATCH):
        batch = ids[start : start + READ_BATCH]
        for pair in zip(batch, await store.get_many(batch), strict=True):
            yield pair
