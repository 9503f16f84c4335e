"""Celery tasks: thin adapters from a session id to a lifecycle run.

A task takes only the session id, runs the kind's lifecycle on the process's runtime, and
maps the answer onto Celery: a short retry becomes a countdown, a long one is left to the
sweeper (the due set already holds its time), anything else acknowledges the message.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, Task

from config import Settings
from sessions.models import Kind
from workers.celery_app import max_countdown
from workers.dispatch import SWEEP_TASK, Dispatcher, task_name
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.payment import PAYMENT
from workers.lifecycle.refund import REFUND
from workers.lifecycle.runner import KindLifecycle, RetryLater, run
from workers.lifecycle.void import VOID
from workers.runtime import RuntimeHolder
from workers.sweeper import sweep

LIFECYCLES: dict[Kind, KindLifecycle] = {
    Kind.PAYMENT: PAYMENT,
    Kind.CAPTURE: CAPTURE,
    Kind.REFUND: REFUND,
    Kind.VOID: VOID,
}
SWEEP_QUEUE = "payhook.sweep"


def register_tasks(app: Celery, settings: Settings) -> RuntimeHolder:
    holder = RuntimeHolder(settings)
    longest_countdown = max_countdown(settings)
    dispatcher = Dispatcher(app)

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
            step = runtime.run(run(session_id, runtime.services, lifecycle))
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
        return runtime.run(
            sweep(
                runtime.store,
                dispatcher.dispatch,
                now=time.time(),
                limit=settings.sweep_batch,
                hold_for=settings.lease_seconds,
            )
        )

    app.conf.beat_schedule = {
        "sweep-due-sessions": {
            "task": SWEEP_TASK,
            "schedule": settings.sweep_interval_seconds,
            "options": {"queue": SWEEP_QUEUE, "expires": settings.sweep_interval_seconds * 2},
        }
    }
    return holder
