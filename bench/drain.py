"""Drain benchmark: how fast one `payhook worker` process, at its defaults, settles a queue of
capture sessions, for a matrix of Shopify and PSP latencies, against baselines measured in
the same run on the same machine.

    python -m bench.drain [--sessions 2000] [--shopify-ms 0,100,300] [--psp-ms 20,200]
                          [--noop-ms 0,20,...] [--cell-timeout 120]

Each cell gets a fresh Redis, a fresh `http` PSP fake answering every capture `psp-ms` late,
and N payments open on the ledger with one capture session each, queued through `payhook
serve` (stopped once they are in). Then `python -m ops worker` starts with nothing but its
defaults and is timed from the first message it takes to the last session `reported`, with
its CPU (worker and children) and peak RSS. Checked: every session reported, resolved at
the sandbox Shopify, and exactly one applied capture per session at the PSP.

Baselines:
- floor: per session the same capture POST to a PSP fake of the cell's latency (payhook's
  own `http` connector) and the same `captureSessionResolve` mutation to the same sandbox
  Shopify (payhook's own `GqlShopifyGateway`), from a plain asyncio client with as many
  sessions in flight as the worker (`PAYHOOK_WORKER_CONCURRENCY`): the I/O a session needs,
  without payhook's bookkeeping.
- Celery no-op: payhook's Celery app and worker options (threads pool) draining N tasks
  that only wait, on a shared event loop, as long as a cell's Shopify + PSP latency
  (`bench.noop_celery`).
Everything runs on 127.0.0.1; every wait has a deadline; every process is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from bench.drain_cell import (
    PYTHON,
    START_WITHIN,
    TOKEN,
    Cell,
    CellResult,
    Run,
    ops_process,
    psp_fake,
    run_cell,
    wait_up,
)
from bench.flame import by_package, top_frames
from bench.noop_celery import publish
from bench.throughput import SHOP, process
from bench.watch import Drain, watch_drain
from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH
from sessions.models import Op
from transport.messages import QUEUE
from workers.connectors.base import Operation
from workers.connectors.build import build_connector
from workers.shopify import mutations
from workers.shopify.gateway import GqlShopifyGateway


def print_profile(stacks: Path) -> None:
    """Self time of the sampled worker by package, and the largest functions."""
    if not stacks.exists():
        print(f"no profile at {stacks}")
        return
    collapsed = stacks.read_text()
    print(f"worker self time by package ({stacks}):")
    for percent, name in by_package(collapsed, floor_percent=0.5):
        print(f"{percent:6.2f}%  {name}")
    print("functions, inclusive:")
    for percent, name in top_frames(collapsed, floor_percent=3.0):
        print(f"{percent:6.2f}%  {name}")


UNACKED = "unacked"  # kombu's Redis hash of delivered, not yet acknowledged messages


@contextmanager
def shopify_sandbox(run: Run, latency_ms: int) -> Iterator[str]:
    """A sandbox Shopify answering every GraphQL call `latency_ms` late; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = run.state / f"sandbox-{latency_ms}ms.log"
    with ops_process(["sandbox", "--port", str(port)], child_environment({}), log) as child:
        wait_up(f"{url}/_sandbox/calls", child, log)
        if latency_ms:
            asyncio.run(_slow_down(url, latency_ms))
        yield url


async def _slow_down(url: str, latency_ms: int) -> None:
    async with aiohttp.ClientSession() as http:
        # A day: longer than any run, so the sandbox is slow for all of it.
        rule = {"kind": "delay", "seconds": latency_ms / 1000, "for_seconds": 86400}
        await SandboxShopifyClient(url, http).add_fault(rule)


class _Token:
    async def token_for(self, shop: str) -> str | None:
        return TOKEN

    def opened(self, shop: str, stored: str | None) -> str | None:
        return TOKEN


def gid_of(session_id: str) -> str:
    return f"gid://shopify/CaptureSession/{session_id}"


