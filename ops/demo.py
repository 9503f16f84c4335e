"""`payhook demo N`: play Shopify and its buyers through N orders, and watch every session
reach Shopify.

Each order is an offsite payment (the sandbox buyer approves it on the simulator's page, and
follows the redirects back through payhook's return route to Shopify's thank-you page), then
a capture of the whole amount; every fourth order is then partly refunded, every tenth is
voided instead of captured, and every seventh tries to capture more than was authorized
(which the ledger refuses, so Shopify sees a reject with the reason). Amounts avoid the
simulator's magic endings, so nothing here is a simulated PSP failure.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import aiohttp

from sandbox.checkout import checkout_url
from sandbox.client import SandboxShopifyClient
from sandbox.shopify_side import new_session_id

SHOP = "payhook-dev.myshopify.com"
FINAL = ("Resolve", "Reject", "Pending")


@dataclass(frozen=True)
class DemoResult:
    orders: int
    sessions: int
    reported: Counter[str]
    seconds: float
    # Buyers whose browser, after paying, ended on Shopify's thank-you page.
    returned: int = 0

    @property
    def complete(self) -> bool:
        return sum(self.reported.values()) == self.sessions and self.returned == self.orders


def _bar(label: str, done: int, total: int, started: float) -> None:
    width = 30
    filled = width * done // max(total, 1)
    rate = done / max(time.perf_counter() - started, 1e-9)
    sys.stdout.write(
        f"\r{label:<9} [{'█' * filled}{'·' * (width - filled)}] {done}/{total} {rate:7.1f}/s"
    )
    sys.stdout.flush()


def _body(session_kind: str, **fields: object) -> dict[str, object]:
    session_id = new_session_id()
    return {
        "id": session_id,
        "gid": f"gid://shopify/{session_kind.capitalize()}Session/{session_id}",
        "merchant_locale": "en",
        "proposed_at": "2026-11-23T10:00:00Z",
        "test": True,
        **fields,
    }


class Demo:
    def __init__(
        self, http: aiohttp.ClientSession, app_url: str, sandbox: SandboxShopifyClient
    ) -> None:
        self.http, self.app_url, self.sandbox = http, app_url, sandbox
        self.gids: list[str] = []
        self.returned = 0

    async def send(self, kind: str, body: dict[str, object]) -> dict[str, object]:
        await self.sandbox.register([str(body["gid"])])
        self.gids.append(str(body["gid"]))
        url = f"{self.app_url}/{kind}_sessions"
        async with self.http.post(
            url,
            json=body,
            headers={
                "Shopify-Shop-Domain": SHOP,
                "Shopify-Request-Id": new_session_id(),
                "Shopify-Api-Version": "2025-10",
            },
        ) as answer:
            answer.raise_for_status()
            document: dict[str, object] = await answer.json()
            return document

    async def settled(self, gid: str, patience: float = 60.0) -> str | None:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            for call in await self.sandbox.calls(gid=gid):
                if call["applied"]:
                    return str(call["mutation"])
            await asyncio.sleep(0.1)
        return None

    async def order(self, index: int) -> None:
        amount = Decimal(random.randint(10, 400)) + Decimal(random.choice(range(0, 50))) / 100
        payment_id = new_session_id()
        payment = _body(
            "payment",
            id=payment_id,
            gid=f"gid://shopify/PaymentSession/{payment_id}",
            group=f"g{index}",
            session_id=f"checkout-{index}",
            amount=str(amount),
            currency="EUR",
            kind="authorization",
            payment_method={"type": "offsite", "data": {}},
            cancel_url=checkout_url(self.sandbox.base_url, str(payment_id), "cancel"),
            customer=None,
        )
        answer = await self.send("payment", payment)
        # The buyer: the PSP's page, back through payhook, on to where Shopify said.
        async with self.http.get(str(answer["redirect_url"])) as page:
            await page.read()
            thank_you = checkout_url(self.sandbox.base_url, str(payment_id), "thank_you")
            if page.status == 200 and str(page.url) == thank_you:
                self.returned += 1
        if await self.settled(str(payment["gid"])) != "paymentSessionResolve":
            return
        pid = payment["id"]
        if index % 10 == 9:
            await self.send("void", _body("void", payment_id=pid))
            return
        asked = amount + 1 if index % 7 == 6 else amount
        capture = _body("capture", payment_id=pid, amount=str(asked), currency="EUR")
        await self.send("capture", capture)
        if index % 4 == 1 and await self.settled(str(capture["gid"])) == "captureSessionResolve":
            half = (amount / 2).quantize(Decimal("1"))  # whole euros: never a magic amount
            await self.send(
                "refund", _body("refund", payment_id=pid, amount=str(half), currency="EUR")
            )


async def run_demo(
    app_url: str, sandbox_url: str, count: int, *, concurrency: int = 16, patience: float = 120.0
) -> DemoResult:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        sandbox = SandboxShopifyClient(sandbox_url, http)
        await sandbox.buyer("approved", change=True)
        demo = Demo(http, app_url, sandbox)
        limit = asyncio.Semaphore(concurrency)
        done = 0

        async def order(index: int) -> None:
            nonlocal done
            async with limit:
                await demo.order(index)
            done += 1
            _bar("orders", done, count, started)

        await asyncio.gather(*(order(i) for i in range(count)))
        print()
        reported: Counter[str] = Counter()
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            finals = {
                c["gid"]: c["mutation"]
                for c in await sandbox.calls()
                if c["applied"] and c["gid"] in set(demo.gids)
            }
            reported = Counter(finals.values())
            _bar("reported", len(finals), len(demo.gids), started)
            if len(finals) == len(demo.gids):
                break
            await asyncio.sleep(0.2)
    seconds = time.perf_counter() - started
    print()
    result = DemoResult(count, len(demo.gids), reported, seconds, demo.returned)
    summary = ", ".join(f"{n} {name}" for name, n in sorted(reported.items()))
    print(
        f"{count} orders, {result.sessions} sessions reported to Shopify in {seconds:.2f}s "
        f"({sum(reported.values()) / max(seconds, 1e-9):.1f} sessions/s): {summary}"
    )
    print(f"{demo.returned} of {count} buyers back on Shopify's thank-you page after paying")
    if not result.complete:
        print(
            f"{result.sessions - sum(reported.values())} sessions not reported yet: "
            "see `payhook sessions list`",
            file=sys.stderr,
        )
    return result
