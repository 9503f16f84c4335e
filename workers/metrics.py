"""Prometheus metrics of one worker process, served on its own port.

`WorkerMetrics` is the runner's `RunObserver`: it turns each stored decision and each peer
call into samples, so connectors and `decide` stay free of metrics. Every worker process has
its own registry and its own HTTP listener (`PAYHOOK_WORKER_METRICS_PORT` plus the process's
`--processes` index), started when the worker is ready and stopped at its shutdown.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from sessions.models import Kind
from sessions.states import State
from workers.lifecycle.moves import DeadLetter, Decision, Done, RetryLater
from workers.lifecycle.observer import LeaseEvent, Peer

log = logging.getLogger("payhook.metrics")

# Peer calls: a PSP or Shopify answers in milliseconds to seconds; past the timeouts
# (15 s and 10 s by default) a call has failed anyway.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Proposed to reported: seconds when all is well, hours while Shopify or the PSP is away.
REPORT_BUCKETS = (
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    14400.0,
    86400.0,
)


class WorkerMetrics:
    def __init__(self, connector: str) -> None:
        self.connector = connector
        self.registry = CollectorRegistry()
        r = self.registry
        self.settlements = Counter(
            "payhook_settlements",
            "PSP outcomes stored (approved, declined), and sessions that failed before one.",
            ["kind", "connector", "result"],
            registry=r,
        )
        self.reports = Counter(
            "payhook_reports",
            "Outcomes Shopify took: resolved, rejected, pending.",
            ["kind", "report"],
            registry=r,
        )
        self.retries = Counter(
            "payhook_retries",
            "Retries scheduled, by loop (psp, shopify) and the class of the failure.",
            ["loop", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "payhook_dead_letters",
            "Sessions that became dead letters (state failed).",
            ["kind"],
            registry=r,
        )
        self.psp_calls = Histogram(
            "payhook_psp_call_seconds",
            "One PSP step of a session (status look-up or operation) and what it answered.",
            ["connector", "kind", "result"],
            registry=r,
            buckets=CALL_BUCKETS,
        )
        self.shopify_calls = Histogram(
            "payhook_shopify_call_seconds",
            "One Shopify mutation and what became of it (accepted, refused, or the failure class).",
            ["kind", "result"],
            registry=r,
            buckets=CALL_BUCKETS,
        )
        self.report_delay = Histogram(
            "payhook_proposed_to_reported_seconds",
            "From the session's proposedAt to Shopify taking its outcome.",
            ["kind"],
            registry=r,
            buckets=REPORT_BUCKETS,
        )
        self.in_flight = Gauge(
            "payhook_sessions_in_flight", "Sessions this process is working on now.", registry=r
        )
        self.lease_renewals = Counter(
            "payhook_lease_renewals",
            "Lease renewals while working: kept, or failed (Redis did not answer).",
            ["result"],
            registry=r,
        )
        self.webhooks = Counter(
            "payhook_shopify_webhooks_processed",
            "Shopify webhook attempts stored, by topic and what came of them: done, retrying, "
            "failed (a dead letter).",
            ["topic", "result"],
            registry=r,
        )
        self.leases_lost = Counter(
            "payhook_leases_lost",
            "Runs that found their lease taken over by another worker and stopped.",
            registry=r,
        )

    def webhook_processed(self, topic: str, result: str) -> None:
        self.webhooks.labels(topic, result).inc()

    # RunObserver
    def run_started(self) -> None:
        self.in_flight.inc()

    def run_ended(self) -> None:
        self.in_flight.dec()

    def called(self, peer: Peer, kind: Kind, result: str, seconds: float) -> None:
        if peer == "psp":
            self.psp_calls.labels(self.connector, kind.value, result).observe(seconds)
        else:
            self.shopify_calls.labels(kind.value, result).observe(seconds)

    def decided(self, decision: Decision, cause: str | None) -> None:
        session = decision.session
        kind = session.kind.value
        step = decision.step
        event = decision.change.event.event
        if event == "psp_settled" and session.outcome is not None:
            self.settlements.labels(kind, self.connector, session.outcome.value).inc()
        elif isinstance(step, RetryLater):
            # A token wait is part of the PSP phase: the PSP is asked once it is over.
            loop = "psp" if event in ("psp_retry", "token_wait") else "shopify"
            self.retries.labels(loop, cause or "unknown").inc()
        elif isinstance(step, DeadLetter):
            self.dead_letters.labels(kind).inc()
            if session.outcome is None:
                self.settlements.labels(kind, self.connector, "failed").inc()
        elif isinstance(step, Done) and event == "reported" and session.report is not None:
            self.reports.labels(kind, session.report.value).inc()
            if step.state is State.REPORTED:
                waited = decision.change.event.at - session.proposed_at.timestamp()
                self.report_delay.labels(kind).observe(max(0.0, waited))

    def lease(self, event: LeaseEvent) -> None:
        if event == "lost":
            self.leases_lost.inc()
        else:
            self.lease_renewals.labels(event).inc()


class MetricsServer:
    """The process's metrics over HTTP, on a small thread of its own."""

    def __init__(self, metrics: WorkerMetrics, address: str, port: int) -> None:
        self._metrics = metrics
        self._address = address
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server, self._thread = start_http_server(
                self._port, addr=self._address, registry=self._metrics.registry
            )
        except OSError as exc:
            # Settling sessions matters more than being watched: the worker goes on, and
            # the missing target is what PayhookWorkerDown reports.
            log.error(
                "metrics not served",
                extra={"address": self._address, "port": self._port, "error": str(exc)},
            )
            return
        log.info("metrics served", extra={"address": self._address, "port": self._port})

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
