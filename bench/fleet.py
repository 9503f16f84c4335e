"""Fleet benchmark: what waiting for a replica costs, and 2 web + 2 worker processes against
1 + 1 on the same load, with the figures docs/scaling.md's capacity model rests on.

    python -m bench.fleet [--sessions 1000] [--intake 2000] [--concurrency 32]

On a primary with one replica (both redis-server on 127.0.0.1):
1. Intake: N capture sessions POSTed to one `payhook serve` with PAYHOOK_REDIS_MIN_REPLICAS
   0 (the baseline, same run) and 1 (each 201 waits for the replica's WAIT).
2. End to end with the replica wait on: 1 web + 1 worker process (the baseline), then
   2 web + 2 worker processes, each process a separate `payhook` as on separate hosts.
   Sessions/s from the first POST to the last report, the CPU every process used per
   session (from /proc), and the Redis commands and Redis CPU per session (INFO).
Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from bench.throughput import describe, flush, post_all, process, wait_until_up
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH
from sandbox.shopify_side import build_capture_body
from sessions.keys import DUE

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class RedisCounters:
    commands: dict[str, int]
    cpu: float

    @classmethod
    async def read(cls, redis: Redis) -> RedisCounters:
        stats = await redis.info("commandstats")
        cpu = await redis.info("cpu")
        return cls(
            {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()},
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        )

    def since(self, before: RedisCounters) -> RedisCounters:
        names = set(self.commands) | set(before.commands)
        delta = {n: self.commands.get(n, 0) - before.commands.get(n, 0) for n in names}
        return RedisCounters({n: c for n, c in delta.items() if c}, self.cpu - before.cpu)


@dataclass(frozen=True)
class Shape:
    webs: int
    workers: int

    @property
    def label(self) -> str:
        return f"{self.webs} web + {self.workers} worker"


@contextmanager
def fleet(
    shape: Shape, env: dict[str, str], state: Path
) -> Iterator[tuple[list[str], dict[str, list[int]]]]:
    """The shape's processes; yields the web URLs and the process ids by role."""
    python = sys.executable
    with ExitStack() as stack:
        urls: list[str] = []
        pids: dict[str, list[int]] = {"web": [], "worker": []}
        for index in range(shape.webs):
            port = free_port()
            web = stack.enter_context(
                process(
                    [python, "-m", "ops", "serve"],
                    {**env, "PAYHOOK_PORT": str(port)},
                    state / f"web-{shape.webs}-{index}.log",
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
            pids["web"].append(web.pid)
        for index in range(shape.workers):
            worker = stack.enter_context(
                process(
                    [python, "-m", "ops", "worker"],
                    env,
                    state / f"worker-{shape.workers}-{index}.log",
                )
            )
            pids["worker"].append(worker.pid)
        for url in urls:
            wait_until_up(f"{url}/healthz")
        time.sleep(4)  # worker start-up is not what is measured
        yield urls, pids


async def post_spread(urls: list[str], bodies: list[dict[str, object]], concurrency: int) -> None:
    """POST the bodies spread evenly over the web processes, as a load balancer would."""
    shares: dict[str, list[dict[str, object]]] = {url: [] for url in urls}
    for url, body in zip(itertools.cycle(urls), bodies, strict=False):
        shares[url].append(body)
    await asyncio.gather(
        *(
            post_all(f"{url}/capture_sessions", share, max(1, concurrency // len(urls)))
            for url, share in shares.items()
        )
    )


async def end_to_end(
    shape: Shape,
    urls: list[str],
    pids: dict[str, list[int]],
    redis_url: str,
    sandbox_url: str,
    count: int,
    concurrency: int,
) -> float:
    redis = Redis.from_url(redis_url)
    bodies = [
        build_capture_body(payment_id=f"s{shape.webs}-{i}", amount="10.00", currency="EUR")
        for i in range(count)
    ]
    async with aiohttp.ClientSession() as http:
        await SandboxShopifyClient(sandbox_url, http).register([str(b["gid"]) for b in bodies])
        before = await RedisCounters.read(redis)
        cpu_before = {role: sum(map(cpu_seconds, ids)) for role, ids in pids.items()}
        started = time.perf_counter()
        await post_spread(urls, bodies, concurrency)
        deadline = time.monotonic() + 300
        while await redis.zcard(DUE) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("sessions still unfinished after 300 s")
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - started
        cpu = {role: sum(map(cpu_seconds, ids)) - cpu_before[role] for role, ids in pids.items()}
        used = (await RedisCounters.read(redis)).since(before)
    await redis.aclose()
    rate = count / seconds
    commands = sum(used.commands.values())
    ordered = sorted(used.commands.items(), key=lambda item: -item[1])
    web, worker = cpu["web"] / count * 1000, cpu["worker"] / count * 1000
    print(
        f"  {shape.label:<22} {rate:7.1f} sessions/s  ({seconds:.1f}s)  CPU per session: "
        f"web {web:.2f} ms, worker {worker:.2f} ms, Redis primary {used.cpu / count * 1000:.2f} ms"
    )
    busy = cpu["worker"] / shape.workers / seconds
    print(f"      each worker process busy {busy:.0%} of one core on average")
    print(
        f"      Redis commands per session {commands / count:.1f} (Lua's own calls included): "
        + ", ".join(f"{name} {calls / count:.1f}" for name, calls in ordered if calls >= count / 2)
    )
    return rate


async def intake(url: str, count: int, concurrency: int, label: str) -> None:
    bodies = [
        build_capture_body(payment_id=f"intake-{i}", amount="10.00", currency="EUR")
        for i in range(count)
    ]
    started = time.perf_counter()
    latencies = await post_all(f"{url}/capture_sessions", bodies, concurrency)
    print(describe(label, latencies, time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--intake", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores; load generator, Redis and payhook share them")
    with tempfile.TemporaryDirectory(prefix="payhook-fleet-") as temp:
        state = Path(temp)
        primary = LocalRedis(state / "primary").start()
        replica = LocalRedis(state / "replica", replica_of=primary.port).start()
        sandbox_port = free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        env = child_environment(
            {
                "PAYHOOK_REDIS_URL": primary.url,
                "PAYHOOK_SHOPIFY_GRAPHQL_URL": sandbox_url + GRAPHQL_PATH,
                "PAYHOOK_SHOPIFY_ACCESS_TOKEN": "shpat_bench",
                "PAYHOOK_STATE_DIR": str(state),
                "PAYHOOK_LOG_LEVEL": "WARNING",
                "PAYHOOK_REDIS_MIN_REPLICAS": "1",
            }
        )
        python = sys.executable
        try:
            print(f"Intake: {args.intake} capture sessions, {args.concurrency} clients, 1 web")
            for replicas in ("0", "1"):
                port = free_port()
                web_env = {**env, "PAYHOOK_PORT": str(port), "PAYHOOK_REDIS_MIN_REPLICAS": replicas}
                with process(
                    [python, "-m", "ops", "serve"], web_env, state / f"intake{replicas}.log"
                ):
                    url = f"http://127.0.0.1:{port}"
                    wait_until_up(f"{url}/healthz")
                    label = "no replica wait" if replicas == "0" else "WAIT 1 replica"
                    asyncio.run(intake(url, args.intake, args.concurrency, label))
                asyncio.run(flush(primary.url))
            print(f"End to end: {args.sessions} captures, replica wait on (MIN_REPLICAS=1)")
            with process(
                [python, "-m", "ops", "sandbox", "--port", str(sandbox_port)],
                env,
                state / "sandbox.log",
            ):
                wait_until_up(f"{sandbox_url}/_sandbox/calls")
                rates = []
                for shape in (Shape(1, 1), Shape(2, 2)):
                    with fleet(shape, env, state) as (urls, pids):
                        rates.append(
                            asyncio.run(
                                end_to_end(
                                    shape,
                                    urls,
                                    pids,
                                    primary.url,
                                    sandbox_url,
                                    args.sessions,
                                    args.concurrency,
                                )
                            )
                        )
                    asyncio.run(flush(primary.url))
                print(f"  ratio 2+2 / 1+1: {rates[1] / rates[0]:.2f}")
        finally:
            replica.stop()
            primary.stop()


if __name__ == "__main__":
    main()
