"""Traces: the port the rest of payhook talks to, and the switch that decides whether
OpenTelemetry is loaded at all.

Tracing is off unless the standard `OTEL_*` variables ask for it (`Settings.traces_exporter`).
Off, every process gets `NO_TRACER`, whose calls return at once, and no OpenTelemetry module
is ever imported; on, `config.otel` is imported by the entry point that asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, Protocol

from config.settings import Settings

Attributes = Mapping[str, str | int | float | bool]
# What a span stands for, in OpenTelemetry's terms: the intake request, a worker run taken
# off the queue, or a step inside a run.
SpanRole = Literal["server", "consumer", "internal"]


class Tracer(Protocol):
    @property
    def enabled(self) -> bool: ...

    def span(
        self,
        name: str,
        attributes: Attributes,
        *,
        parent: Mapping[str, str] | None = None,
        role: SpanRole = "internal",
    ) -> AbstractContextManager[object]:
        """A span around the `with` block, the child of the current span, or of the trace
        context in `parent` (W3C `traceparent` headers) when given."""
        ...

    def annotate(self, attributes: Attributes) -> None:
        """Add attributes to the current span (known only once the request is parsed)."""
        ...

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        """Write the current trace context into outgoing message headers."""
        ...


# One shared context manager: entering and leaving it costs no allocation per call.
_NOTHING: AbstractContextManager[object] = nullcontext()


class NoTracer:
    enabled = False

    def span(
        self,
        name: str,
        attributes: Attributes,
        *,
        parent: Mapping[str, str] | None = None,
        role: SpanRole = "internal",
    ) -> AbstractContextManager[object]:
        return _NOTHING

    def annotate(self, attributes: Attributes) -> None:
        return None

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        return None


NO_TRACER = NoTracer()


def build_tracer(settings: Settings, service: str) -> Tracer:
    """For an entry point: `NO_TRACER`, or OpenTelemetry set up for this process."""
    if settings.traces_exporter is None:
        return NO_TRACER
    from config.otel import install

    return install(settings, service)
