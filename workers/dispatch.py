"""Handing sessions to the workers: one Celery task per session kind, named here once.

Two ways in:

- `task_message()` renders the exact message Celery's Redis transport would push, so the web
  handler can store a session *and* queue its task in one atomic Redis call: a session is
  never stored without its message, nor queued twice, and the request path never blocks on
  a publisher.
- `Dispatcher` publishes through Celery itself, for code already running in a worker (the
  sweeper).
"""

from __future__ import annotations

import base64
import json
import uuid

from celery import Celery

from sessions.models import Kind

QUEUE = "payhook"

TASK_NAMES: dict[Kind, str] = {kind: f"payhook.{kind.value}" for kind in Kind}
SWEEP_TASK = "payhook.sweep"


def task_name(kind: Kind) -> str:
    return TASK_NAMES[kind]


def task_message(celery: Celery, kind: Kind, session_id: str) -> str:
    """The Redis-transport envelope of `payhook.<kind>(session_id)`, ready to LPUSH on QUEUE.

    Headers and body come from Celery's own protocol-2 builder; the envelope is the one
    kombu's virtual transport writes for a publish to the default exchange. The end-to-end
    tests run a real worker on these messages, so a change in either library shows there.
    """
    task_id = str(uuid.uuid4())
    built = celery.amqp.as_task_v2(task_id, task_name(kind), args=(session_id,))
    body = json.dumps(built.body).encode()
    properties = {
        **built.properties,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": QUEUE},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": built.headers,
            "properties": properties,
        }
    )


class Dispatcher:
    """Publishes task messages through Celery (blocking; for worker-side code)."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def dispatch(self, kind: Kind, session_id: str) -> None:
        self._celery.send_task(task_name(kind), args=[session_id], queue=QUEUE)
