"""Celery task events for the sessions the consumer runs, so Flower shows them.

The session consumer runs Celery task messages without Celery's request machinery, so it
sends the events Celery would: `task-started` when a session's run begins and
`task-succeeded` when its message is acknowledged, one pair per session, under the message's
task id, name and arguments. They are sent only while the worker's task events are on
(`PAYHOOK_WORKER_TASK_EVENTS`, or Flower switching them on over remote control, which
changes the worker's own dispatcher: it is read on every send). Publishing is a Redis
`PUBLISH` on the worker's loop, a connection of its own; when events are off nothing is paid.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from celery import Celery

from transport.session_queue import Delivery

log = logging.getLogger("payhook.events")


class TaskEvents(Protocol):
    def started(self, delivery: Delivery) -> None: ...

    def ended(self, delivery: Delivery, result: str, runtime: float) -> None: ...


class NoEvents:
    def started(self, delivery: Delivery) -> None:
        return None

    def ended(self, delivery: Delivery, result: str, runtime: float) -> None:
        return None


class CeleryTaskEvents:
    """Sends through a dispatcher of its own, made on first use on the thread that sends."""

    def __init__(self, app: Celery, hostname: str, switch: Any) -> None:
        self._app = app
        self._hostname = hostname
        # The worker consumer's dispatcher: its `enabled` and `groups` say whether task
        # events are on now.
        self._switch = switch
        self._dispatcher: Any = None

    def _on(self) -> bool:
        switch = self._switch
        if switch is None or not switch.enabled:
            return False
        groups = switch.groups
        return not groups or "task" in groups

    def _send(self, kind: str, **fields: Any) -> None:
        try:
            if self._dispatcher is None:
                self._dispatcher = self._app.events.Dispatcher(
                    connection=self._app.connection_for_write(), hostname=self._hostname
                )
            self._dispatcher.send(kind, **fields)
        except Exception as exc:  # an event must never cost a session its run
            log.warning("task event not sent", extra={"event": kind, "error": repr(exc)})

    def started(self, delivery: Delivery) -> None:
        if self._on():
            self._send(
                "task-started",
                uuid=delivery.task_id,
                name=delivery.task,
                args=delivery.argsrepr,
                kwargs="{}",
                timestamp=time.time(),
            )

    def ended(self, delivery: Delivery, result: str, runtime: float) -> None:
        if self._on():
            self._send(
                "task-succeeded",
                uuid=delivery.task_id,
                name=delivery.task,
                result=result,
                runtime=runtime,
                timestamp=time.time(),
            )
