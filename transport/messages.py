"""Task messages: one Celery task per session kind, named here once, rendered for Redis.

`CeleryHandoff` renders the exact message Celery's Redis transport would push, so the store
can change a session's state *and* queue its task in one atomic Redis call: a session is
never stored without its message, nor queued twice, and no caller blocks on a publisher.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from celery import Celery
from celery.utils.saferepr import saferepr

from config.tracing import NO_TRACER, Tracer
from sessions.handoff import Envelope
from sessions.models import Kind

QUEUE = "payhook"
SWEEP_QUEUE = "payhook.sweep"
# Shopify's own webhooks: few, and one may take seconds (an uninstall fails every session of
# its shop), so Celery's own consumer runs them beside the sweep, not the session consumer.
WEBHOOK_QUEUE = "payhook.webhooks"

TASK_NAMES: dict[Kind, str] = {kind: f"payhook.{kind.value}" for kind in Kind}
SWEEP_TASK = "payhook.sweep"
WEBHOOK_TASK = "payhook.shopify_webhook"

# Stands in for the task id and the session id while a kind's template is rendered.
_TEMPLATE_ID = "00000000-0000-4000-8000-000000000000"
_TEMPLATE_ARG = "\x00session\x00"
# Celery's `saferepr` of `(id,)` is `('<id>',)` for such an id (printable ASCII, no quote or
# backslash, far below its size limit): every id Shopify sends. Other ids take saferepr.
_PLAIN_ID = re.compile(r"[\x20-\x26\x28-\x5b\x5d-\x7e]{1,255}")


def task_name(kind: Kind) -> str:
    return TASK_NAMES[kind]


@dataclass(frozen=True)
class _Template:
    """One kind's message as Celery renders it, less what differs from one message to the next
    (the task id, the session id and the delivery tag)."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    body_head: bytes
    body_tail: bytes
    argsrepr_maxsize: int


class CeleryHandoff:
    """Renders `payhook.<kind>(session_id)` as the Redis transport's envelope on QUEUE.

    Headers and body come from Celery's own protocol-2 builder, called once per kind when
    the handoff is built; each message then fills in its task id, session id and delivery
    tag, which is all that differs between two messages of one kind (`as_task_v2` was a
    third of the intake's own CPU). The envelope is the one kombu's virtual transport writes
    for a publish to the default exchange. The end-to-end tests run a real worker on these
    messages, and a test compares every rendered message with Celery's own, so a change in
    either library shows there.

    The message is rendered here rather than published by Celery, so Celery's own tracing
    hooks never see it: the current trace context goes into its headers here, where the
    worker finds it on `task.request`.
    """

    def __init__(self, celery: Celery, tracer: Tracer = NO_TRACER) -> None:
        self._celery = celery
        self._tracer = tracer
        self._templates = {kind: _template(celery, task_name(kind), QUEUE) for kind in Kind}
        self._webhook = _template(celery, WEBHOOK_TASK, WEBHOOK_QUEUE)

    def envelope(self, kind: Kind, session_id: str) -> Envelope:
        return self._render(self._templates[kind], QUEUE, session_id)

    def webhook_envelope(self, webhook_id: str) -> Envelope:
        """`payhook.shopify_webhook(webhook_id)` on WEBHOOK_QUEUE."""
        return self._render(self._webhook, WEBHOOK_QUEUE, webhook_id)

    def _render(self, template: _Template, queue: str, session_id: str) -> Envelope:
        # One read of the system's randomness for both ids (uuid4 makes one per id).
        random = os.urandom(32)
        task_id = str(uuid.UUID(bytes=random[:16], version=4))
        headers = {
            **template.headers,
            "id": task_id,
            "root_id": task_id,
            "argsrepr": _argsrepr(session_id, template.argsrepr_maxsize),
        }
        self._tracer.inject(headers)
        # Celery's body is `json.dumps([args, kwargs, embed])`; only the argument varies.
        body = template.body_head + json.dumps(session_id).encode() + template.body_tail
        message = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **template.properties,
                "correlation_id": task_id,
                "delivery_tag": str(uuid.UUID(bytes=random[16:], version=4)),
            },
        }
        return Envelope(queue, orjson.dumps(message).decode())


def _argsrepr(session_id: str, maxsize: int) -> str:
    if _PLAIN_ID.fullmatch(session_id) and maxsize >= 512:
        return f"('{session_id}',)"
    return saferepr((session_id,), maxsize)


def _template(celery: Celery, task: str, queue: str) -> _Template:
    built = celery.amqp.as_task_v2(_TEMPLATE_ID, task, args=(_TEMPLATE_ARG,))
    body = json.dumps(built.body)
    head, tail = body.split(json.dumps(_TEMPLATE_ARG), 1)
    headers = dict(built.headers)
    for name in ("id", "root_id", "argsrepr"):
        headers.pop(name)
    properties = {
        **built.properties,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
    }
    properties.pop("correlation_id")
    return _Template(
        headers=headers,
        properties=properties,
        body_head=head.encode(),
        body_tail=tail.encode(),
        argsrepr_maxsize=celery.amqp.argsrepr_maxsize,
    )
