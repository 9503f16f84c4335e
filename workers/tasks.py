"""What a `payhook worker` process runs: the session consumer on its event loop, and
Celery's own consumer for the sweeper's task.

Session messages are Celery task messages (`payhook.<kind>(session_id)`, rendered by the
intake), but no Celery task runs them: the session consumer (`workers.consumer`) takes them
from the queue in batches and runs each on the process's loop. Celery keeps the rest of the
worker: the sweep task on its own queue, Shopify's webhooks (`payhook.shopify_webhook`) on
theirs, heartbeats, remote control (with the command
`payhook_sessions`, which `payhook sessions in-flight` sends, for the sessions in flight) and
warm shutdown, which drains the consumer before any client closes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from celery.worker.control import inspect_command

from config import Settings
from config.tracing import NO_TRACER, Tracer
from transport.messages import SWEEP_QUEUE, SWEEP_TASK, WEBHOOK_TASK, CeleryHandoff
from workers.metrics import MetricsServer
from workers.runtime import RuntimeHolder
from workers.sweeper import sweep_as_configured
from workers.task_events import CeleryTaskEvents

log = logging.getLogger("payhook.tasks")


def register_tasks(app: Celery, settings: Settings, tracer: Tracer = NO_TRACER) -> RuntimeHolder:
    holder = RuntimeHolder(settings, CeleryHandoff(app, tracer), tracer)
    # The run bounds itself; this only guards against a loop that stopped answering.
    patience = settings.run_timeout_seconds + 30

    @app.task(name=SWEEP_TASK, ignore_result=True)
    def sweep_due() -> int:
        runtime = holder.get()
        sweeping = sweep_as_configured(
            runtime.store, settings, now=time.time(), webhooks=runtime.webhooks.hooks
        )
        queued = runtime.call(sweeping, patience)
        # Shops to tell Shopify about (workers.onboarding): sent on the loop, not waited for.
        runtime.onboard_due()
        return queued

    @app.task(name=WEBHOOK_TASK, ignore_result=True)
    def shopify_webhook(webhook_id: str) -> str:
        # Thin: the webhook's record in Redis holds its truth (workers.shop_webhooks); a
        # failure here leaves it due, and the sweeper queues it again.
        return repr(holder.get().process_webhook(webhook_id, patience))

    app.conf.beat_schedule = {
        "sweep-due-sessions": {
            "task": SWEEP_TASK,
            "schedule": settings.sweep_interval_seconds,
            "options": {"queue": SWEEP_QUEUE, "expires": settings.sweep_interval_seconds * 2},
        }
    }
    return holder


def manage_runtime(holder: RuntimeHolder, metrics: MetricsServer | None = None) -> None:
    """In a worker: build the runtime and start consuming sessions when the worker is ready
    (so a bad setting shows at once); on a warm shutdown stop taking messages at once, then
    drain the consumer and close every client. The metrics listener lives as long: scraped
    up to the last finished run."""

    def ready(sender: Any, **_: Any) -> None:
        # `sender` is Celery's consumer: its dispatcher says whether task events are on.
        events = CeleryTaskEvents(sender.app, sender.hostname, sender.event_dispatcher)
        holder.get().consume(events)
        if metrics is not None:
            metrics.start()

    def shutting_down(**_: Any) -> None:
        holder.stop_taking()

    def shutdown(**_: Any) -> None:
        holder.close()
        if metrics is not None:
            metrics.stop()

    @inspect_command()
    def payhook_sessions(state: Any, **_: Any) -> list[dict[str, Any]]:
        """The sessions this worker has in flight (`payhook sessions in-flight`)."""
        return holder.in_flight()

    worker_ready.connect(ready, weak=False)
    worker_shutting_down.connect(shutting_down, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
