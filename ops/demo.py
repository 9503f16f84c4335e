"""`payhook demo N`: play Shopify, send N capture sessions, watch them reach Shopify.

Every tenth session carries a `.51` amount, which the simulator PSP declines, so the run
shows both `captureSessionResolve` and `captureSessionReject` arriving at the sandbox.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass

import aiohttp

from sandbox.client import SandboxShopifyClient
from sandbox.shopify_side import send_capture_session

SHOP = "payhook-dev.myshopify.com"
FINAL = {"captureSessionResolve": "resolved", "captureSessionReject": "rejected"}


@dataclass(frozen=True)
class DemoResult:
    sent: int
    resolved: int
    rejected: int
    send_seconds: float
    total_seconds: float

    @property
    def complete(self) -> bool:
        return self.resolved + self.rejected == self.sent


def _bar(label: str, done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stdout.write(
        f"\r{label:<9} [{'█' * filled}{'·' * (width - filled)}] {done}/{total} {rate:7.1f}/s"
    )
    sys.stdout.flush()


def _amount(index: int) -> str:
    if index % 10 == 9:
        return f"{random.randint(1, 99)}.51"
    cents = random.choice([c for c in range(100) if c not in (51, 52, 53, 54)])
    return f"{random.randint(1, 499)}.{cents:02d}"


async def run_demo(
    app_url: str, sandbox_url: str, count: int, *, concurrency: int = 16, patience: float = 120.0
) -> DemoResult:
    started = time.perf_counter()
    gids: set[str] = set()
    async with aiohttp.ClientSession() as http:
        sandbox = SandboxShopifyClient(sandbox_url, http)
        limit = asyncio.Semaphore(concurrency)

        async def send(index: int) -> None:
            async with limit:
                sent = await send_capture_session(
                    http,
                    app_url=app_url,
                    sandbox=sandbox,
                    shop=SHOP,
                    payment_id=f"demo-pay-{index}",
                    amount=_amount(index),
                    currency="EUR",
                )
            if sent.status == 201:
                gids.add(sent.gid)
            _bar("sent", len(gids), count, started)

        await asyncio.gather(*(send(i) for i in range(count)))
        send_seconds = time.perf_counter() - started
        print()
        outcomes: dict[str, str] = {}
        deadline = time.monotonic() + patience
        while len(outcomes) < len(gids) and time.monotonic() < deadline:
            for call in await sandbox.calls():
                if call["gid"] in gids and call["applied"] and call["mutation"] in FINAL:
                    outcomes[call["gid"]] = FINAL[call["mutation"]]
            _bar("reported", len(outcomes), len(gids), started)
            await asyncio.sleep(0.2)
    total = time.perf_counter() - started
    print()
    values = list(outcomes.values())
    result = DemoResult(
        len(gids), values.count("resolved"), values.count("rejected"), send_seconds, total
    )
    print(
        f"{result.sent} sessions answered 201 in {send_seconds:.2f}s "
        f"({result.sent / max(send_seconds, 1e-9):.0f}/s); "
        f"{result.resolved} resolved, {result.rejected} rejected at Shopify in {total:.2f}s "
        f"({len(values) / max(total, 1e-9):.1f} sessions/s end to end)"
    )
    if not result.complete:
        print(
            f"{result.sent - len(values)} sessions not reported yet: see `payhook sessions list`",
            file=sys.stderr,
        )
    return result
