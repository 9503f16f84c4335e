"""Failover: the session Redis's primary is SIGKILLed while two web and two worker processes
carry 1,000 capture sessions. The three sentinels promote the replica; every process finds
it through them; because each `201` and each report to Shopify waited for the replica
(`PAYHOOK_REDIS_MIN_REPLICAS=1`), no session answered 201 is lost and none is settled twice.

Everything is real: `payhook serve`, `payhook worker` and `payhook beat` as subprocesses
given only the sentinels' addresses, redis-server and three sentinels on 127.0.0.1, the
sandbox Shopify over HTTP. The simulator PSP keeps its books in the same Redis; what it
charged before a report reached the replica with it (the report waits for that), so its
count of charges per session survives the failover as Shopify's view does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import send_capture_session
from sessions.connect import tool_client
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.faults_support import (
    FINAL,
    REJECT,
    RESOLVE,
    SHOP,
    send_paced,
    wait_all_final,
)
from tests.integration.fleet_support import (
    MASTER,
    Processes,
    ReplicatedRedis,
    fleet_environment,
)
from workers.connectors.simulator import SimulatorConnector

pytestmark = pytest.mark.integration

SESSIONS = 1000
PER_SECOND = 50.0
KILL_AFTER_SECONDS = 6.0
# Shopify keeps retrying an app that answers 5xx; this ladder (15 s) spans a failover.
SHOPIFY_RETRIES = (0.2, 0.5, 1.0, 2.0, 3.0, 4.0, 4.0)


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[ReplicatedRedis]:
    redis = ReplicatedRedis(tmp_path / "redis")
    try:
        yield redis.start()
    finally:
        redis.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
async def store_client(replicated: ReplicatedRedis) -> AsyncIterator[Redis]:
    """The test's own view of the store: through the sentinels, like every payhook process."""
    client = tool_client(
        Settings(redis_sentinels=replicated.sentinel_list, redis_sentinel_master=MASTER)
    )
    yield client
    await client.aclose()


@dataclass(frozen=True)
class Acknowledged:
    id: str
    gid: str
    amount: str
    status: int
    at: float


def amount_of(index: int) -> str:
    """Nine in ten approved; one in ten declined by the PSP (minor units ending in 51)."""
    cents = 51 if index % 10 == 0 else (index * 7) % 50
    return f"{10 + index % 90}.{cents:02d}"


async def test_a_sigkilled_primary_fails_over_and_no_acknowledged_session_is_lost(
    replicated: ReplicatedRedis,
    processes: Processes,
    shopify_sandbox: RunningShopifySandbox,
    http: aiohttp.ClientSession,
    sandbox: SandboxShopifyClient,
    store_client: Redis,
    tmp_path: Path,
) -> None:
    env = fleet_environment(replicated, shopify_sandbox, tmp_path)
    webs = await asyncio.gather(
        *(asyncio.to_thread(processes.web, env, f"web{i}") for i in range(2))
    )
    await asyncio.gather(
        *(asyncio.to_thread(processes.worker, env, f"worker{i}") for i in range(2)),
        asyncio.to_thread(processes.beat, env),
    )

    async def one(index: int) -> Acknowledged:
        amount = amount_of(index)
        sent = await send_capture_session(
            http,
            app_url=webs[index % 2],
            sandbox=sandbox,
            shop=SHOP,
            payment_id=f"pay_{uuid.uuid4().hex[:12]}",
            amount=amount,
            currency="EUR",
            retry_delays=SHOPIFY_RETRIES,
        )
        return Acknowledged(sent.id, sent.gid, amount, sent.status, time.monotonic())

    began = time.monotonic()
    sending = asyncio.create_task(
        send_paced(SESSIONS, per_second=PER_SECOND, concurrency=32, make=one)
    )
    await asyncio.sleep(KILL_AFTER_SECONDS)
    old_port, new_port = replicated.primary.port, replicated.replica.port
    replicated.primary.stop(kill=True)
    killed = time.monotonic()
    promoted = await _wait_for_promotion(replicated, new_port, patience=30)
    # The dead machine is replaced: a fresh server joins as the new primary's replica, so
    # that one replica can acknowledge again (PAYHOOK_REDIS_MIN_REPLICAS=1).
    replicated.primary = LocalRedis(
        replicated.directory / "a", port=old_port, appendfsync="always", replica_of=new_port
    )
    await asyncio.to_thread(replicated.primary.start)
    sent = await sending
    accepted = [s for s in sent if s.status == 201]

    states = await wait_all_final(store_client, [s.id for s in accepted], patience=60)
    after_kill = [s.at for s in accepted if s.at > killed]
    resumed = (min(after_kill) - killed) if after_kill else float("inf")
    problems = await _audit(accepted, states, sandbox, SimulatorConnector(store_client))
    figures = (
        f"FIGURES: failover sent={len(sent)} accepted={len(accepted)} "
        f"refused={len(sent) - len(accepted)} promoted_after={promoted:.1f}s "
        f"intake_resumed_after={resumed:.1f}s flow={time.monotonic() - began:.1f}s"
    )
    print(figures)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.get(f"{webs[0]}/readyz", headers=admin) as ready:
        topology = (await ready.json())["topology"]
    # The primary the sentinels name now: the promoted replica, or (on a host so loaded that
    # it missed the sentinels' pings) the restarted server, promoted back in a second failover.
    named = await asyncio.to_thread(replicated.primary_port)
    assert named in (new_port, old_port), figures
    assert (topology["mode"], topology["primary"]) == ("sentinel", f"127.0.0.1:{named}")
    assert len(topology["sentinels"]) == 3
    assert len(accepted) >= SESSIONS * 0.9, figures
    assert resumed < 20, figures
    assert not problems, f"{figures}\n" + "\n".join(problems[:20]) + "\n" + _health(processes)


async def _wait_for_promotion(replicated: ReplicatedRedis, port: int, patience: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < patience:
        if await asyncio.to_thread(replicated.primary_port) == port:
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    raise AssertionError(f"the sentinels did not promote 127.0.0.1:{port}")


async def _audit(
    accepted: list[Acknowledged],
    states: dict[str, str | None],
    sandbox: SandboxShopifyClient,
    psp: SimulatorConnector,
) -> list[str]:
    """What is wrong with the acknowledged sessions."""
    problems = []
    by_gid: dict[str, set[str]] = {}
    for call in await sandbox.calls():
        if call["applied"]:
            by_gid.setdefault(call["gid"], set()).add(call["mutation"])
    for one in accepted:
        declined = one.amount.endswith("51")
        wanted = REJECT if declined else RESOLVE
        where = f"{one.id} ({one.amount})"
        if states.get(one.id) not in FINAL:
            problems.append(f"{where} is {states.get(one.id)}: acknowledged, never reported")
        charges = (await psp.book("capture", one.id)).charges
        if charges != (0 if declined else 1):
            problems.append(f"{where} captured {charges} times")
        if by_gid.get(one.gid, set()) != {wanted}:
            problems.append(f"{where}: Shopify applied {sorted(by_gid.get(one.gid, set()))}")
    return problems


def _health(processes: Processes) -> str:
    lines = []
    for name, text in processes.logs():
        fatal = [line[:300] for line in text.splitlines() if "Unrecoverable" in line]
        lines.append(f"{name}: {fatal[-1] if fatal else 'no fatal line'}")
    return "\n".join(lines)
