"""Replaying failed sessions: back to their recovery point, queued again, at a bounded rate.

A replay never repeats a PSP call whose answer is stored: a session that failed while
reporting resumes at `settled` and only Shopify is called again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from celery import Celery

from sessions.models import TimelineEvent
from sessions.states import State
from sessions.store import SessionStore, StaleState
from workers.dispatch import QUEUE, task_message


@dataclass(frozen=True)
class Replayed:
    session_id: str
    state: State | None  # where it resumes; None when it was not replayed
    note: str


async def replay(
    store: SessionStore,
    celery: Celery,
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
    for index, session_id in enumerate(session_ids):
        session = await store.get(session_id)
        if session is None:
            results.append(Replayed(session_id, None, "no such session"))
            continue
        if session.state is not State.FAILED:
            results.append(Replayed(session_id, None, f"not failed (it is {session.state})"))
            continue
        resume = State.SETTLED if session.outcome is not None else State.RECEIVED
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
        message = task_message(celery, session.kind, session_id)
        try:
            state = await store.replay(
                session_id, event, due_at=now + lease_seconds, enqueue=(QUEUE, message)
            )
        except StaleState as exc:
            results.append(Replayed(session_id, None, f"not failed ({exc.current})"))
            continue
        results.append(Replayed(session_id, state, f"resumes at {state}"))
    return results
