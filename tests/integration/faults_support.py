"""Helpers of the fault tests: worker fleets, killers, paced senders and audits.

A fault module binds the fixtures it shares with the others by name
(`fleet = faults_support.fleet`): `fresh_database` is autouse, so it flushes the modules' own
database before each of their tests, and only theirs; `settings` is the web app's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from config import Settings
from ops.redis_server import LocalRedis
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import SentSession, send_capture_session
from sessions.keys import session_key
from sessions.models import Op, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import CALLBACK_SECRET
from tests.integration.conftest import ROOT, TOKEN, WorkerProcess, worker_environment
from workers.connectors.simulator import SimulatorConnector

DB = 3
SHOP = "faults-shop.myshopify.com"
RESOLVE, REJECT = "captureSessionResolve", "captureSessionReject"
FINAL = {State.REPORTED.value, State.FAILED.value}

# The production paths with short waits: a lease of 5 s is also how long a killed worker's
# session waits before the sweeper (every 0.5 s) hands it to someone else.
FAST = {
    "PAYHOOK_PSP_RETRY_LADDER": "0.05,0.2,0.5,1",
    "PAYHOOK_PSP_MAX_ATTEMPTS": "20",
    "PAYHOOK_PSP_RETRY_DEADLINE_SECONDS": "0",
    "PAYHOOK_SHOPIFY_RETRY_LADDER": "0.05,0.2,0.5,1",
    "PAYHOOK_SHOPIFY_MAX_ATTEMPTS": "60",
    "PAYHOOK_SHOPIFY_RETRY_DEADLINE_SECONDS": "0",
    "PAYHOOK_PSP_TIMEOUT_SECONDS": "1",
    "PAYHOOK_SHOPIFY_TIMEOUT_SECONDS": "2",
    "PAYHOOK_LEASE_SECONDS": "5",
    "PAYHOOK_REDIS_TIMEOUT_SECONDS": "1",
    "PAYHOOK_SWEEP_INTERVAL_SECONDS": "0.5",
}
LEASE_SECONDS = 5.0
# What a paced sender's `make` returns for each session it sends.
Sent = TypeVar("Sent")


# --- fixtures ---------------------------------------------------------------------------


def fault_settings(
    redis_server: LocalRedis, sandbox: RunningShopifySandbox, **overrides: Any
) -> Settings:
    """The web app's settings in a fault module: its own database, the production paths."""
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_graphql_url=sandbox.graphql_url_template,
        shopify_access_token=TOKEN,
        psp_timeout_seconds=1,
        shopify_timeout_seconds=2,
        lease_seconds=LEASE_SECONDS,
        redis_timeout_seconds=1,
        **overrides,
    )


def flush_database(redis_server: LocalRedis) -> None:
    """Sessions, broker queues and PSP books of earlier tests would blur every count."""
    client = SyncRedis(host="127.0.0.1", port=redis_server.port, db=DB)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def settings(redis_server: LocalRedis, shopify_sandbox: RunningShopifySandbox) -> Settings:
    return fault_settings(redis_server, shopify_sandbox)


@pytest.fixture(name="settings")
def settings_with_psp_callbacks(
    redis_server: LocalRedis, shopify_sandbox: RunningShopifySandbox
) -> Settings:
    """`settings` that also take the simulator PSP's signed callbacks (`signed_callback`)."""
    return fault_settings(redis_server, shopify_sandbox, simulator_webhook_secret=CALLBACK_SECRET)


@pytest.fixture(autouse=True)
def fresh_database(redis_server: LocalRedis) -> None:
    flush_database(redis_server)


