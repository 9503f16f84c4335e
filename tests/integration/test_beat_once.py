"""Beat, once: two `payhook beat` processes for 24 seconds send the sweeper's schedule once per
interval between them, and the standby takes over when the holder is SIGKILLed. Two sweeps
that do run at once queue every due session once."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis
from sessions.models import Kind
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from tests.integration.faults_support import kill_group
from tests.integration.fleet_support import Processes
from transport.beat import lock_seconds
from transport.celery_app import create_celery
from transport.messages import QUEUE, SWEEP_QUEUE, CeleryHandoff
from workers.sweeper import sweep

pytestmark = pytest.mark.integration

DB = 5
INTERVAL = 1.0
RUN_SECONDS = 24.0
KILL_AT_SECONDS = 12.0


@pytest.fixture
def fresh(redis_server: LocalRedis) -> str:
    url = f"redis://127.0.0.1:{redis_server.port}/{DB}"
    client = SyncRedis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop_all()


def sent_at(raw: bytes) -> float:
    """When beat sent a sweep message: its expiry is the send time plus two intervals."""
    headers = json.loads(raw)["headers"]
    return datetime.fromisoformat(headers["expires"]).timestamp() - 2 * INTERVAL


async def test_two_beats_send_each_sweep_once_and_the_standby_takes_over(
    fresh: str, processes: Processes
) -> None:
    env = child_environment(
        {
            "PAYHOOK_REDIS_URL": fresh,
            "PAYHOOK_SWEEP_INTERVAL_SECONDS": str(INTERVAL),
            "PAYHOOK_REDIS_TIMEOUT_SECONDS": "1",
            "PAYHOOK_LEASE_SECONDS": "5",
            "PAYHOOK_LOG_LEVEL": "INFO",
        }
    )
    beats = await asyncio.gather(
        *(asyncio.to_thread(processes.beat, env, f"beat{i}") for i in range(2))
    )
    began = time.time()
    await asyncio.sleep(KILL_AT_SECONDS)
    holders = [b for b in beats if "beat lock taken" in b.log.read_text(errors="replace")]
    assert len(holders) == 1, [b.log.read_text()[-2000:] for b in beats]
    kill_group(holders[0])
    killed = time.time()
    await asyncio.sleep(RUN_SECONDS - KILL_AT_SECONDS)
    ended = time.time()

    client = SyncRedis.from_url(fresh)
    times = sorted(sent_at(raw) for raw in client.lrange(SWEEP_QUEUE, 0, -1))
    client.close()
    standby = next(b for b in beats if b is not holders[0])
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    takeover = max(gaps) if gaps else float("inf")
    handover = lock_seconds(Settings(sweep_interval_seconds=INTERVAL, redis_timeout_seconds=1))
    figures = (
        f"FIGURES: two beats {ended - began:.0f}s sweeps={len(times)} "
        f"closest={min(gaps):.2f}s longest_gap={takeover:.2f}s lock={handover:g}s"
    )
    print(figures)
    assert "beat lock taken" in standby.log.read_text(errors="replace"), figures
    # Never two sends of one interval: a second beat sending would halve the spacing.
    assert min(gaps) > 0.5 * INTERVAL, figures
    # One per interval, less the takeover once the holder died (the lock had to lapse).
    assert len(times) <= (ended - began) / INTERVAL + 2, figures
    assert len(times) >= (ended - began - handover - 2) / INTERVAL * 0.9, figures
    assert takeover <= handover + 2 * INTERVAL, figures
    assert any(t > killed + 1 for t in times), figures


@pytest.fixture
async def clients(fresh: str) -> AsyncIterator[tuple[Redis, Redis]]:
    first, second = Redis.from_url(fresh), Redis.from_url(fresh)
    yield first, second
    await first.aclose()
    await second.aclose()


async def test_two_sweeps_at_once_queue_every_due_session_once(
    fresh: str, clients: tuple[Redis, Redis]
) -> None:
    handoff = CeleryHandoff(create_celery(Settings(redis_url=fresh)))
    stores = [SessionStore(client, handoff) for client in clients]
    sessions = [make_session(kind=Kind.CAPTURE) for _ in range(300)]
    for session in sessions:
        await stores[0].create(session, received_event(), due_at=0, queue=False)
    now = time.time()
    queued = await asyncio.gather(
        *(sweep(store, now=now, limit=500, hold_for=30, prune_seconds=1) for store in stores)
    )
    assert sum(queued) == len(sessions)
    messages = await clients[0].lrange(QUEUE, 0, -1)
    ids = [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in messages]
    assert sorted(ids) == sorted(s.id for s in sessions)
    # Held a lease ahead: the next sweeps leave them to the workers.
    assert await sweep(stores[1], now=now + 1, limit=500, hold_for=30, prune_seconds=1) == 0
