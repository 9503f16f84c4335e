"""The sandbox delivers Shopify's own webhooks to the app, as Shopify does.

A delivery is a POST of the topic's JSON body with Shopify's headers: `X-Shopify-Topic`,
`X-Shopify-Shop-Domain`, `X-Shopify-Webhook-Id` (the same on every retry of one webhook),
`X-Shopify-API-Version`, `X-Shopify-Triggered-At`, `X-Shopify-Event-Id` and
`X-Shopify-Hmac-Sha256`, the base64 HMAC-SHA256 of the body under the app's secret (the
sandbox's `webhook_secret`, which `payhook dev` gives both sides). Any answer but a 2xx, a
refused connection or a timeout is retried after each of `retry_delays`, then given up: a
bounded version of Shopify's own retries.

| method | path | does |
|---|---|---|
| POST | /_sandbox/webhooks | delivers one webhook (below): 202 and the delivery; 200 |
| | | once it ended, with `"wait": true` |
| GET | /_sandbox/webhooks | `{"deliveries": [...]}`, newest last |
| GET | /_sandbox/webhooks/{id} | one delivery; 404 if unknown |

The POST body: `topic` and `shop` (required); for the customer topics `customer` (`id`,
`email`, `phone`), `orders` and `data_request_id`; or `payload`, the whole body to send as
it is. Optional: `url` (default: the app URL the sandbox was started with, plus
`/shopify/webhooks`), `webhook_id`, `retry_delays` (up to 10, each at most 60 s), `wait`,
and `sign` (`"bad"` signs with a wrong secret, `"none"` sends no signature).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

WEBHOOK_PATH = "/shopify/webhooks"
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
MAX_RETRIES = 10
MAX_DELAY_SECONDS = 60.0
TIMEOUT_SECONDS = 5.0
TOPICS = ("app/uninstalled", "shop/redact", "customers/redact", "customers/data_request")


def shop_id(shop: str) -> int:
    """A stable numeric id for a shop domain, as Shopify's bodies carry one."""
    return 10_000_000 + zlib.crc32(shop.encode()) % 90_000_000


def build_body(
    topic: str,
    shop: str,
    *,
    customer: dict[str, Any] | None = None,
    orders: list[int] | None = None,
    data_request_id: int | None = None,
) -> dict[str, Any]:
    """The body Shopify sends for `topic`, with made-up values where Shopify has real ones."""
    if topic == "app/uninstalled":
        # The shop resource; only its domain matters to the app.
        label = shop.split(".", 1)[0]
        return {
            "id": shop_id(shop),
            "name": label,
            "email": f"owner@{label}.example",
            "domain": shop,
            "myshopify_domain": shop,
            "currency": "EUR",
            "updated_at": datetime.now(UTC).isoformat(),
        }
    body: dict[str, Any] = {"shop_id": shop_id(shop), "shop_domain": shop}
    if topic == "shop/redact":
        return body
    body["customer"] = customer or {}
    if topic == "customers/redact":
        body["orders_to_redact"] = orders or []
        return body
    body["orders_requested"] = orders or []
    body["data_request"] = {"id": data_request_id or 1}
    return body


def signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class Attempt:
    at: float
    status: int | None
    error: str | None = None


@dataclass
class Delivery:
    id: str
    webhook_id: str
    topic: str
    shop: str
    url: str
    body: bytes
    headers: dict[str, str]
    retry_delays: tuple[float, ...]
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "delivering"  # then "delivered" or "gave_up"
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "topic": self.topic,
            "shop": self.shop,
            "url": self.url,
            "state": self.state,
            "attempts": [{"at": a.at, "status": a.status, "error": a.error} for a in self.attempts],
            "body": json.loads(self.body),
        }


