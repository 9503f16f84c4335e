"""OpenTelemetry behind the `Tracer` port; imported only when tracing is on.

Spans go to the exporter `OTEL_TRACES_EXPORTER` names (`otlp` over HTTP/protobuf, or
`console`). The trace context crosses processes as W3C `traceparent` headers: in the HTTP
request (an inbound one is continued) and in the Celery message `transport.messages` renders.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from config.settings import Settings
from config.tracing import Attributes, SpanRole

_W3C = TraceContextTextMapPropagator()
_KINDS = {"server": SpanKind.SERVER, "consumer": SpanKind.CONSUMER, "internal": SpanKind.INTERNAL}


class OtelTracer:
    enabled = True

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._tracer = provider.get_tracer("payhook")

    def span(
        self,
        name: str,
        attributes: Attributes,
        *,
        parent: Mapping[str, str] | None = None,
        role: SpanRole = "internal",
    ) -> AbstractContextManager[object]:
        return self._span(name, attributes, parent, role)

    @contextmanager
    def _span(
        self,
        name: str,
        attributes: Attributes,
        parent: Mapping[str, str] | None,
        role: SpanRole,
    ) -> Iterator[object]:
        context = _W3C.extract(parent) if parent is not None else None
        with self._tracer.start_as_current_span(
            name, context=context, kind=_KINDS[role], attributes=dict(attributes)
        ) as span:
            yield span

    def annotate(self, attributes: Attributes) -> None:
        trace.get_current_span().set_attributes(dict(attributes))

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        _W3C.inject(headers)


class TraceIds(logging.Filter):
    """Puts the active span's `trace_id` and `span_id` on each log record, so a JSON log
    line leads to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


def _exporter(settings: Settings) -> SpanExporter:
    if settings.traces_exporter == "console":
        return ConsoleSpanExporter()
    # Imported here: the console exporter needs no protobuf.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.otlp_traces_endpoint)


_installed: OtelTracer | None = None


def install(settings: Settings, service: str) -> OtelTracer:
    """Set this process up once: the provider and its exporter, spans for outgoing aiohttp
    requests (PSP connectors, the Shopify gateway), trace ids in the log lines."""
    global _installed
    if _installed is not None:
        return _installed
    resource = Resource.create({SERVICE_NAME: settings.otel_service_name or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceIds())
    _installed = OtelTracer(provider)
    return _installed