@pytest.fixture
def fleet(
    redis_server: LocalRedis, shopify_sandbox: RunningShopifySandbox, tmp_path: Path
) -> Iterator[Fleet]:
    started = Fleet(redis_server, shopify_sandbox, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def restartable_redis(redis_server: LocalRedis) -> Iterator[LocalRedis]:
    """The session-wide redis-server, for a test that kills it: it is up again afterwards."""
    yield redis_server
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.process = None
        redis_server.start()


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (the processes of `payhook worker --processes N`), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def kill_group(process: WorkerProcess) -> None:
    """SIGKILL the process and everything it forked (it leads its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.process.pid, signal.SIGKILL)
    process.process.wait(timeout=10)


class Fleet:
    """The worker and beat processes of one test. Each one leads its own process group, so
    teardown SIGKILLs whole groups: no prefork child outlives its test."""

    def __init__(
        self, redis_server: LocalRedis, sandbox: RunningShopifySandbox, directory: Path
    ) -> None:
        self._redis_server = redis_server
        self._sandbox = sandbox
        self.directory = directory
        self.started: list[WorkerProcess] = []
        self._serial = itertools.count(1)

    def env(self, **overrides: str) -> dict[str, str]:
        return worker_environment(
            self._redis_server,
            self._sandbox,
            self.directory,
            **{
                **FAST,
                "PAYHOOK_REDIS_URL": f"redis://127.0.0.1:{self._redis_server.port}/{DB}",
                **overrides,
            },
        )

    def start(
        self, command: list[str], env: dict[str, str], name: str, marker: str
    ) -> WorkerProcess:
        log = self.directory / f"{name}-{next(self._serial)}.log"
        # Recorded before waiting for it, so a process that never gets ready is still killed.
        process = WorkerProcess.start(command, env, log, ready_marker=None)
        self.started.append(process)
        process.wait_for(marker, timeout=45)
        return process

    def worker(
        self, env: dict[str, str], name: str = "worker", processes: int = 1
    ) -> WorkerProcess:
        """`payhook worker` at its default concurrency, with `processes` supervised children."""
        command = ["worker", "--processes", str(processes)]
        return self.start(command, env, name, "ready")

    def beat(self, env: dict[str, str]) -> WorkerProcess:
        return self.start(["beat"], env, "beat", "beat: Starting")

    def logs(self) -> str:
        return "".join(p.log.read_text(errors="replace") for p in self.started)

    def health(self) -> str:
        """Which processes are still running, and the last fatal line of any that are not."""
        lines = []
        for process in self.started:
            code = process.process.poll()
            fatal = [
                line[:300]
                for line in process.log.read_text(errors="replace").splitlines()
                if '"critical"' in line or "Unrecoverable" in line
            ]
            state = "running" if code is None else f"exited {code}"
            lines.append(f"{process.log.name}: {state} {fatal[-1] if fatal else ''}".rstrip())
        return "\n".join(lines)

    def stop_all(self) -> None:
        # The test is over: whatever these processes leave in Redis is flushed before the next.
        for process in self.started:
            kill_group(process)


SCRIPTED_DELIVERIES = {"53": 4, "54": 2}


def expected_mutation(amount: str) -> str:
    """The simulator declines amounts ending in 51; 53 (flaky) and 54 (ambiguous) approve."""
    return REJECT if amount.endswith("51") else RESOLVE


async def send(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    amount: str,
    retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0),
    shop: str = SHOP,
) -> SentSession:
    """A capture session of `amount` EUR that `shop` sends, on a payment of its own."""
    return await send_capture_session(
        http,
        app_url=app_url,
        sandbox=sandbox,
        shop=shop,
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        amount=amount,
        currency="EUR",
        retry_delays=retry_delays,
    )


async def send_paced(
    count: int,
    *,
    per_second: float,
    concurrency: int,
    make: Callable[[int], Awaitable[Sent]],
) -> list[Sent]:
    """Send `count` sessions spread over time, as Shopify's traffic would arrive."""
    gate = asyncio.Semaphore(concurrency)
    began = time.monotonic()

    async def one(index: int) -> Sent:
        await asyncio.sleep(max(0.0, began + index / per_second - time.monotonic()))
        async with gate:
            return await make(index)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def states_of(redis: Redis, ids: list[str]) -> dict[str, str | None]:
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hget(session_key(session_id), "state")
        values = await pipe.execute()
    return {i: (v.decode() if v is not None else None) for i, v in zip(ids, values, strict=True)}


async def wait_all_final(redis: Redis, ids: list[str], patience: float) -> dict[str, str | None]:
    """Every session's state once all are reported or failed, or as they stand at `patience`."""
    deadline = time.monotonic() + patience
    states: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        try:
            states = await states_of(redis, ids)
        except RedisConnectionError:
            await asyncio.sleep(0.2)
            continue
        if all(state in FINAL for state in states.values()):
            break
        await asyncio.sleep(0.2)
    return states


@dataclass
class Audit:
    """What the PSP, Shopify and the store say about a batch of sessions."""

    problems: list[str] = field(default_factory=list)
    # Sessions charged twice, or given two different decisions at Shopify.
    duplicates: int = 0
    # The same mutation sent again after a crash between Shopify's answer and our store:
    # Shopify treats a repeated name as a no-op, so the merchant sees nothing.
    repeated_reports: int = 0
    # Sessions delivered more often than their PSP script needs: the ones a fault reached.
    redelivered: int = 0
    charges: int = 0


async def audit(
    sent: list[SentSession],
    *,
    store: SessionStore,
    psp: SimulatorConnector,
    sandbox: SandboxShopifyClient,
) -> Audit:
    result = Audit()
    by_gid: dict[str, list[dict[str, Any]]] = {}
    for call in await sandbox.calls():
        by_gid.setdefault(call["gid"], []).append(call)
    for one in sent:
        amount = one.body["amount"]
        wanted = expected_mutation(amount)
        opposite = REJECT if wanted == RESOLVE else RESOLVE
        session = await store.get(one.id)
        book = await psp.book(Op.CAPTURE, one.id)
        calls = by_gid.get(one.gid, [])
        applied = [c for c in calls if c["applied"]]
        decisions = {c["mutation"] for c in applied}
        where = f"{one.id} ({amount})"
        if session is None or session.state is not State.REPORTED:
            result.problems.append(
                f"{where} is {session and session.state}: {session and session.last_error}"
            )
        elif session.report is not (Report.RESOLVED if wanted == RESOLVE else Report.REJECTED):
            result.problems.append(f"{where} reported {session.report}")
        if book.charges != (1 if wanted == RESOLVE else 0):
            result.problems.append(f"{where} charged {book.charges} times")
        if book.charges > 1 or len(decisions) > 1:
            result.duplicates += 1
        if decisions != {wanted}:
            result.problems.append(f"{where}: Shopify applied {sorted(decisions)}, not {wanted}")
        if any(c["mutation"] == opposite for c in calls):
            result.problems.append(f"{where}: Shopify was sent {opposite}")
        result.repeated_reports += max(0, len(applied) - 1)
        if session is not None and session.deliveries > SCRIPTED_DELIVERIES.get(amount[-2:], 1):
            result.redelivered += 1
        result.charges += book.charges
    return result


async def payhook(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`payhook ARGS` as an operator runs it; (exit code, stdout)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    if process.returncode != 0:
        print(f"payhook {' '.join(args)} exited {process.returncode}:\n{err.decode()[-2000:]}")
    return process.returncode, out.decode()


# --- 1. SIGKILL chaos ---------------------------------------------------------------------


def chaos_amount(index: int) -> str:
    """Seven in ten approved outright; one declined, one flaky, one ambiguous at the PSP."""
    cents = {0: 51, 1: 53, 2: 54}.get(index % 10, (index * 7) % 50)
    return f"{10 + index % 90}.{cents:02d}"


@dataclass
class Killer:
    """SIGKILLs, at random moments, one worker process of a supervised group (the supervisor
    starts it again) or a whole group (restarted here)."""

    fleet: Fleet
    env: dict[str, str]
    slots: list[WorkerProcess]
    rng: random.Random
    children_killed: int = 0
    groups_killed: int = 0
    last_kill: float = 0.0

    @property
    def kills(self) -> int:
        return self.children_killed + self.groups_killed

    async def run(self, seconds: float) -> None:
        stop = time.monotonic() + seconds
        while True:
            await asyncio.sleep(self.rng.uniform(0.2, 1.0))
            if time.monotonic() >= stop:
                return
            slot = self.rng.randrange(len(self.slots))
            target = self.slots[slot]
            if self.kills % 3 == 2:
                kill_group(target)
                self.groups_killed += 1
                self.last_kill = time.monotonic()
                self.slots[slot] = await asyncio.to_thread(
                    self.fleet.worker, self.env, f"w{slot}", 2
                )
                continue
            children = child_pids(target.process.pid)
            if not children:
                continue
            try:
                os.kill(self.rng.choice(children), signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.children_killed += 1
            self.last_kill = time.monotonic()