class WebhookSender:
    """Delivers webhooks in the background, each with its retries."""

    def __init__(self, secret: str | None, app_url: str | None, api_version: str) -> None:
        self._secret = secret
        # The version the sandbox serves, which Shopify names on every webhook it sends.
        self._api_version = api_version
        self._app_url = app_url.rstrip("/") if app_url else None
        self._deliveries: dict[str, Delivery] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def deliveries(self) -> list[Delivery]:
        return list(self._deliveries.values())

    def get(self, delivery_id: str) -> Delivery | None:
        return self._deliveries.get(delivery_id)

    def clear(self) -> None:
        self._deliveries.clear()

    def start(
        self,
        topic: str,
        shop: str,
        body: dict[str, Any],
        *,
        url: str | None = None,
        webhook_id: str | None = None,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        sign: str = "good",
    ) -> Delivery:
        target = url or (self._app_url + WEBHOOK_PATH if self._app_url else None)
        if target is None:
            raise ValueError("no url given, and the sandbox was started without an app URL")
        if sign == "good" and self._secret is None:
            raise ValueError("the sandbox has no webhook secret to sign with")
        raw = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-API-Version": self._api_version,
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
            "X-Shopify-Event-Id": str(uuid.uuid4()),
        }
        if sign == "good":
            headers["X-Shopify-Hmac-Sha256"] = signature(self._secret or "", raw)
        elif sign == "bad":
            headers["X-Shopify-Hmac-Sha256"] = signature("not-the-app-secret", raw)
        delivery = Delivery(
            id=str(uuid.uuid4()),
            webhook_id=headers["X-Shopify-Webhook-Id"],
            topic=topic,
            shop=shop,
            url=target,
            body=raw,
            headers=headers,
            retry_delays=retry_delays,
        )
        self._deliveries[delivery.id] = delivery
        task = asyncio.create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    async def _deliver(self, delivery: Delivery) -> None:
        assert self._http is not None
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        try:
            for delay in (0.0, *delivery.retry_delays):
                if delay:
                    await asyncio.sleep(delay)
                attempt = Attempt(at=time.time(), status=None)
                delivery.attempts.append(attempt)
                try:
                    async with self._http.post(
                        delivery.url, data=delivery.body, headers=delivery.headers, timeout=timeout
                    ) as answer:
                        await answer.read()
                        attempt.status = answer.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    attempt.error = type(exc).__name__
                    continue
                if 200 <= answer.status < 300:
                    delivery.state = "delivered"
                    return
            delivery.state = "gave_up"
        finally:
            if delivery.state == "delivering":
                delivery.state = "gave_up"
            delivery.ended.set()


WEBHOOK_SENDER = web.AppKey("webhook_sender", WebhookSender)


def add_webhook_routes(
    app: web.Application, secret: str | None, app_url: str | None, api_version: str
) -> None:
    sender = WebhookSender(secret, app_url, api_version)
    app[WEBHOOK_SENDER] = sender

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        await sender.open()
        yield
        await sender.close()

    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/_sandbox/webhooks", deliver)
    app.router.add_get("/_sandbox/webhooks", list_deliveries)
    app.router.add_get("/_sandbox/webhooks/{delivery_id}", get_delivery)


def _refused(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _delays(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return DEFAULT_RETRY_DELAYS
    if not isinstance(value, list) or len(value) > MAX_RETRIES:
        return None
    if not all(
        isinstance(d, int | float) and not isinstance(d, bool) and 0 <= d <= MAX_DELAY_SECONDS
        for d in value
    ):
        return None
    return tuple(float(d) for d in value)


async def deliver(request: web.Request) -> web.Response:
    try:
        wanted = await request.json()
    except ValueError:
        wanted = None
    if not isinstance(wanted, dict):
        return _refused("expected a JSON object")
    topic, shop = wanted.get("topic"), wanted.get("shop")
    if not isinstance(topic, str) or not topic or not isinstance(shop, str) or not shop:
        return _refused(f"topic (one of {', '.join(TOPICS)}, or any other) and shop are required")
    delays = _delays(wanted.get("retry_delays"))
    if delays is None:
        return _refused(f"retry_delays: at most {MAX_RETRIES} seconds, each 0-60")
    sign = wanted.get("sign", "good")
    if sign not in ("good", "bad", "none"):
        return _refused('sign: "good", "bad" or "none"')
    body = wanted.get("payload")
    if body is None:
        body = build_body(
            topic,
            shop,
            customer=wanted.get("customer") if isinstance(wanted.get("customer"), dict) else None,
            orders=[o for o in wanted.get("orders") or [] if isinstance(o, int)],
            data_request_id=wanted.get("data_request_id")
            if isinstance(wanted.get("data_request_id"), int)
            else None,
        )
    if not isinstance(body, dict):
        return _refused("payload must be a JSON object")
    url, webhook_id = wanted.get("url"), wanted.get("webhook_id")
    try:
        delivery = request.app[WEBHOOK_SENDER].start(
            topic,
            shop,
            body,
            url=url if isinstance(url, str) else None,
            webhook_id=webhook_id if isinstance(webhook_id, str) else None,
            retry_delays=delays,
            sign=sign,
        )
    except ValueError as exc:
        return _refused(str(exc))
    if wanted.get("wait") is True:
        await delivery.ended.wait()
        return web.json_response({"delivery": delivery.as_json()})
    return web.json_response({"delivery": delivery.as_json()}, status=202)


async def list_deliveries(request: web.Request) -> web.Response:
    found = request.app[WEBHOOK_SENDER].deliveries()
    return web.json_response({"deliveries": [d.as_json() for d in found]})


async def get_delivery(request: web.Request) -> web.Response:
    delivery = request.app[WEBHOOK_SENDER].get(request.match_info["delivery_id"])
    if delivery is None:
        return web.json_response({"error": "no such delivery"}, status=404)
    return web.json_response(delivery.as_json())
