"""One cell of the drain benchmark: one `payhook worker` process draining N queued captures.

A fresh Redis and `http` PSP fake (answering every capture `psp_ms` late) per cell; the
sandbox Shopify is the caller's. The sessions are queued through `payhook serve`, which is
stopped before `python -m ops worker` starts with nothing but its defaults; the drain is
timed from the worker's first message to the last session `reported`, then checked.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from bench.throughput import post_all, process
from bench.watch import Drain, watch_drain
from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.psp import connector_environment
from sandbox.shopify import GRAPHQL_PATH
from sandbox.shopify_side import build_capture_body
from sessions.keys import session_key
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.states import State
from transport.messages import QUEUE

TOKEN = "shpat_bench"  # the sandbox accepts any token
PSP_TOKEN = "bench-psp-token"  # and so does the PSP fake
INTAKE_CONCURRENCY = 32
START_WITHIN = 60.0  # seconds for a worker to start and take its first message
PYTHON = sys.executable


@dataclass(frozen=True)
class Cell:
    shopify_ms: int
    psp_ms: int

    def __str__(self) -> str:
        return f"shopify {self.shopify_ms} ms, psp {self.psp_ms} ms"


@dataclass
class CellResult:
    cell: Cell
    drain: Drain
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """What every cell shares: settings as `payhook` reads them, where logs go, N, deadline."""

    settings: Settings
    state: Path
    sessions: int
    timeout: float
    # With a directory: py-spy samples each cell's worker while it drains, into
    # `<profile>/<cell>.txt` (collapsed stacks).
    profile: Path | None = None

    def environment(self, redis_url: str, **overrides: str) -> dict[str, str]:
        return child_environment(
            {
                "PAYHOOK_REDIS_URL": redis_url,
                "PAYHOOK_BROKER_URL": redis_url,
                "PAYHOOK_STATE_DIR": str(self.state),
                **overrides,
            }
        )


def wait_up(url: str, child: subprocess.Popen[bytes], log: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{url}: its process exited with {child.returncode}; see {log}")
        with suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {seconds:.0f} s; see {log}")


async def queue_captures(
    app_url: str, redis_url: str, sandbox: SandboxShopifyClient, count: int
) -> dict[str, str]:
    """Queue `count` capture sessions of 10.00 EUR, each on its own open authorization.

    The one step that knows how sessions reach the queue: books are opened on the ledger
    directly (the `http` PSP cannot look a payment up, so payhook only captures payments
    it knows); the sessions go through `payhook serve` exactly as Shopify sends them.
    Returns session id -> gid.
    """
    bodies = [
        build_capture_body(payment_id=f"pay-{i}", amount="10.00", currency="EUR")
        for i in range(count)
    ]
    redis = Redis.from_url(redis_url)
    try:
        ledger = LedgerStore(redis)
        for body in bodies:
            await ledger.open(str(body["payment_id"]), Book(currency="EUR", authorized=1000))
        await sandbox.register([str(body["gid"]) for body in bodies])
        await post_all(f"{app_url}/capture_sessions", bodies, INTAKE_CONCURRENCY)
        queued = await redis.llen(QUEUE)
    finally:
        await redis.aclose()
    if queued != count:
        raise RuntimeError(f"{queued} messages on the {QUEUE!r} queue, expected {count}")
    return {str(body["id"]): str(body["gid"]) for body in bodies}


async def states_of(redis: Redis, ids: list[str]) -> list[str | None]:
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hget(session_key(session_id), "state")
        raw = await pipe.execute()
    return [value.decode() if isinstance(value, bytes) else value for value in raw]


class Reported:
    """How many sessions are `reported`, asking Redis only about those not there yet."""

    def __init__(self, redis: Redis, ids: list[str]) -> None:
        self._redis = redis
        self._total = len(ids)
        self._waiting = ids

    async def __call__(self) -> int:
        states = await states_of(self._redis, self._waiting)
        done = State.REPORTED.value
        self._waiting = [i for i, s in zip(self._waiting, states, strict=True) if s != done]
        return self._total - len(self._waiting)


async def drain_payhook(
    run: Run, redis_url: str, worker: subprocess.Popen[bytes], ids: list[str]
) -> Drain:
    redis = Redis.from_url(redis_url)
    try:
        return await watch_drain(
            redis,
            queue=QUEUE,
            total=len(ids),
            worker=worker,
            progress=Reported(redis, ids),
            start_within=START_WITHIN,
            finish_within=run.timeout,
        )
    finally:
        await redis.aclose()


async def verify(
    redis_url: str, psp_url: str, sandbox_url: str, gids: dict[str, str], drain: Drain
) -> list[str]:
    """What went wrong with the money or the reports; empty when nothing did.

    A cell that ran out of time is only held to what must hold at any moment: no capture
    applied twice, and every reported session captured once and resolved at Shopify.
    """
    ids = list(gids)
    redis = Redis.from_url(redis_url)
    try:
        states = dict(zip(ids, await states_of(redis, ids), strict=True))
    finally:
        await redis.aclose()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{psp_url}/_sandbox/calls", params={"operation": "capture"}) as got:
            calls = (await got.json())["calls"]
        resolves = await SandboxShopifyClient(sandbox_url, http).calls(
            mutation="captureSessionResolve"
        )
    applied = Counter(str(call["idempotency_key"]) for call in calls if call["applied"])
    resolved = {call["gid"] for call in resolves if call["applied"]}
    reported = [i for i in ids if states[i] == State.REPORTED.value]
    problems = []
    if drain.problem is None and len(reported) != len(ids):
        tally = Counter(str(state) for state in states.values())
        problems.append(f"{len(ids) - len(reported)} sessions not reported: {dict(tally)}")
    if twice := [key for key, times in applied.items() if times > 1]:
        problems.append(f"{len(twice)} sessions captured more than once at the PSP")
    if strangers := set(applied) - set(ids):
        problems.append(f"{len(strangers)} captures at the PSP for unknown idempotency keys")
    if uncaptured := [i for i in reported if applied[i] != 1]:
        problems.append(f"{len(uncaptured)} reported sessions without exactly one capture")
    if unresolved := [i for i in reported if gids[i] not in resolved]:
        problems.append(f"{len(unresolved)} reported sessions not resolved at Shopify")
    return problems


def run_cell(run: Run, cell: Cell, sandbox_url: str) -> CellResult:
    """Queue N captures, time `payhook worker` draining them, then check the money."""
    name = f"shopify{cell.shopify_ms}-psp{cell.psp_ms}"
    logs = run.state / name
    with ExitStack() as stack:
        redis = LocalRedis(logs / "redis").start()
        stack.callback(redis.stop)
        web_port = free_port()
        app_url = f"http://127.0.0.1:{web_port}"
        psp_url = stack.enter_context(psp_fake(cell.psp_ms, logs / "psp.log"))
        env = run.environment(
            redis.url,
            PAYHOOK_PORT=str(web_port),
            PAYHOOK_SHOPIFY_GRAPHQL_URL=sandbox_url + GRAPHQL_PATH,
            PAYHOOK_SHOPIFY_ACCESS_TOKEN=TOKEN,
            **connector_environment("http", psp_url, PSP_TOKEN),
        )
        # The web server only fills the queue; it is gone before the worker starts.
        with ops_process(["serve"], env, logs / "web.log") as web:
            wait_up(f"{app_url}/healthz", web, logs / "web.log")
            gids = asyncio.run(_queue(app_url, redis.url, sandbox_url, run.sessions))
        with (
            ops_process(["worker"], env, logs / "worker.log") as worker,
            sampled(worker, run.profile, name),
        ):
            drain = asyncio.run(drain_payhook(run, redis.url, worker, list(gids)))
        # Checked once the worker has stopped, so that nothing moves while it is read.
        problems = asyncio.run(verify(redis.url, psp_url, sandbox_url, gids, drain))
    return CellResult(cell, drain, problems)


@contextmanager
def psp_fake(latency_ms: int, log: Path) -> Iterator[str]:
    """The `http` PSP fake answering `latency_ms` late; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["psp-sandbox", "http", "--port", str(port), "--latency", str(latency_ms / 1000)]
    with ops_process(args, child_environment({}), log) as child:
        wait_up(f"{url}/_sandbox/calls", child, log)
        yield url


@contextmanager
def sampled(child: subprocess.Popen[bytes], into: Path | None, name: str) -> Iterator[None]:
    """py-spy on `child` for as long as the block runs (nothing without `into`)."""
    if into is None:
        yield
        return
    into.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    spy = subprocess.Popen(
        [
            *[py_spy, "record", "--pid", str(child.pid), "--rate", "250", "--format", "raw"],
            *["--output", str(into / f"{name}.txt"), "--nonblocking"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=5)


async def _queue(app_url: str, redis_url: str, sandbox_url: str, count: int) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        sandbox = SandboxShopifyClient(sandbox_url, http)
        return await queue_captures(app_url, redis_url, sandbox, count)


def ops_process(
    args: list[str], env: dict[str, str], log: Path
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`python -m ops ARGS` (a `payhook` command) as a child, its output in `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return process([PYTHON, "-m", "ops", *args], env, log)
