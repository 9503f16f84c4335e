"""`payhook sessions in-flight`: what each worker is running now, asked of the workers.

The session consumer answers Celery's remote control command `payhook_sessions` (registered
in `workers.tasks`); this sends it to every worker on the broker and prints the replies.
"""

from __future__ import annotations

import json
import time
from typing import Any

from config import Settings
from transport.celery_app import create_celery

COMMAND = "payhook_sessions"


def in_flight(settings: Settings, *, timeout: float = 2.0) -> dict[str, list[dict[str, Any]]]:
    """Worker name → the sessions it has in flight; workers that did not answer are absent."""
    app = create_celery(settings)
    try:
        replies = app.control.broadcast(COMMAND, reply=True, timeout=timeout)
    finally:
        app.close()
    found: dict[str, list[dict[str, Any]]] = {}
    for reply in replies or []:
        for worker, sessions in reply.items():
            found[worker] = sessions if isinstance(sessions, list) else []
    return found


def show_in_flight(settings: Settings, *, as_json: bool) -> int:
    found = in_flight(settings)
    if as_json:
        print(json.dumps(found, indent=2, sort_keys=True))
        return 0
    if not found:
        print("no worker answered")
        return 1
    now = time.time()
    for worker, sessions in sorted(found.items()):
        print(f"{worker}: {len(sessions)} in flight")
        for held in sorted(sessions, key=lambda s: s.get("since") or now):
            waiting = held.get("waiting_until")
            doing = f"retry in {waiting - now:.1f}s" if waiting else "running"
            age = now - float(held.get("since") or now)
            print(
                f"  {held.get('session_id')}  {held.get('task')}  {doing}  "
                f"for {age:.1f}s  runs={held.get('runs')}"
            )
    return 0
