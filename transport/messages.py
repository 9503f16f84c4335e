"""Task messages: one Celery task per session kind, named here once, rendered for Redis.

`CeleryHandoff` renders the exact message Celery's Redis transport would push, so the store
can change a session's state *and* queue its task in one atomic Redis call: a session is
never stored without its message, nor queued twice, and no caller blocks on a publisher.
"""

from __future__ import annotations

import base64
import json
import uuid

from celery import Celery

from config.tracing import NO_TRACER, Tracer
from sessions.handoff import Envelope
from sessions.models import Kind

QUEUE = "payhook"
SWEEP_QUEUE = "payhook.sweep"

TASK_NAMES: dict[Kind, str] = {kind: f"payhook.{kind.value}" for kind in Kind}
SWEEP_TASK = "payhook.sweep"


def task_name(kind: Kind) -> str:
    return TASK_NAMES[kind]


class CeleryHandoff:
    """Renders `payhook.<kind>(session_id)` as the Redis transport's envelope on QUEUE.

    Headers and body come from Celery's own protocol-2 builder; the envelope is the one
    kombu's virtual transport writes for a publish to the default exchange. The end-to-end
    tests run a real worker on these messages, so a change in either library shows there.

    The message is rendered here rather than published by Celery, so Celery's own tracing
    hooks never see it: the current trace context goes into its headers here, where the
    worker finds it on `task.request`.
    """

    def __init__(self, celery: Celery, tracer: Tracer = NO_TRACER) -> None:
        self._celery = celery
        self._tracer = tracer

    def envelope(self, kind: Kind, session_id: str) -> Envelope:
        task_id = str(uuid.uuid4())
        built = self._celery.amqp.as_task_v2(task_id, task_name(kind), args=(session_id,))
        body = json.dumps(built.body).encode()
        self._tracer.inject(built.headers)
        properties = {
            **built.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        message = json.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": built.headers,
                "properties": properties,
            }
        )
        return Envelope(QUEUE, message)
