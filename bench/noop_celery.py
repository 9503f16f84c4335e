"""Celery's own cost per message: payhook's Celery app and worker options, no-op tasks.

    python -m bench.noop_celery        (started by `bench.drain`; reads PAYHOOK_* like payhook)

The app is payhook's own (`create_celery(settings)`: transport, acks_late, prefetch,
events), with one task whose body only waits `latency` seconds on a shared asyncio loop,
the model the payhook worker runs sessions in: Celery's threads pool, one event loop thread
per process, each pool thread blocking on `run_coroutine_threadsafe(...).result()`.
`publish` queues the tasks from the benchmark before this worker starts.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery import Celery

from config import Settings
from config.logging import configure_logging
from transport.celery_app import create_celery
from transport.messages import QUEUE

NOOP_TASK = "bench.noop"

T = TypeVar("T")


class LoopThread:
    """One asyncio event loop in a daemon thread, started by the first task that needs it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="bench-loop", daemon=True
                ).start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


def create_noop_app(settings: Settings) -> Celery:
    app = create_celery(settings)
    loop = LoopThread()

    @app.task(name=NOOP_TASK)
    def noop(latency: float) -> None:
        loop.run(asyncio.sleep(latency))

    return app


def publish(settings: Settings, count: int, latency: float) -> None:
    """Queue `count` no-op tasks that each wait `latency` seconds."""
    app = create_celery(settings)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(NOOP_TASK, args=(latency,), queue=QUEUE, producer=producer)


def worker_arguments(settings: Settings) -> list[str]:
    """The options `payhook worker` starts one Celery process with (ops/processes.py)."""
    arguments = [
        "worker",
        "--queues",
        QUEUE,
        "--pool",
        "threads",
        "--concurrency",
        str(settings.worker_concurrency),
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if settings.worker_task_events:
        arguments.append("--task-events")
    return arguments


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    code: object = create_noop_app(settings).start(worker_arguments(settings))
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
