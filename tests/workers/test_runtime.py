"""The worker process's runtime and its Celery tasks, driven directly: one runtime however many
threads ask for it first, a call that outlives its patience is cancelled on the loop, a close
that can be repeated, and the sweep task queueing what is due, as Celery's pool would call
it (a plain call of the registered task, no eager mode)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator

import pytest
from redis import Redis as SyncRedis

from config import Settings
from ops.redis_server import LocalRedis
from sessions.models import Kind
from tests.factories import make_session, received_event
from transport.celery_app import create_celery
from transport.messages import QUEUE, SWEEP_TASK, CeleryHandoff
from workers.runtime import RuntimeHolder
from workers.tasks import register_tasks

DB = 12


@pytest.fixture
def settings(redis_server: LocalRedis) -> Iterator[Settings]:
    url = f"redis://127.0.0.1:{redis_server.port}/{DB}"
    client = SyncRedis.from_url(url)
    client.flushdb()
    yield Settings(redis_url=url, shopify_access_token="shpat_runtime")
    client.flushdb()
    client.close()


@pytest.fixture
def holder(settings: Settings) -> Iterator[RuntimeHolder]:
    built = RuntimeHolder(settings, CeleryHandoff(create_celery(settings)))
    yield built
    built.close()


def test_threads_asking_at_once_share_one_runtime(holder: RuntimeHolder) -> None:
    barrier = threading.Barrier(4)

    def ask() -> int:
        barrier.wait()
        return id(holder.get())

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        built = set(pool.map(lambda _: ask(), range(4)))
    assert len(built) == 1


def test_a_call_past_its_patience_is_cancelled_on_the_loop(holder: RuntimeHolder) -> None:
    runtime = holder.get()
    cancelled = threading.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(concurrent.futures.TimeoutError):
        runtime.call(hangs(), timeout=0.2)
    assert cancelled.wait(5)
    # The loop goes on serving the next call.
    assert runtime.call(asyncio.sleep(0, result="still here"), timeout=5) == "still here"


def test_close_stops_the_loop_and_can_be_repeated(holder: RuntimeHolder) -> None:
    runtime = holder.get()
    holder.close()
    assert runtime.loop.is_closed()
    holder.close()
    runtime.close()
    # Asked again, the holder builds a fresh runtime rather than handing out a closed one.
    again = holder.get()
    assert again is not runtime
    assert not again.loop.is_closed()


def test_the_sweep_task_queues_each_due_session_once(settings: Settings) -> None:
    app = create_celery(settings)
    holder = register_tasks(app, settings)
    try:
        runtime = holder.get()
        sessions = [make_session(kind=Kind.CAPTURE) for _ in range(3)]
        for session in sessions:
            created = runtime.store.create(session, received_event(), due_at=0, queue=False)
            runtime.call(created, timeout=10)
        sweep = app.tasks[SWEEP_TASK]
        assert sweep() == len(sessions)
        # Held a lease ahead in the due set: the next sweep leaves them to the workers.
        assert sweep() == 0
    finally:
        holder.close()
    client = SyncRedis.from_url(settings.redis_url)
    try:
        queued = client.lrange(QUEUE, 0, -1)
    finally:
        client.close()
    assert len(queued) == len(sessions)
    assert all(session.id.encode() in b"".join(queued) for session in sessions)
