"""Prometheus metrics of the web process, on a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sessions = Counter(
            "payhook_sessions_received_total",
            "Session requests by kind and what became of them.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "payhook_session_request_seconds",
            "Time to answer a session request.",
            ["kind"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.due = Gauge(
            "payhook_sessions_unfinished",
            "Sessions not yet reported or failed (the due set).",
            registry=self.registry,
        )
        self.queue = Gauge(
            "payhook_queue_depth", "Task messages waiting in the broker.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
