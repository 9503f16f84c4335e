"""The Celery application: transport only, configured so a message is never silently lost.

Redis holds the truth; Celery carries session ids. `acks_late` + `reject_on_worker_lost`
keep a message until its task finished; a worker reserves at most `worker_concurrency x
worker_prefetch_multiplier` messages, each waiting at most a few run times, far below the
visibility timeout, which is set explicitly so that every countdown we ask for stays well
below it too. A dying worker's reserved messages come back after the visibility timeout, and
their sessions sooner through the due set.
"""

from __future__ import annotations

from celery import Celery

from config import Settings
from transport.broker import SENTINEL_TRANSPORT, TRANSPORT
from transport.messages import QUEUE


def create_celery(settings: Settings) -> Celery:
    app = Celery("payhook", broker=settings.broker, set_as_current=False)
    transport: dict[str, object] = {"visibility_timeout": settings.visibility_timeout_seconds}
    if settings.broker.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = TRANSPORT
    elif settings.broker.startswith("sentinel://"):
        app.conf.broker_transport = SENTINEL_TRANSPORT
        timeouts = {
            "socket_timeout": settings.redis_timeout_seconds,
            "socket_connect_timeout": settings.redis_timeout_seconds,
        }
        transport.update(master_name=settings.redis_sentinel_master, sentinel_kwargs=timeouts)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        task_default_queue=QUEUE,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        visibility_timeout=settings.visibility_timeout_seconds,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=settings.worker_task_events,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


def max_countdown(settings: Settings) -> float:
    """The longest countdown handed to Celery; longer waits belong to the due set."""
    return settings.visibility_timeout_seconds / 10
