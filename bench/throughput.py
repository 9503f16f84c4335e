"""Throughput benchmark: session intake and end-to-end settlement, each against a baseline
measured in the same run on the same machine.

    python -m bench.throughput [--sessions 2000] [--concurrency 32]

1. Intake: N capture sessions POSTed to `payhook serve` (validate, persist in Redis,
   enqueue) versus the same requests to a bare aiohttp server that only answers 201.
2. End to end: N sessions through web → Celery worker → simulator PSP → sandbox Shopify,
   versus the floor of sending the same N resolve mutations straight to the sandbox.
Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH
from sandbox.shopify_side import build_capture_body
from sessions.keys import DUE
from workers.shopify import mutations
from workers.shopify.gateway import GqlShopifyGateway

SHOP = "bench-shop.myshopify.com"
ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as sink:
        child = subprocess.Popen(args, env=env, cwd=ROOT, stdout=sink, stderr=sink)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


def wait_until_up(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def post_all(url: str, bodies: list[dict[str, object]], concurrency: int) -> list[float]:
    """POST every body; returns per-request latencies in seconds."""
    latencies: list[float] = []
    queue = list(reversed(bodies))
    headers = {
        "Shopify-Shop-Domain": SHOP,
        "Shopify-Request-Id": "bench",
        "Shopify-Api-Version": "2025-10",
    }
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                async with http.post(url, json=body, headers=headers) as answer:
                    await answer.read()
                    if answer.status != 201:
                        raise RuntimeError(f"{url} answered {answer.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def describe(label: str, latencies: list[float], seconds: float) -> str:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return (
        f"  {label:<28} {len(latencies) / seconds:8.0f} req/s   "
        f"p50 {statistics.median(ordered) * 1000:6.2f} ms   p99 {p99 * 1000:6.2f} ms"
    )


async def intake(app_url: str, baseline_url: str, count: int, concurrency: int) -> None:
    print(f"Intake: {count} capture sessions, {concurrency} concurrent clients")
    for label, url in (("baseline (bare 201)", baseline_url), ("payhook serve", app_url)):
        bodies = [
            build_capture_body(payment_id=f"p{i}", amount="10.00", currency="EUR")
            for i in range(count)
        ]
        started = time.perf_counter()
        latencies = await post_all(f"{url}/capture_sessions", bodies, concurrency)
        print(describe(label, latencies, time.perf_counter() - started))


async def end_to_end(
    app_url: str, sandbox_url: str, redis_url: str, count: int, concurrency: int
) -> None:
    print(f"End to end: {count} sessions, web → worker (2 processes) → PSP → Shopify")
    bodies = [
        build_capture_body(payment_id=f"e{i}", amount="10.00", currency="EUR") for i in range(count)
    ]
    redis = Redis.from_url(redis_url)
    async with aiohttp.ClientSession() as http:
        sandbox = SandboxShopifyClient(sandbox_url, http)
        await sandbox.register([str(b["gid"]) for b in bodies])
        floor_gids = [f"gid://shopify/CaptureSession/floor-{i}" for i in range(count)]
        await sandbox.register(floor_gids)

        class Tokens:
            async def token_for(self, shop: str) -> str | None:
                return "shpat_bench"

            def opened(self, shop: str, stored: str | None) -> str | None:
                return "shpat_bench"

        gateway = GqlShopifyGateway(
            url_template=sandbox_url + GRAPHQL_PATH,
            api_version="2025-10",
            tokens=Tokens(),
            timeout_seconds=10,
        )
        started = time.perf_counter()
        pending = list(floor_gids)

        async def resolver() -> None:
            while pending:
                await gateway.send(SHOP, mutations.resolve("capture", pending.pop()))

        await asyncio.gather(*(resolver() for _ in range(2)))
        floor = time.perf_counter() - started
        await gateway.close()
        print(f"  {'floor (2 resolvers direct)':<28} {count / floor:8.1f} sessions/s")

        started = time.perf_counter()
        await post_all(f"{app_url}/capture_sessions", bodies, concurrency)
        deadline = time.monotonic() + 300
        while await redis.zcard(DUE) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("sessions still unfinished after 300 s")
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - started
        resolved = len(await sandbox.calls(mutation="captureSessionResolve")) - count
        print(
            f"  {'payhook':<28} {count / seconds:8.1f} sessions/s  "
            f"({resolved} resolves at Shopify, {seconds:.1f}s)"
        )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--e2e-sessions", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="payhook-bench-") as temp:
        state = Path(temp)
        redis = LocalRedis(state / "redis").start()
        app_port, baseline_port, sandbox_port = free_port(), free_port(), free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        env = child_environment(
            {
                "PAYHOOK_REDIS_URL": redis.url,
                "PAYHOOK_PORT": str(app_port),
                "PAYHOOK_SHOPIFY_GRAPHQL_URL": sandbox_url + GRAPHQL_PATH,
                "PAYHOOK_SHOPIFY_ACCESS_TOKEN": "shpat_bench",
                "PAYHOOK_STATE_DIR": str(state),
                "PAYHOOK_LOG_LEVEL": "WARNING",
            }
        )
        python = sys.executable
        try:
            with (
                process(
                    [python, "-m", "bench.baseline_app", str(baseline_port)],
                    env,
                    state / "baseline.log",
                ),
                process([python, "-m", "ops", "serve"], env, state / "web.log"),
            ):
                app_url = f"http://127.0.0.1:{app_port}"
                baseline_url = f"http://127.0.0.1:{baseline_port}"
                wait_until_up(f"{app_url}/healthz")
                time.sleep(0.5)
                asyncio.run(intake(app_url, baseline_url, args.sessions, args.concurrency))
                # Intake left its sessions queued with no worker; start from a clean database.
                asyncio.run(flush(redis.url))
                with (
                    process(
                        [python, "-m", "ops", "sandbox", "--port", str(sandbox_port)],
                        env,
                        state / "sandbox.log",
                    ),
                    process(
                        [python, "-m", "ops", "worker", "--concurrency", "2"],
                        env,
                        state / "worker.log",
                    ),
                ):
                    wait_until_up(f"{sandbox_url}/_sandbox/calls")
                    time.sleep(3)  # worker start-up is not what is measured
                    asyncio.run(
                        end_to_end(
                            app_url, sandbox_url, redis.url, args.e2e_sessions, args.concurrency
                        )
                    )
        finally:
            redis.stop()


async def flush(url: str) -> None:
    redis = Redis.from_url(url)
    await redis.flushdb()
    await redis.aclose()


if __name__ == "__main__":
    main()
