"""Load generators for the benchmark suite, each reporting throughput and latency percentiles.

- `wrk_run`: wrk (C, one thread per core it is given) with `bench/wrk/capture.lua`, which
  sends capture sessions whose ids no other request of the run uses: closed loop, N
  connections, for a fixed time.
- `closed_loop`: the same in Python (aiohttp), the fallback where wrk is not installed.
- `open_loop`: a fixed offered rate in Python: request i is due at start + i / rate whether or
  not earlier ones were answered, and its latency counts from when it was due, so a stalled
  server shows in the percentiles instead of slowing the generator down.

The suite runs every generator against the bare baseline in the same run, which shows what
the generator itself can deliver: a server measured well below that is the bottleneck.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
WRK_SCRIPT = ROOT / "bench" / "wrk" / "capture.lua"
SHOP = "bench-shop.myshopify.com"
HEADERS = {
    "Content-Type": "application/json",
    "Shopify-Shop-Domain": SHOP,
    "Shopify-Request-Id": "bench",
    "Shopify-Api-Version": "2025-10",
}


@dataclass(frozen=True)
class Load:
    """What one load run measured; latencies in milliseconds."""

    generator: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    offered_per_second: float | None = None

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": round(self.per_second, 1)}


def percentile(ordered: list[float], fraction: float) -> float:
    """The value at `fraction` (0..1) of an ascending list, nearest rank; NaN when empty."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def summarize(
    generator: str,
    latencies: list[float],
    seconds: float,
    errors: int,
    offered: float | None = None,
) -> Load:
    ordered = sorted(latencies)
    return Load(
        generator=generator,
        requests=len(ordered),
        seconds=seconds,
        errors=errors,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        p999_ms=percentile(ordered, 0.999) * 1000,
        max_ms=(ordered[-1] if ordered else float("nan")) * 1000,
        offered_per_second=offered,
    )


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def wrk_run(
    url: str,
    *,
    connections: int,
    seconds: float,
    tag: str,
    cores: str | None,
    pause_ms: int | None = None,
) -> Load:
    """wrk against `url`/capture_sessions; `cores` pins it (taskset), e.g. "1"; with
    `pause_ms`, each connection pauses that long between requests (a paced run)."""
    wrk = wrk_binary()
    if wrk is None:
        raise RuntimeError("wrk is not installed (make wrk)")
    threads = 1 if cores is None else max(1, len(cores.split(",")))
    args = [
        wrk,
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    if cores is not None:
        args = ["taskset", "-c", cores, *args]
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        env={
            **os.environ,
            "RUN_TAG": tag,
            **({"PAUSE_MS": str(pause_ms)} if pause_ms is not None else {}),
        },
        check=True,
    )
    line = next(
        (ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")),
        None,
    )
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    figures = json.loads(line.removeprefix("WRK_JSON "))
    return Load(
        generator="wrk" if pause_ms is None else f"wrk, {connections} connections paced",
        requests=int(figures["requests"]),
        seconds=float(figures["seconds"]),
        errors=int(figures["errors"]),
        p50_ms=float(figures["p50_ms"]),
        p99_ms=float(figures["p99_ms"]),
        p999_ms=float(figures["p999_ms"]),
        max_ms=float(figures["max_ms"]),
    )


def capture_body(session_id: str) -> bytes:
    return json.dumps(
        {
            "id": session_id,
            "gid": f"gid://shopify/CaptureSession/{session_id}",
            "payment_id": f"p{session_id}",
            "amount": "10.00",
            "currency": "EUR",
            "merchant_locale": "en",
            "proposed_at": "2026-01-01T00:00:00Z",
            "test": True,
        }
    ).encode()


async def closed_loop(url: str, *, connections: int, seconds: float, tag: str) -> Load:
    """`connections` clients POSTing back to back for `seconds`."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        deadline = began + seconds

        async def client() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                body = capture_body(f"{tag}-{counter}")
                started = time.perf_counter()
                try:
                    async with http.post(
                        f"{url}/capture_sessions", data=body, headers=HEADERS
                    ) as answer:
                        await answer.read()
                        ok = answer.status == 201
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return summarize("python closed loop", latencies, elapsed, errors)


async def open_loop(
    url: str,
    *,
    rate: float,
    seconds: float,
    ids: list[str] | None = None,
    tag: str = "open",
    sent_at: dict[str, float] | None = None,
) -> Load:
    """POST at `rate` per second for `seconds` (or until `ids` run out); latency from when
    each request was due. `sent_at`, if given, gets each id's due time (epoch seconds)."""
    count = len(ids) if ids is not None else int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=1024)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        wall = time.time()

        async def one(index: int, due: float) -> None:
            nonlocal errors
            session_id = ids[index] if ids is not None else f"{tag}-{index}"
            if sent_at is not None:
                sent_at[session_id] = wall + (due - began)
            try:
                async with http.post(
                    f"{url}/capture_sessions", data=capture_body(session_id), headers=HEADERS
                ) as answer:
                    await answer.read()
                    ok = answer.status == 201
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - due)
            else:
                errors += 1

        tasks: list[asyncio.Task[None]] = []
        for index in range(count):
            due = began + index / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return summarize("python open loop", latencies, elapsed, errors, offered=rate)
