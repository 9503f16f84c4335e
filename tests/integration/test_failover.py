"""Failover: the session Redis's replica falls behind and its primary is SIGKILLed while two
web and two worker processes carry capture sessions, so the primary's last writes die with
it. The three sentinels promote the replica; every process finds it through them; because
each `201`, each PSP request and each report to Shopify waited for the replica
(`PAYHOOK_REDIS_MIN_REPLICAS=1`) to hold what it rests on, no session answered 201 is lost
and none is settled twice.

Everything is real: `payhook serve`, `payhook worker` and `payhook beat` as subprocesses
given only the sentinels' addresses, redis-server and three sentinels on 127.0.0.1, the
sandbox Shopify over HTTP, and the PSP: a connector's sandbox fake in a process of its own
(`payhook psp-sandbox`), answering a real provider's round trips late, so that sessions
are reading the order and capturing when the primary dies. Its books are in its own
memory, so whatever the failover takes from Redis, they still show every charge: the test
asks them over HTTP how many times each payment was captured. Two connectors: Aplazame,
which takes no idempotency key, so a second capture of a payment is a second charge that
only payhook's journal and order lock (in the Redis that fails over) can prevent; and the
generic `http` contract, whose key lets the PSP answer a repeat with the first capture.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis, free_port
from redisio.connect import tool_client
from sandbox.client import SandboxShopifyClient
from sandbox.psp import connector_environment
from sandbox.psp.common import Charges
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import send_capture_session
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.money import to_minor
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

pytestmark = pytest.mark.integration

# Sessions settled before the kill (75), in flight at it, refused and retried while no
# primary is named, and sent after the promotion (a second of them); the run lasts as long
# as the failover and the lease of a session caught in it, whatever the count.
SESSIONS = 350
PER_SECOND = 50.0
KILL_AFTER_SECONDS = 1.5
# How long the replica lags before the primary dies: below the replica WAIT's 0.5 s, so the
# writes that wait for it are still waiting, and below the sentinels' 1 s, so they keep it.
BEHIND_SECONDS = 0.3
# A provider's round trips: at 50 sessions/s, about ten captures are at the PSP at any time,
# and about five are between their claim's WAIT and their capture, reading the order.
PSP_LATENCY_SECONDS = 0.2
PSP_READ_LATENCY_SECONDS = 0.1
# Shopify keeps retrying an app that answers 5xx; this ladder (15 s) spans a failover, and
# its steps of a second let the sessions refused meanwhile in soon after intake resumes.
SHOPIFY_RETRIES = (0.2, 0.5, *(1.0,) * 14)


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
    payment_id: str
    amount: str
    status: int
    sent_at: float
    at: float


def amount_of(index: int) -> str:
    """Nine in ten approved; one in ten declined by the PSP (minor units ending in 51)."""
    cents = 51 if index % 10 == 0 else (index * 7) % 50
    return f"{10 + index % 90}.{cents:02d}"


@pytest.mark.parametrize("connector", ["aplazame", "http"])
async def test_a_sigkilled_primary_fails_over_and_no_acknowledged_session_is_lost_or_charged_twice(
    connector: str,
    replicated: ReplicatedRedis,
    processes: Processes,
    shopify_sandbox: RunningShopifySandbox,
    http: aiohttp.ClientSession,
    sandbox: SandboxShopifyClient,
    store_client: Redis,
    tmp_path: Path,
) -> None:
    psp_port = free_port()
    psp_url = f"http://127.0.0.1:{psp_port}"
    env = fleet_environment(
        replicated,
        shopify_sandbox,
        tmp_path,
        **connector_environment(connector, psp_url, "sk_test"),
    )
    # The PSP, the workers and beat start while the web processes do.
    starting = asyncio.gather(
        asyncio.to_thread(
            processes.psp,
            connector,
            psp_port,
            env,
            latency=PSP_LATENCY_SECONDS,
            read_latency=PSP_READ_LATENCY_SECONDS,
        ),
        *(asyncio.to_thread(processes.worker, env, f"worker{i}") for i in range(2)),
        asyncio.to_thread(processes.beat, env),
    )
    webs = await asyncio.gather(
        *(asyncio.to_thread(processes.web, env, f"web{i}") for i in range(2))
    )
    await starting

    payments = [f"pay_{uuid.uuid4().hex[:12]}" for _ in range(SESSIONS)]
    if connector == "http":
        await _open_payments(store_client, payments)

    async def one(index: int) -> Acknowledged:
        amount, payment_id = amount_of(index), payments[index]
        sent_at = time.monotonic()
        sent = await send_capture_session(
            http,
            app_url=webs[index % 2],
            sandbox=sandbox,
            shop=SHOP,
            payment_id=payment_id,
            amount=amount,
            currency="EUR",
            retry_delays=SHOPIFY_RETRIES,
        )
        return Acknowledged(
            sent.id, sent.gid, payment_id, amount, sent.status, sent_at, time.monotonic()
        )

    began = time.monotonic()
    sending = asyncio.create_task(
        send_paced(SESSIONS, per_second=PER_SECOND, concurrency=32, make=one)
    )
    await asyncio.sleep(KILL_AFTER_SECONDS)
    old_port, new_port = replicated.primary.port, replicated.replica.port
    # The replica falls behind, then the primary dies: what the primary took meanwhile is
    # gone with it. Whatever payhook answered or asked a PSP on must have waited for it.
    with replicated.replica_behind():
        await asyncio.sleep(BEHIND_SECONDS)
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
    # Sessions first sent after the kill: a 201 already on its way then says nothing.
    after_kill = [s.at for s in accepted if s.sent_at > killed]
    resumed = (min(after_kill) - killed) if after_kill else float("inf")
    charges = await _charges(http, psp_url)
    reported = await _reported(sandbox)
    problems = _audit(sent, states, reported, charges)
    figures = (
        f"FIGURES: failover connector={connector} sent={len(sent)} accepted={len(accepted)} "
        f"refused={len(sent) - len(accepted)} promoted_after={promoted:.1f}s "
        f"intake_resumed_after={resumed:.1f}s flow={time.monotonic() - began:.1f}s "
        f"psp_captures_sent={charges.sent} psp_replayed={charges.replayed} "
        f"psp_charged_payments={len(charges.payments)} "
        f"psp_charged_twice={sum(1 for n in charges.payments.values() if n > 1)} "
        f"shopify_told_twice={sum(1 for s in accepted if len(reported.get(s.gid, [])) > 1)}"
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


async def _open_payments(store: Redis, payments: list[str]) -> None:
    """The books payhook opens when it resolves a payment session (`workers.lifecycle.
    payment`): the `http` contract has no authorization read, so a PSP speaking it captures
    only payments payhook opened. They reach the replica before the kill (`WAIT`)."""
    ledger = LedgerStore(store)
    for index, payment_id in enumerate(payments):
        authorized = to_minor(Decimal(amount_of(index)), "EUR")
        await ledger.open(payment_id, Book("EUR", authorized=authorized))
    async with store.pipeline(transaction=False) as pipe:
        # WAIT counts from the connection's last write; replication offsets cover all before it.
        pipe.set("payhook:test:books-opened", 1)
        pipe.execute_command("WAIT", 1, 5000)
        _, replicas = await pipe.execute()
    assert replicas >= 1


async def _charges(http: aiohttp.ClientSession, psp_url: str) -> Charges:
    """The PSP fake's own count of the captures it applied, per payment and per key."""
    async with http.get(f"{psp_url}/_sandbox/charges", params={"operation": "capture"}) as answer:
        assert answer.status == 200, await answer.text()
        return Charges.model_validate(await answer.json())


