"""`payhook shops configure` and `payhook shops list`: each shop's payments app onboarding.

`configure` stores the ask as the install does (`shops.onboarding`) and sends it at once
through the workers' Shopify gateway, printing what Shopify said. When Shopify is away it
stays queued, and the workers' sweeps retry it on the Shopify ladder; when a worker holds it
already, this waits a little for that worker's answer. Exit codes: 0 configured, 1 refused
or failed, 3 still to be sent (retrying).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from config import Settings
from config.shop_domains import is_shop_domain
from ops.inspect import when
from redisio.connect import tool_client
from shops.onboarding import Onboarding, OnboardingState, OnboardingStore, shop_statuses
from shops.tokens import ShopTokens

# How long `configure` waits for a worker that took the ask before it could.
WAIT_FOR_WORKER_SECONDS = 15.0
EXIT_CODES = {
    OnboardingState.CONFIGURED: 0,
    OnboardingState.REFUSED: 1,
    OnboardingState.FAILED: 1,
    OnboardingState.QUEUED: 3,
}


def _flag(ready: bool | None) -> str:
    return "-" if ready is None else ("yes" if ready else "no")


def describe(record: Onboarding) -> list[str]:
    """The onboarding as lines: the last ask and its result, then Shopify's own words."""
    asked = f"ready: {_flag(record.ready)}, externalHandle: {record.handle or '-'}"
    at = when(record.at or record.asked_at)
    lines = [
        f"{record.state.value} {at}: paymentsAppConfigure({asked}) asked by "
        f"{record.asked_by}, {record.attempts} attempt(s)"
    ]
    for error in record.user_errors:
        where = ".".join(error.field or []) or "-"
        lines.append(f"userError {where}: {error.message}")
    if record.last_error and record.state is not OnboardingState.CONFIGURED:
        lines.append(f"last error: {record.last_error}")
    return lines


async def configure_shop(settings: Settings, shop: str, *, handle: str | None, ready: bool) -> int:
    from workers.onboarding import Onboarder
    from workers.shopify.gateway import GqlShopifyGateway

    if not is_shop_domain(shop, settings.shop_domain_suffixes):
        print(f"payhook shops configure: {shop!r} is not a Shopify shop domain", file=sys.stderr)
        return 2
    redis = tool_client(settings)
    tokens = ShopTokens.from_settings(redis, settings)
    gateway = GqlShopifyGateway.from_settings(settings, tokens, connections=1)
    try:
        store = OnboardingStore(redis)
        if handle is None:
            before = await store.get(shop)
            handle = before.handle if before is not None else shop
        request = await store.ask(shop, handle=handle, ready=ready, by="operator", now=time.time())
        await Onboarder.from_settings(settings, store, gateway, tokens).run_one(shop)
        record = await _answered(store, shop, request)
    finally:
        await gateway.close()
        await redis.aclose()
    if record is None:
        print(f"payhook shops configure: {shop} was removed meanwhile", file=sys.stderr)
        return 1
    for line in [shop, *describe(record)]:
        print(line if line == shop else f"  {line}")
    if record.state is OnboardingState.QUEUED:
        print("  (the workers retry it on the Shopify ladder; `payhook shops list` shows it)")
    return EXIT_CODES[record.state]


async def _answered(store: OnboardingStore, shop: str, request: int) -> Onboarding | None:
    """The record once this ask has an answer (or a newer ask replaced it), or as it is
    after the wait: a worker that took it first answers within its Shopify timeout."""
    deadline = time.monotonic() + WAIT_FOR_WORKER_SECONDS
    while True:
        record = await store.get(shop)
        if record is None or record.request != request or record.attempts:
            return record
        if time.monotonic() > deadline:
            return record
        await asyncio.sleep(0.2)


async def list_shops(settings: Settings, *, as_json: bool) -> int:
    redis = tool_client(settings)
    try:
        statuses = await shop_statuses(redis)
    finally:
        await redis.aclose()
    if as_json:
        json.dump([status.model_dump(mode="json") for status in statuses], sys.stdout, indent=2)
        print()
        return 0
    print(f"{'SHOP':<40} {'TOKEN':<10} {'READY':<5} {'HANDLE':<32} ONBOARDING")
    for status in statuses:
        record = status.onboarding
        ready = _flag(record.accepted_ready) if record else "-"
        handle = (record.accepted_handle or "-") if record else "-"
        state = record.state.value if record else "never configured"
        print(f"{status.shop:<40} {status.token:<10} {ready:<5} {handle:<32} {state}")
        for line in describe(record) if record else []:
            print(f"    {line}")
    return 0
