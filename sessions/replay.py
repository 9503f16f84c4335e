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
from sessions.models import Session, TimelineEvent
from sessions.states import State, recovery_point
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
    index = -1
    async for session_id, session in _read(store, session_ids):
        index += 1
        if session is None:
            results.append(Replayed(session_id, None, "no such session"))
            continue
        if session.state is not State.FAILED:
            results.append(Replayed(session_id, None, f"not failed (it is {session.state})"))
            continue
        resume = recovery_point(session.outcome is not None)
        if dry_run:
            results.append(Replayed(session_id, resume, f"would resume at {resume}"))
            continue
        if index and gap:
            await asyncio.sleep(gap)
        now = time.time()
        event = TimelineEvent(
            at=now,
            event="replayed",
            state=resume,
            detail=f"by {actor}; last error: {session.last_error}",
        )
        try:
            state = await store.replay(session, event, due_at=now + lease_seconds)
        except StaleState as exc:
            results.append(Replayed(session_id, None, f"not failed ({exc.current})"))
            continue
        results.append(Replayed(session_id, state, f"resumes at {state}"))
    return results


# Sessions are read this many to a round trip, each batch just before it is replayed: at the
# replay rate a read is at most seconds old, and `store.replay` refuses a session that changed
# since (StaleState) all the same.
READ_BATCH = 100


async def _read(
    store: SessionStore, session_ids: Iterable[str]
) -> AsyncIterator[tuple[str, Session | None]]:
    ids = list(session_ids)
    for start in range(0, len(ids), READ_BATCH):
        batch = ids[start : start + READ_BATCH]
        for pair in zip(batch, await store.get_many(batch), strict=True):
            yield pair
