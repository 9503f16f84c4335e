"""One session, one trace: the intake request through the real app, its task message as
Redis holds it, then the run a worker makes of that message (the runner with the simulator
PSP and the sandbox Shopify as a real server), every span kept by an in-memory exporter."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from config import Settings
from config.logging import JsonFormatter
from config.otel import OtelTracer, TraceIds
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import SHOP, capture_body, make_session, received_event, shopify_headers
from tests.workers.conftest import ServicesFor
from transport.celery_app import create_celery
from transport.messages import QUEUE
from transport.session_queue import decode
from webhook.app import create_app
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import Done
from workers.lifecycle.runner import run


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> OtelTracer:
    # A provider of the test's own: the process-wide one is never touched.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracer(provider)


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """payhook's log lines as `payhook serve` and `payhook worker` write them with traces on."""
    caplog.set_level(logging.INFO, logger="payhook")
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TraceIds())
    logger = logging.getLogger("payhook")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


async def test_one_capture_is_one_trace_from_intake_to_the_mutation(
    aiohttp_client: Any,
    redis: fakeredis.FakeAsyncRedis,
    services_for: ServicesFor,
    tracer: OtelTracer,
    exporter: InMemorySpanExporter,
    log_lines: io.StringIO,
) -> None:
    settings = Settings(shopify_access_token="shpat_fallback")
    app = create_app(settings, redis=redis, celery=create_celery(settings), tracer=tracer)
    client = await aiohttp_client(app)
    body = capture_body()
    answer = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201

    # The worker's side: the session consumer reads the trace headers off the message.
    raw = await redis.lindex(QUEUE, 0)
    assert "traceparent" in json.loads(raw)["headers"]
    parent = decode(raw).trace_parent
    services = replace(services_for(SimulatorConnector(redis)), tracer=tracer)
    assert await run(body["id"], services, CAPTURE, trace_parent=parent) == Done(State.REPORTED)

    spans = by_name(exporter.get_finished_spans())
    intake = spans["POST /capture_sessions"]
    worker = spans["run capture"]
    psp = spans["psp capture"]
    shopify = spans["shopify captureSessionResolve"]
    assert {span.context.trace_id for span in spans.values()} == {intake.context.trace_id}
    assert intake.parent is None
    assert parent_of(worker) == intake.context.span_id
    assert parent_of(psp) == worker.context.span_id
    assert parent_of(shopify) == worker.context.span_id
    assert (intake.kind, worker.kind) == (SpanKind.SERVER, SpanKind.CONSUMER)
    assert intake.attributes is not None
    assert intake.attributes["http.response.status_code"] == 201
    for span in (intake, worker, psp, shopify):
        assert span.attributes is not None
        assert {key: span.attributes.get(key) for key in ("session_id", "shop", "kind")} == {
            "session_id": body["id"],
            "shop": SHOP,
            "kind": "capture",
        }, span.name

    trace_id = f"{intake.context.trace_id:032x}"
    logged = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    about = [entry for entry in logged if entry.get("session_id") == body["id"]]
    assert {entry["message"] for entry in about} >= {"session received"}
    assert len(about) >= 2
    assert {entry.get("trace_id") for entry in about} == {trace_id}


async def test_a_message_without_trace_headers_starts_its_own_trace(
    redis: fakeredis.FakeAsyncRedis,
    services_for: ServicesFor,
    tracer: OtelTracer,
    exporter: InMemorySpanExporter,
) -> None:
    """A run the sweeper queued (no intake request behind it) is still traced."""
    session = make_session()
    await SessionStore(redis).create(session, received_event(), due_at=0, queue=False)
    services = replace(services_for(SimulatorConnector(redis)), tracer=tracer)
    assert await run(session.id, services, CAPTURE) == Done(State.REPORTED)
    worker = by_name(exporter.get_finished_spans())["run capture"]
    assert worker.parent is None
    assert worker.attributes is not None
    assert worker.attributes["session_id"] == session.id
