"""Celery tasks: thin adapters from a session id to a lifecycle run on the process's loop.

A task takes only the session id, hands the kind's lifecycle to the process's event loop
(`workers.runtime`) and waits for it, then maps the answer onto Celery: a short retry becomes
a countdown, a long one is left to the sweeper (the due set already holds its time), anything
else acknowledges the message. A run that could not finish (Redis away, a timeout) also
leaves the session to the due set, which holds it from the moment it was claimed.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready, worker_shutdown
from redis.exceptions import RedisError

from config import Settings
from config.tracing import NO_TRACER, Tracer
from sessions.models import Kind
from transport.celery_app import max_countdown
from transport.messages import SWEEP_QUEUE, SWEEP_TASK, CeleryHandoff, task_name
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.decide import RetryLater
from workers.lifecycle.payment import PAYMENT
from workers.lifecycle.refund import REFUND
from workers.lifecycle.runner import KindLifecycle, run
from workers.lifecycle.void import VOID
from workers.metrics import MetricsServer
from workers.runtime import RuntimeHolder
from workers.sweeper import sweep_as_configured

LIFECYCLES: dict[Kind, KindLifecycle] = {
    Kind.PAYMENT: PAYMENT,
    Kind.CAPTURE: CAPTURE,
    Kind.REFUND: REFUND,
    Kind.VOID: VOID,
}

log = logging.getLogger("payhook.tasks")
UNFINISHED = (RedisError, OSError, TimeoutError, concurrent.futures.TimeoutError)
# W3C trace context headers, as `transport.messages.CeleryHandoff` writes them.
TRACE_HEADERS = ("traceparent", "tracestate")


def trace_parent(request: Any) -> dict[str, str] | None:
    """The trace context a task message carries: Celery puts each message header on
    `task.request`. None when the message has none (tracing off at intake, the sweeper)."""
    found = {name: getattr(request, name, None) for name in TRACE_HEADERS}
    headers = {name: value for name, value in found.items() if isinstance(value, str)}
    return headers or None


def register_tasks(app: Celery, settings: Settings, tracer: Tracer = NO_TRACER) -> RuntimeHolder:
    holder = RuntimeHolder(settings, CeleryHandoff(app, tracer), tracer)
    longest_countdown = max_countdown(settings)
    # The run bounds itself; this only guards against a loop that stopped answering.
    patience = settings.run_timeout_seconds + 30

    def register(kind: Kind, lifecycle: KindLifecycle) -> None:
        @app.task(
            name=task_name(kind),
            bind=True,
            max_retries=None,
            acks_late=True,
            reject_on_worker_lost=True,
        )
        def run_session(self: Task[Any, Any], session_id: str) -> str:
            runtime = holder.get()
            parent = trace_parent(self.request) if tracer.enabled else None
            try:
                step = runtime.call(
                    run(session_id, runtime.services, lifecycle, trace_parent=parent), patience
                )
            except UNFINISHED as exc:
                log.warning(
                    "run not finished; the due set brings the session back",
                    extra={"session_id": session_id, "kind": kind.value, "error": repr(exc)},
                )
                return "due later"
            if isinstance(step, RetryLater):
                if step.delay <= longest_countdown:
                    raise self.retry(countdown=step.delay)
                return "due later"
            return type(step).__name__

    for kind, lifecycle in LIFECYCLES.items():
        register(kind, lifecycle)

    @app.task(name=SWEEP_TASK, ignore_result=True)
    def sweep_due() -> int:
        runtime = holder.get()
        return runtime.call(sweep_as_configured(runtime.store, settings, now=time.time()), patience)

    app.conf.beat_schedule = {
        "sweep-due-sessions": {
            "task": SWEEP_TASK,
            "schedule": settings.sweep_interval_seconds,
            "options": {"queue": SWEEP_QUEUE, "expires": settings.sweep_interval_seconds * 2},
        }
    }
    return holder


def manage_runtime(holder: RuntimeHolder, metrics: MetricsServer | None = None) -> None:
    """In a worker: build the runtime when the worker is ready (so a bad setting shows at
    once) and close every connection at shutdown, after running tasks have finished. The
    metrics listener lives as long: scraped up to the last finished run."""

    def ready(**_: Any) -> None:
        holder.get()
        if metrics is not None:
            metrics.start()

    def shutdown(**_: Any) -> None:
        holder.close()
        if metrics is not None:
            metrics.stop()

    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
