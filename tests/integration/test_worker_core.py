"""The worker core under stress: hundreds of sessions in flight in one process, a warm
shutdown in the middle of them, and a PSP call that outlives several leases.

Real processes throughout (`payhook worker`, `payhook beat`, the web app, the sandbox Shopify,
a PSP fake over HTTP, redis-server); the fixtures are the fault tests' (own database,
flushed before each test, every process killed after it).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from config import Settings
from sandbox.client import SandboxShopifyClient
from sandbox.psp import connector_environment, start_psp_fake
from sandbox.shopify_side import SentSession
from sessions.keys import PREFIX
from sessions.models import Kind, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.integration import faults_support
from tests.integration.conftest import wait_final
from tests.integration.faults_support import (
    FINAL,
    RESOLVE,
    Audit,
    Fleet,
    audit,
    payhook,
    send,
    send_paced,
    wait_all_final,
)
from transport.celery_app import create_celery
from transport.messages import CeleryHandoff
from transport.session_queue import UNACKED
from workers.connectors.simulator import SimulatorConnector

pytestmark = pytest.mark.integration

# The fault modules' fixtures (tests/integration/faults_support.py).
settings = faults_support.settings
fresh_database = faults_support.fresh_database
fleet = faults_support.fleet

# Closing the runtime and Celery's own teardown, after the last run ended.
SHUTDOWN_TEARDOWN_SECONDS = 10


async def leases_held(redis: Redis) -> int:
    return len([key async for key in redis.scan_iter(match=f"{PREFIX}lease:*", count=1000)])


async def queued_behind_slow_shopify(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    count: int,
    *,
    delay: float,
) -> list[SentSession]:
    """`count` approvable captures accepted, with Shopify answering resolves `delay` late."""
    await sandbox.add_fault(
        {"kind": "delay", "seconds": delay, "for_seconds": 120, "mutation": RESOLVE}
    )

    async def one(index: int) -> SentSession:
        return await send(http, app_url, sandbox, f"{10 + index % 80}.{index % 50:02d}")

    sent = await send_paced(count, per_second=1000, concurrency=32, make=one)
    assert [s.status for s in sent] == [201] * count
    return sent


async def recovered(
    fleet: Fleet,
    env: dict[str, str],
    sandbox: SandboxShopifyClient,
    redis: Redis,
    store: SessionStore,
    psp: SimulatorConnector,
    sent: list[SentSession],
    *,
    patience: float,
) -> tuple[dict[str, str | None], Audit]:
    """Shopify well again, a fresh worker and beat: every session's final state, and the
    audit of what the PSP and Shopify saw."""
    await sandbox.clear_faults()
    await asyncio.gather(asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env))
    states = await wait_all_final(redis, [s.id for s in sent], patience=patience)
    return states, await audit(sent, store=store, psp=psp, sandbox=sandbox)


async def test_sigterm_with_hundreds_in_flight_loses_nothing_and_settles_nothing_twice(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
    redis: Redis,
) -> None:
    count = 600
    env = fleet.env(PAYHOOK_SHOPIFY_TIMEOUT_SECONDS="8")
    # Shopify answers in 6 s: every session the worker took is in flight for that long. In
    # flight = intake rate x delay, so a CPU-starved host (25 sessions/s) still reaches 150.
    sent = await queued_behind_slow_shopify(http, app_url, sandbox, count, delay=6.0)
    worker = fleet.worker(env)
    deadline = time.monotonic() + 20
    in_flight = 0
    while time.monotonic() < deadline and in_flight < 150:
        in_flight = await leases_held(redis)
        await asyncio.sleep(0.05)
    # What an operator sees meanwhile: the worker lists the sessions it is running.
    code, listed = await payhook(env, "sessions", "in-flight", "--json")
    assert code == 0, listed
    [running] = json.loads(listed).values()
    assert len(running) >= 150, listed[:2000]
    assert {held["session_id"] for held in running} <= {s.id for s in sent}

    began = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(worker.process.wait, 60)
    shutdown = time.monotonic() - began
    left_held = await leases_held(redis)
    states = await wait_all_final(redis, [s.id for s in sent], patience=0.1)
    finished_before_exit = sum(state in FINAL for state in states.values())

    states, result = await recovered(fleet, env, sandbox, redis, store, psp, sent, patience=60)
    figures = (
        f"FIGURES: sigterm sessions={count} in_flight_at_sigterm={in_flight} "
        f"shutdown={shutdown:.1f}s exit={code} finished_before_exit={finished_before_exit} "
        f"leases_left={left_held} duplicates={result.duplicates} "
        f"repeated_reports={result.repeated_reports}"
    )
    print(figures)
    assert in_flight >= 150, figures
    assert code == 0, figures
    # Every running session finishes; none can take longer than one run's bound
    # (Settings.run_timeout_seconds: 4 x 1 s PSP + 8 s Shopify + 10 s here), plus the
    # teardown allowance: the grace a supervisor must give a worker (docs/workers.md).
    # Alone this takes 6-7 s; on a loaded CI host the in-process sandbox slows every run.
    assert shutdown < 22 + SHUTDOWN_TEARDOWN_SECONDS, figures
    assert left_held == 0, figures
    assert finished_before_exit >= in_flight, figures
    stuck = [i for i, state in states.items() if state not in FINAL]
    assert not stuck, f"{figures}\n{len(stuck)} stuck: {stuck[:5]}\n{fleet.health()}"
    assert not result.problems, f"{figures}\n" + "\n".join(result.problems[:20])
    assert result.duplicates == 0, figures


async def test_a_worker_sigkilled_in_the_middle_of_a_batch_loses_nothing_and_charges_none_twice(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    psp: SimulatorConnector,
    redis: Redis,
) -> None:
    count = 400
    env = fleet.env()
    # Shopify answers in 3 s, so the batches the worker takes are in flight, captured at the
    # PSP and not yet reported, when it dies.
    sent = await queued_behind_slow_shopify(http, app_url, sandbox, count, delay=3.0)
    worker = fleet.worker(env)
    deadline = time.monotonic() + 20
    captured = 0
    while time.monotonic() < deadline and captured < 150:
        captured = (await psp.totals()).get("capture:charges", 0)
        await asyncio.sleep(0.05)
    in_flight, taken = await leases_held(redis), await redis.hlen(UNACKED)
    worker.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(worker.process.wait, 10)

    states, result = await recovered(fleet, env, sandbox, redis, store, psp, sent, patience=90)
    figures = (
        f"FIGURES: sigkill mid-batch sessions={count} in_flight_at_kill={in_flight} "
        f"messages_taken_at_kill={taken} captured_at_kill={captured} "
        f"duplicates={result.duplicates} repeated_reports={result.repeated_reports} "
        f"redelivered={result.redelivered}"
    )
    print(figures)
    assert captured >= 150, figures
    assert taken >= in_flight >= captured, figures
    stuck = [i for i, state in states.items() if state not in FINAL]
    assert not stuck, f"{figures}\n{len(stuck)} stuck: {stuck[:5]}\n{fleet.health()}"
    assert not result.problems, f"{figures}\n" + "\n".join(result.problems[:20])
    assert result.duplicates == 0, figures


async def test_a_psp_call_hanging_past_several_leases_captures_once_at_a_provider_without_keys(
    fleet: Fleet,
    settings: Settings,
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
) -> None:
    fake = await start_psp_fake("aplazame", "127.0.0.1", 0)
    try:
        env = fleet.env(
            **connector_environment("aplazame", fake.url, "sk_test"),
            PAYHOOK_LEASE_SECONDS="1.5",
            PAYHOOK_REDIS_TIMEOUT_SECONDS="0.4",
            # The call may take as long as it likes: only the lease must hold meanwhile.
            PAYHOOK_PSP_TIMEOUT_SECONDS="30",
        )
        await asyncio.gather(
            asyncio.to_thread(fleet.worker, env, "w0"),
            asyncio.to_thread(fleet.worker, env, "w1"),
            asyncio.to_thread(fleet.beat, env),
        )
        hang = {"kind": "delay", "seconds": 6, "apply": False, "operation": "capture"}
        async with http.post(f"{fake.url}/_sandbox/faults", json=hang) as answer:
            assert answer.status == 201
        sent = await send(http, app_url, sandbox, "25.00")
        assert sent.status == 201
        # While the capture hangs (four leases long), the session keeps being delivered.
        handoff = CeleryHandoff(create_celery(settings))
        for _ in range(10):
            await asyncio.sleep(0.5)
            envelope = handoff.envelope(Kind.CAPTURE, sent.id)
            await redis.lpush(envelope.queue, envelope.body)
        session = await wait_final(store, sent.id, patience=40)
        async with http.get(f"{fake.url}/_sandbox/calls") as answer:
            calls: list[dict[str, Any]] = (await answer.json())["calls"]
    finally:
        await fake.close()
    captures = [c for c in calls if c["operation"] == "capture" and c["method"] == "POST"]
    figures = (
        f"FIGURES: hanging psp lease=1.5s hang=6s deliveries={session.deliveries} "
        f"capture_posts={len(captures)} applied={sum(c['applied'] for c in captures)}"
    )
    print(figures)
    assert (session.state, session.report) == (State.REPORTED, Report.RESOLVED), figures
    assert [c["applied"] for c in captures] == [True], figures
    applied = [c for c in await sandbox.calls(gid=sent.gid) if c["applied"]]
    assert [c["mutation"] for c in applied] == [RESOLVE], figures
