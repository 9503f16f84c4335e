"""Prometheus metrics of the web process, on a registry of its own (one per app)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from webhook.scrape import GaugeReading


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
            "Time to answer a session request (201, 4xx or 5xx), by what became of it.",
            ["kind", "result"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.webhooks = Counter(
            "payhook_shopify_webhooks_received_total",
            "Shopify webhooks (POST /shopify/webhooks) by topic and what became of them.",
            ["topic", "result"],
            registry=self.registry,
        )
        self.buyer_returns = Counter(
            "payhook_buyer_returns_total",
            "Buyers back from the PSP's page (GET /payments/{id}/return), by where they went.",
            ["result"],
            registry=self.registry,
        )
        self.due = Gauge(
            "payhook_sessions_unfinished",
            "Sessions not yet reported or failed (the due set).",
            registry=self.registry,
        )
        self.queue = Gauge(
            "payhook_queue_depth", "Task messages waiting in the broker.", registry=self.registry
        )
        # Computed at scrape time from Redis (`readouts.stats`), at a bounded cost.
        self.overdue = Gauge(
            "payhook_sessions_overdue",
            "Unfinished sessions whose due time has passed (waiting for the sweeper or a worker).",
            registry=self.registry,
        )
        self.oldest = Gauge(
            "payhook_oldest_unfinished_session_age_seconds",
            "Age of the oldest session a worker still has to move (pending payments aside).",
            registry=self.registry,
        )
        self.pending = Gauge(
            "payhook_pending_payments",
            "Payment sessions reported pending, waiting for the PSP or their window to close.",
            registry=self.registry,
        )
        self.pending_closes = Gauge(
            "payhook_pending_payment_expiry_seconds",
            "Seconds until the first pending payment's window (pendingExpiresAt) closes; "
            "+Inf when none is pending.",
            registry=self.registry,
        )
        self.failed = Gauge(
            "payhook_sessions_failed",
            "Failed sessions (dead letters) waiting for an operator, by kind.",
            ["kind"],
            registry=self.registry,
        )

    def show(self, reading: GaugeReading) -> None:
        self.queue.set(reading.queue)
        due = reading.due
        self.due.set(due.depth)
        self.overdue.set(due.overdue)
        self.oldest.set(due.oldest_unfinished_seconds)
        self.pending.set(due.pending_payments)
        closes = due.pending_closes_in
        self.pending_closes.set(math.inf if closes is None else closes)
        for kind, count in reading.failed.items():
            self.failed.labels(kind).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
