"""Handing sessions to the workers: one Celery task per session kind, named here once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from sessions.models import Kind

QUEUE = "payhook"

TASK_NAMES: dict[Kind, str] = {Kind.CAPTURE: "payhook.capture"}
SWEEP_TASK = "payhook.sweep"


def task_name(kind: Kind) -> str:
    return TASK_NAMES[kind]


class Dispatcher:
    """Publishes task messages from asyncio code.

    Celery's publisher is blocking, so it runs on one dedicated thread: the event loop never
    waits on the broker socket, and publishes stay ordered and off any shared connection.
    """

    def __init__(self, celery: Celery) -> None:
        self._celery = celery
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payhook-dispatch")

    def dispatch_now(self, kind: Kind, session_id: str) -> None:
        self._celery.send_task(task_name(kind), args=[session_id], queue=QUEUE)

    async def dispatch(self, kind: Kind, session_id: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.dispatch_now, kind, session_id)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