async def _reported(sandbox: SandboxShopifyClient) -> dict[str, list[str]]:
    """Per gid, the mutations Shopify applied: the one that set its outcome and any repeat
    of it (a report whose `reported` state a failover took back is sent again)."""
    applied: dict[str, list[str]] = {}
    for call in await sandbox.calls():
        if call["applied"]:
            applied.setdefault(call["gid"], []).append(call["mutation"])
    return applied


def _audit(
    sent: list[Acknowledged],
    states: dict[str, str | None],
    reported: dict[str, list[str]],
    charges: Charges,
) -> list[str]:
    """What is wrong with the sessions sent: an acknowledged one not reported, reported
    with both outcomes or the wrong one, or captured other than once (none if declined);
    any payment captured twice, acknowledged or not."""
    problems = []
    ours = {one.payment_id for one in sent}
    for payment, count in charges.payments.items():
        if payment not in ours:
            problems.append(f"{payment} was captured {count} times, but no session asked for it")
        elif count > 1:
            problems.append(f"{payment} was captured {count} times at the PSP")
    for one in (s for s in sent if s.status == 201):
        declined = one.amount.endswith("51")
        wanted = REJECT if declined else RESOLVE
        where = f"{one.id} ({one.payment_id}, {one.amount})"
        if states.get(one.id) not in FINAL:
            problems.append(f"{where} is {states.get(one.id)}: acknowledged, never reported")
        captured = charges.payments.get(one.payment_id, 0)
        if captured != (0 if declined else 1):
            problems.append(f"{where} captured {captured} times at the PSP")
        if charges.keys and charges.keys.get(one.id, 0) != captured:
            problems.append(f"{where} captured {charges.keys.get(one.id, 0)} times under its key")
        if set(reported.get(one.gid, [])) != {wanted}:
            problems.append(f"{where}: Shopify applied {reported.get(one.gid, [])}")
    return problems


def _health(processes: Processes) -> str:
    lines = []
    for name, text in processes.logs():
        fatal = [line[:300] for line in text.splitlines() if "Unrecoverable" in line]
        lines.append(f"{name}: {fatal[-1] if fatal else 'no fatal line'}")
    return "\n".join(lines)