def floor(run: Run, cell: Cell, sandbox_url: str) -> float | None:
    """The I/O floor of a cell: per session, the same capture POST (payhook's `http`
    connector) to a PSP fake of the cell's latency and the same resolve mutation (payhook's
    gateway) to the same sandbox Shopify, by a plain asyncio client with as many sessions in
    flight as the worker keeps; sessions per second, None when it timed out."""
    log = run.state / f"floor-{cell.shopify_ms}-{cell.psp_ms}" / "psp.log"
    with psp_fake(cell.psp_ms, log) as psp_url:
        return asyncio.run(_floor(run, sandbox_url, psp_url))


async def _floor(run: Run, sandbox_url: str, psp_url: str) -> float | None:
    count = run.sessions
    ids = [f"floor-{i}" for i in range(count)]
    async with aiohttp.ClientSession() as http:
        await SandboxShopifyClient(sandbox_url, http).register([gid_of(i) for i in ids])
    settings = run.settings.model_copy(
        update={"connector": "http", "http_connector_url": psp_url, "http_connector_token": None}
    )
    redis = Redis()  # the http connector keeps nothing in Redis
    connector = build_connector(settings, redis)
    gateway = GqlShopifyGateway(
        url_template=sandbox_url + GRAPHQL_PATH,
        api_version=run.settings.shopify_api_version,
        tokens=_Token(),
        timeout_seconds=run.settings.shopify_timeout_seconds,
        connections=run.settings.worker_concurrency,
    )
    pending = list(reversed(ids))

    async def sender() -> None:
        while pending:
            session_id = pending.pop()
            operation = Operation(session_id, f"pay_{session_id}", Decimal("10.00"), "EUR", True)
            await connector.settle(Op.CAPTURE, operation)
            await gateway.send(SHOP, mutations.resolve("capture", gid_of(session_id)))

    started = time.perf_counter()
    try:
        senders = asyncio.gather(*(sender() for _ in range(run.settings.worker_concurrency)))
        await asyncio.wait_for(senders, timeout=run.timeout)
    except TimeoutError:
        return None
    finally:
        await gateway.close()
        await connector.close()
        await redis.aclose()
    return count / (time.perf_counter() - started)


def run_noop(run: Run, latency_ms: int) -> Drain:
    """Celery alone: N no-op tasks that wait `latency_ms`, drained like a payhook queue."""
    directory = run.state / f"noop-{latency_ms}ms"
    with ExitStack() as stack:
        redis = LocalRedis(directory / "redis").start()
        stack.callback(redis.stop)
        settings = run.settings.model_copy(update={"redis_url": redis.url, "broker_url": None})
        publish(settings, run.sessions, latency_ms / 1000)
        args = [PYTHON, "-m", "bench.noop_celery"]
        env = run.environment(redis.url)
        worker = stack.enter_context(process(args, env, directory / "worker.log"))
        return asyncio.run(_drain_noop(run, redis.url, worker))


async def _drain_noop(run: Run, redis_url: str, worker: subprocess.Popen[bytes]) -> Drain:
    redis = Redis.from_url(redis_url)

    async def progress() -> int:
        # Acknowledged late: a message leaves `unacked` only once its task has finished.
        waiting = await redis.llen(QUEUE) + await redis.hlen(UNACKED)
        return run.sessions - waiting

    try:
        return await watch_drain(
            redis,
            queue=QUEUE,
            total=run.sessions,
            worker=worker,
            progress=progress,
            start_within=START_WITHIN,
            finish_within=run.timeout,
        )
    finally:
        await redis.aclose()


