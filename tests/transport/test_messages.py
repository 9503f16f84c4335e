"""The task message rendered from a per-kind template is the one Celery's own builder
renders, but for the ids that differ from one message to the next."""

from __future__ import annotations

import base64
import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from config import Settings
from sessions.models import Kind
from transport.celery_app import create_celery
from transport.messages import QUEUE, WEBHOOK_QUEUE, WEBHOOK_TASK, CeleryHandoff, task_name

IDS = [
    "abc123",
    "ünïcode-id",
    "it's",
    "back\\slash",
    'quote"d',
    "x" * 255,
    "y" * 2000,  # past Celery's argsrepr limit: truncated as Celery truncates it
    "sp ace/?#%",
]


def _celery_message(celery: Any, kind: Kind, session_id: str, task_id: str) -> dict[str, Any]:
    built = celery.amqp.as_task_v2(task_id, task_name(kind), args=(session_id,))
    return {"headers": built.headers, "body": json.dumps(built.body)}


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("session_id", IDS)
def test_a_message_is_the_one_celery_builds(kind: Kind, session_id: str) -> None:
    celery = create_celery(Settings())
    envelope = CeleryHandoff(celery).envelope(kind, session_id)
    assert envelope.queue == QUEUE
    message = json.loads(envelope.body)
    task_id = message["headers"]["id"]
    expected = _celery_message(celery, kind, session_id, task_id)
    assert message["headers"] == expected["headers"]
    assert base64.b64decode(message["body"]).decode() == expected["body"]
    properties = message["properties"]
    assert properties["correlation_id"] == task_id
    assert properties["delivery_info"] == {"exchange": "", "routing_key": QUEUE}
    assert properties["body_encoding"] == "base64"


@pytest.mark.parametrize("webhook_id", ["0b6e4a2f-6f4b-4b8e-9a1e-5a6c1f0d9e21", "it's"])
def test_a_webhook_message_is_the_one_celery_builds_on_the_webhook_queue(webhook_id: str) -> None:
    celery = create_celery(Settings())
    envelope = CeleryHandoff(celery).webhook_envelope(webhook_id)
    assert envelope.queue == WEBHOOK_QUEUE
    message = json.loads(envelope.body)
    task_id = message["headers"]["id"]
    built = celery.amqp.as_task_v2(task_id, WEBHOOK_TASK, args=(webhook_id,))
    assert message["headers"] == built.headers
    assert base64.b64decode(message["body"]).decode() == json.dumps(built.body)
    routing = {"exchange": "", "routing_key": WEBHOOK_QUEUE}
    assert message["properties"]["delivery_info"] == routing


def test_every_message_has_ids_of_its_own() -> None:
    handoff = CeleryHandoff(create_celery(Settings()))
    first, second = (json.loads(handoff.envelope(Kind.CAPTURE, "s1").body) for _ in range(2))
    assert first["headers"]["id"] != second["headers"]["id"]
    assert first["properties"]["delivery_tag"] != second["properties"]["delivery_tag"]
    assert first["properties"]["delivery_tag"] != first["headers"]["id"]


class _Tracer:
    enabled = True

    def span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def annotate(self, attributes: Any) -> None:
        return None

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_the_trace_context_goes_into_each_message_not_into_the_template() -> None:
    handoff = CeleryHandoff(create_celery(Settings()), _Tracer())
    message = json.loads(handoff.envelope(Kind.REFUND, "s1").body)
    assert message["headers"]["traceparent"].startswith("00-0af76519")
    plain = json.loads(CeleryHandoff(create_celery(Settings())).envelope(Kind.REFUND, "s1").body)
    assert "traceparent" not in plain["headers"]
