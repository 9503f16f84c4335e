"""The session consumer: takes the session queue's messages in batches and runs each session
on the worker's event loop.

One consumer per worker process, on the loop that owns every client (`workers.runtime`).
It keeps up to `in_flight` runs going: whenever runs end, one script takes as many messages
as there are free slots (`transport.session_queue`), and one round trip acknowledges every
run that ended since the last. No thread, no Celery request object and no Redis transaction
stands between a message and its run, which is what Celery's own consumer cost per session
(docs/workers.md compares the two).

What a message is worth does not change: Redis and the due set hold the truth, the claim
fences every run, so a message lost, duplicated or restored after a crash settles nothing
twice and loses nothing. A run that asks to be retried soon waits here, its message still
unacknowledged and its slot given to another session; a longer wait is left to the due set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from errors import BadMessage
from transport.session_queue import Delivery, SessionQueue, decode
from workers.lifecycle.moves import RetryLater, Step
from workers.lifecycle.ports import KindLifecycle, Services
from workers.lifecycle.runner import run
from workers.task_events import NoEvents, TaskEvents

log = logging.getLogger("payhook.consumer")

# The most messages one take asks for, so one reply stays small.
TAKE_AT_MOST = 100
# How long an idle consumer blocks for the next message before looking up again (less
# when the Redis timeout is shorter: the blocking call must answer within it).
IDLE_WAIT_SECONDS = 1.0
# How long an ack waits for others to share its round trip.
ACK_LINGER_SECONDS = 0.005
# Backoff while Redis cannot be reached.
UNREACHABLE_PAUSE_SECONDS = 0.5
UNFINISHED = (RedisError, OSError, TimeoutError)
# Sessions one process keeps waiting for a retry due within `longest_wait`; past it a retry
# is left to the due set (the sweeper queues it again when it is due).
WAITING_AT_MOST = 10_000


@dataclass
class Running:
    """One taken message and what its session is doing (`payhook sessions in-flight`)."""

    delivery: Delivery
    since: float
    waiting_until: float | None = None
    runs: int = 0


class SessionConsumer:
    def __init__(
        self,
        queue: SessionQueue,
        services: Services,
        lifecycles: Mapping[str, KindLifecycle],
        *,
        in_flight: int,
        longest_wait: float,
        idle_wait: float = IDLE_WAIT_SECONDS,
        events: TaskEvents | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._services = services
        self._lifecycles = lifecycles
        self._limit = in_flight
        # A retry sooner than this waits here; a later one is left to the due set.
        self._longest_wait = longest_wait
        self._idle_wait = idle_wait
        self._events = events or NoEvents()
        # At most this many sessions wait for a retry here (a few kilobytes each), so an
        # outage cannot make the consumer hold every message of the queue.
        self._waiting_limit = WAITING_AT_MOST
        self._clock = clock
        self._active = 0
        self._room = asyncio.Event()
        self._room.set()
        self._taking = True
        self._acks: list[str] = []
        self._acks_due = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], Running] = {}
        self._serving: asyncio.Task[None] | None = None
        self._acking: asyncio.Task[None] | None = None

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        self._serving = asyncio.create_task(self._serve(), name="payhook-consumer")
        self._acking = asyncio.create_task(self._ack_forever(), name="payhook-acks")

    def stop_taking(self) -> None:
        """Take no further message (a warm shutdown has begun)."""
        self._taking = False
        self._room.set()

    async def drain(self, seconds: float) -> None:
        """Stop taking, let running runs end (up to `seconds`), acknowledge them and the
        sessions waiting for a retry (the due set brings those back at their time), and put
        every message no run finished back on the queue for another worker."""
        self.stop_taking()
        # The loops end on their flags, not by cancellation alone: a cancellation that
        # reaches redis-py inside a command can come out as a Redis error, which the loops
        # take in their stride and go on.
        await _ended(self._serving, self._idle_wait + UNREACHABLE_PAUSE_SECONDS + 5)
        waiting = [task for task, held in self._tasks.items() if held.waiting_until is not None]
        for task in waiting:
            # The due set holds the time of its retry: the message has nothing more to say.
            self._ack(self._tasks[task].delivery.tag)
            task.cancel()
        running = [task for task in self._tasks if task not in waiting]
        if running:
            await asyncio.wait(running, timeout=seconds)
        unfinished = list(self._tasks.items())
        for task, _ in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait([task for task, _ in unfinished], timeout=5)
        self._acks_due.set()
        await _ended(self._acking, 5)
        await self._flush_acks()
        back = await self._queue.give_back([held.delivery for _, held in unfinished])
        log.info("consumer drained", extra={"unfinished": len(unfinished), "given_back": back})

    def running(self) -> list[Running]:
        return list(self._tasks.values())

    # -- taking ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        # Whether the last look found the queue empty: then block for the next message
        # rather than take (an empty take is a round trip for nothing).
        drained = False
        while self._taking:
            free = self._limit - self._active
            if free <= 0 or len(self._tasks) - self._active >= self._waiting_limit:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                if drained:
                    taken, left = await self._queue.wait(self._idle_wait)
                    drained = left == 0
                else:
                    asked = min(free, TAKE_AT_MOST)
                    taken = await self._queue.take(asked)
                    drained = len(taken) < asked
            except UNFINISHED as exc:
                log.warning("cannot take from the session queue", extra={"error": repr(exc)})
                await asyncio.sleep(UNREACHABLE_PAUSE_SECONDS)
                continue
            for raw in taken:
                self._start(raw)

    def _start(self, raw: bytes) -> None:
        try:
            delivery = decode(raw)
            lifecycle = self._lifecycles.get(delivery.task)
            if lifecycle is None:
                raise BadMessage(f"no session task named {delivery.task!r}", delivery.tag)
        except BadMessage as exc:
            # Nothing could run it, and nothing would ever take it off the queue.
            log.error("dropped a message from the session queue", extra={"error": str(exc)})
            self._ack(exc.tag)
            return
        self._active += 1
        held = Running(delivery, self._clock())
        task = asyncio.create_task(self._work(held, lifecycle))
        self._tasks[task] = held
        task.add_done_callback(self._tasks.pop)

    # -- working ---------------------------------------------------------------------------

    async def _work(self, held: Running, lifecycle: KindLifecycle) -> None:
        delivery = held.delivery
        slot = True
        try:
            if delivery.eta is not None and delivery.eta > self._clock():
                # A message with a Celery countdown (queued by Celery's own retry).
                slot = self._free_slot()
                await self._wait_until(held, delivery.eta)
                slot = await self._take_slot()
            began = time.perf_counter()
            self._events.started(delivery)
            while True:
                held.runs += 1
                step = await self._run(delivery, lifecycle)
                if not self._waits_here(step):
                    break
                assert isinstance(step, RetryLater)
                slot = self._free_slot()
                await self._wait_until(held, self._clock() + step.delay)
                slot = await self._take_slot()
            self._ack(delivery.tag)
            self._events.ended(delivery, repr(step), time.perf_counter() - began)
        finally:
            if slot:
                self._free_slot()

    async def _run(self, delivery: Delivery, lifecycle: KindLifecycle) -> Step | None:
        try:
            return await run(
                delivery.session_id,
                self._services,
                lifecycle,
                trace_parent=delivery.trace_parent,
            )
        except UNFINISHED as exc:
            log.warning(
                "run not finished; the due set brings the session back",
                extra={"session_id": delivery.session_id, "error": repr(exc)},
            )
        except Exception:
            # The session's lease lapses and the due set brings it back.
            log.exception("run failed", extra={"session_id": delivery.session_id})
        return None

    def _waits_here(self, step: Step | None) -> bool:
        return (
            isinstance(step, RetryLater)
            and step.delay <= self._longest_wait
            and self._taking
            and len(self._tasks) - self._active < self._waiting_limit
        )

    async def _wait_until(self, held: Running, when: float) -> None:
        held.waiting_until = when
        try:
            await asyncio.sleep(max(0.0, when - self._clock()))
        finally:
            held.waiting_until = None

    def _free_slot(self) -> bool:
        self._active -= 1
        self._room.set()
        return False

    async def _take_slot(self) -> bool:
        while self._active >= self._limit:
            self._room.clear()
            await self._room.wait()
        self._active += 1
        return True

    # -- acknowledging ---------------------------------------------------------------------

    def _ack(self, tag: str | None) -> None:
        if tag is not None:
            self._acks.append(tag)
            self._acks_due.set()

    async def _ack_forever(self) -> None:
        while self._taking or self._tasks:
            await self._acks_due.wait()
            if self._taking and len(self._acks) < TAKE_AT_MOST:
                # A moment's wait gathers the acks of the runs ending meanwhile into the
                # same round trip; a message acked later only stays recorded a little longer.
                await asyncio.sleep(ACK_LINGER_SECONDS)
            self._acks_due.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        tags, self._acks = self._acks, []
        try:
            await self._queue.ack(tags)
        except UNFINISHED as exc:
            # Still recorded as delivered: kombu's restore puts them back after the
            # visibility timeout, and their finished sessions refuse the claim.
            log.warning("acks not written", extra={"count": len(tags), "error": repr(exc)})


async def _ended(task: asyncio.Task[None] | None, seconds: float) -> None:
    """Wait for `task` to end by itself, then cancel it if it has not."""
    if task is None:
        return
    await asyncio.wait({task}, timeout=seconds)
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1)