def report(
    run: Run, results: list[CellResult], floors: dict[Cell, float | None], noops: dict[int, Drain]
) -> None:
    concurrency = run.settings.worker_concurrency
    print(
        f"\nDrain: {run.sessions} captures, one `payhook worker` process at its defaults "
        f"(concurrency {concurrency})"
    )
    print("shopify  psp      payhook/s  floor/s  ratio  cpu ms/session  peak RSS MB")
    notes = [
        f"n/a: the floor of {cell} did not finish within {run.timeout:.0f} s"
        for cell, found in floors.items()
        if found is None
    ]
    for result in results:
        cell, drain = result.cell, result.drain
        found = floors.get(cell)
        shown = f"{found:7.1f}  {drain.per_second / found:5.2f}" if found else "    n/a    n/a"
        mark = "*" if drain.problem else " "
        print(
            f"{cell.shopify_ms:>3} ms   {cell.psp_ms:>3} ms{mark} {drain.per_second:9.1f}  "
            f"{shown}  {drain.cpu_ms_per_item:14.1f}  {drain.peak_rss_mb:11.0f}"
        )
        if drain.problem:
            notes.append(
                f"* {cell}: {drain.problem} with {drain.done}/{drain.total} reported; "
                "its figures are over those"
            )
    print(
        f"\nCelery no-op: {run.sessions} tasks that only wait, payhook's Celery app and worker "
        f"options, threads pool, concurrency {concurrency}"
    )
    print("wait       msgs/s  cpu ms/msg  peak RSS MB")
    for latency_ms, drain in noops.items():
        mark = "*" if drain.problem else " "
        print(
            f"{latency_ms:>3} ms{mark}  {drain.per_second:8.1f}  {drain.cpu_ms_per_item:10.2f}  "
            f"{drain.peak_rss_mb:11.0f}"
        )
        if drain.problem:
            notes.append(f"* no-op {latency_ms} ms: {drain.problem} with {drain.done} done")
    for note in notes:
        print(note)


def _milliseconds(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole milliseconds, e.g. 0,100") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds >= 0, e.g. 0,100")
    return values


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=2000, help="capture sessions per cell")
    parser.add_argument("--shopify-ms", type=_milliseconds, default=[0, 100, 300])
    parser.add_argument("--psp-ms", type=_milliseconds, default=[20, 200])
    parser.add_argument(
        "--noop-ms",
        type=_milliseconds,
        default=None,
        help="Celery no-op waits (default: 0 and each cell's Shopify + PSP latency)",
    )
    parser.add_argument("--cell-timeout", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample each cell's worker with py-spy; collapsed stacks and self time by package",
    )
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    state = Path(tempfile.mkdtemp(prefix="payhook-drain-"))
    run = Run(Settings(), state, args.sessions, args.cell_timeout, args.profile)
    try:
        failures = measure(run, args.shopify_ms, args.psp_ms, args.noop_ms)
    except BaseException:
        print(f"ERROR: the benchmark stopped; logs kept in {state}", file=sys.stderr)
        raise
    for problem in failures:
        print(f"ERROR {problem}", file=sys.stderr)
    if failures:
        print(f"ERROR: the figures above are not to be trusted; logs in {state}", file=sys.stderr)
        return 1
    shutil.rmtree(state, ignore_errors=True)
    return 0


def measure(
    run: Run, shopify_ms: list[int], psp_ms: list[int], noop_ms: list[int] | None
) -> list[str]:
    """Run every cell and baseline, print the figures; returns what failed the checks."""
    # Every process of a cell shares this machine: other load shows in the figures.
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} before the first cell", flush=True)
    cells = [Cell(s, p) for s in shopify_ms for p in psp_ms]
    results: list[CellResult] = []
    floors: dict[Cell, float | None] = {}
    for latency_ms in shopify_ms:
        with shopify_sandbox(run, latency_ms) as sandbox_url:
            for cell in (c for c in cells if c.shopify_ms == latency_ms):
                floors[cell] = floor(run, cell, sandbox_url)
                results.append(result := run_cell(run, cell, sandbox_url))
                print(f"{cell}: {result.drain.done}/{run.sessions} reported", flush=True)
                if run.profile is not None:
                    print_profile(run.profile / f"shopify{cell.shopify_ms}-psp{cell.psp_ms}.txt")
    noops: dict[int, Drain] = {}
    for latency_ms in noop_ms or sorted({0, *(c.shopify_ms + c.psp_ms for c in cells)}):
        noops[latency_ms] = drained = run_noop(run, latency_ms)
        print(f"Celery no-op {latency_ms} ms: {drained.done}/{run.sessions} done", flush=True)
    report(run, results, floors, noops)
    return [f"{r.cell}: {problem}" for r in results for problem in r.problems]


if __name__ == "__main__":
    sys.exit(main())
