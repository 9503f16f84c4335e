"""`payhook webhooks`: Shopify's webhooks as payhook took them in and processed them.

```sh
payhook webhooks list [--state failed] [--shop S] [--limit 50] [--json]
payhook webhooks show WEBHOOK_ID [--json]     # record and events (no customer identifiers)
payhook webhooks replay WEBHOOK_ID... [--dry-run] [--again]  # --again: a done uninstall/redact
payhook webhooks report WEBHOOK_ID            # a customers/data_request's report, as JSON
```
"""

from __future__ import annotations

import json
import sys
import time

from config import Settings
from ops.inspect import print_events, when
from redisio.connect import tool_client
from shops.webhook_store import WebhookStore, replay_webhooks
from shops.webhooks import HookState
from transport.celery_app import create_celery
from transport.messages import CeleryHandoff

LISTED_AT_MOST = 10_000


async def list_webhooks(
    settings: Settings, *, state: str | None, shop: str | None, limit: int, as_json: bool
) -> int:
    redis = tool_client(settings)
    try:
        store = WebhookStore(redis, retention_seconds=settings.retention_seconds)
        wanted = HookState(state) if state else None
        every = await (
            store.failed(LISTED_AT_MOST)
            if wanted is HookState.FAILED
            else store.recent(LISTED_AT_MOST)
        )
    finally:
        await redis.aclose()
    found = [
        w
        for w in every
        if (wanted is None or w.state is wanted) and (shop is None or w.shop == shop)
    ][:limit]
    if as_json:
        json.dump([w.shown() for w in found], sys.stdout, indent=2)
        print()
        return 0
    print(f"{'ID':<38} {'TOPIC':<23} {'STATE':<9} {'TRIES':>5}  {'RECEIVED':<19}  SHOP")
    for w in found:
        print(
            f"{w.id:<38} {w.topic.value:<23} {w.state.value:<9} {w.attempts:>5}  "
            f"{when(w.received_at):<19}  {w.shop}"
        )
        if w.state is HookState.FAILED and w.last_error:
            print(f"    last error: {w.last_error}")
    return 0


async def show_webhook(settings: Settings, webhook_id: str, *, as_json: bool) -> int:
    redis = tool_client(settings)
    try:
        store = WebhookStore(redis)
        webhook = await store.get(webhook_id)
        events = await store.events(webhook_id) if webhook else []
    finally:
        await redis.aclose()
    if webhook is None:
        print(f"no webhook {webhook_id}", file=sys.stderr)
        return 1
    if as_json:
        document = {
            "webhook": webhook.shown(),
            "events": [e.model_dump(mode="json", exclude_none=True) for e in events],
        }
        json.dump(document, sys.stdout, indent=2)
        print()
        return 0
    for key, value in webhook.shown().items():
        if value is not None:
            print(f"{key:>26}: {value}")
    print("\nevents:")
    print_events(events)
    return 0


async def replay(
    settings: Settings, webhook_ids: list[str], *, dry_run: bool, again: bool = False
) -> int:
    redis = tool_client(settings)
    try:
        store = WebhookStore(redis, CeleryHandoff(create_celery(settings)))
        results = await replay_webhooks(
            store,
            webhook_ids,
            lease_seconds=settings.lease_seconds,
            now=time.time(),
            actor="payhook webhooks replay",
            dry_run=dry_run,
            again=again,
        )
    finally:
        await redis.aclose()
    for result in results:
        print(f"{result.webhook_id}  {result.note}")
    return 0 if all(r.replayed for r in results) else 1


async def report(settings: Settings, webhook_id: str) -> int:
    redis = tool_client(settings)
    try:
        found = await WebhookStore(redis).report(webhook_id)
    finally:
        await redis.aclose()
    if found is None:
        print(
            f"no report for webhook {webhook_id}: not a customers/data_request, not processed "
            "yet, or past the retention period",
            file=sys.stderr,
        )
        return 1
    json.dump(found, sys.stdout, indent=2)
    print()
    return 0
