"""`POST /shopify/webhooks` through the real app on a real redis-server: only a body signed
with the app's secret (or the previous one, mid-rotation) gets in, it is stored and queued
once per webhook id, and everything refused changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis
from shops.tokens import ShopTokens, TokenCipher
from shops.webhook_store import WebhookStore
from shops.webhooks import WEBHOOK_DUE, webhook_key
from tests.factories import SHOP, capture_body, shopify_headers
from transport.messages import WEBHOOK_QUEUE
from webhook.app import create_app

DB = 11
SECRET = "shpss_current_app_secret_0123456789"
PREVIOUS = "shpss_previous_app_secret_9876543210"
TOKEN_KEY = Fernet.generate_key().decode()
ADMIN_TOKEN = "webhook-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_api_secret=SECRET,
        shopify_api_secret_previous=PREVIOUS,
        shopify_access_token="shpat_webhook_tests",
        max_body_bytes=4096,
        token_keys=TOKEN_KEY,
        admin_token=ADMIN_TOKEN,
    )


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def redact_body(shop: str = SHOP) -> dict[str, Any]:
    return {
        "shop_id": 954889,
        "shop_domain": shop,
        "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
        "orders_to_redact": [299938, 280263],
    }


def webhook(
    body: dict[str, Any] | bytes,
    topic: str = "customers/redact",
    *,
    secret: str | None = SECRET,
    webhook_id: str | None = None,
    **headers: str,
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-Triggered-At": "2026-01-01T00:00:00.123456789Z",
    }
    if secret is not None:
        sent["X-Shopify-Hmac-Sha256"] = sign(raw, secret)
    sent.update(headers)
    return raw, sent


def stored_keys(inspect: redis.Redis) -> list[str]:
    return sorted(str(k) for k in inspect.keys("payhook*"))


async def post(client: TestClient[Any, Any], raw: bytes, headers: dict[str, str]) -> Any:
    answer = await client.post("/shopify/webhooks", data=raw, headers=headers)
    return answer.status, await answer.json()


@pytest.mark.parametrize("secret", [SECRET, PREVIOUS], ids=["current", "previous"])
async def test_a_signed_webhook_is_stored_due_and_queued(
    client: TestClient[Any, Any], inspect: redis.Redis, secret: str
) -> None:
    raw, headers = webhook(redact_body(), secret=secret)
    assert await post(client, raw, headers) == (200, {})
    webhook_id = headers["X-Shopify-Webhook-Id"]
    record = inspect.hgetall(webhook_key(webhook_id))
    assert (record["topic"], record["shop"], record["state"]) == (
        "customers/redact",
        SHOP,
        "received",
    )
    assert json.loads(record["payload"])["email"] == "john@example.com"
    assert inspect.zscore(WEBHOOK_DUE, webhook_id) is not None
    message = json.loads(inspect.lindex(WEBHOOK_QUEUE, 0) or "{}")
    assert message["headers"]["task"] == "payhook.shopify_webhook"
    assert json.loads(base64.b64decode(message["body"]))[0] == [webhook_id]


async def test_the_same_webhook_id_twice_is_one_webhook(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    raw, headers = webhook(redact_body())
    assert await post(client, raw, headers) == (200, {})
    before = stored_keys(inspect), inspect.hgetall(webhook_key(headers["X-Shopify-Webhook-Id"]))
    assert await post(client, raw, headers) == (200, {})
    after = stored_keys(inspect), inspect.hgetall(webhook_key(headers["X-Shopify-Webhook-Id"]))
    assert before == after
    assert inspect.llen(WEBHOOK_QUEUE) == 1


async def test_a_webhook_id_seen_with_another_body_is_a_conflict(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    raw, headers = webhook(redact_body())
    assert (await post(client, raw, headers))[0] == 200
    other = {**redact_body(), "orders_to_redact": [1]}
    raw, headers = webhook(other, webhook_id=headers["X-Shopify-Webhook-Id"])
    status, body = await post(client, raw, headers)
    assert (status, body["error"]["code"]) == (409, "idempotency_conflict")
    assert inspect.llen(WEBHOOK_QUEUE) == 1


def _signed_with(secret: str | None) -> tuple[bytes, dict[str, str]]:
    return webhook(redact_body(), secret=secret)


REFUSED = [
    ("unsigned", lambda: _signed_with(None), 401, "missing_signature"),
    ("another secret", lambda: _signed_with("shpss_someone_else"), 401, "bad_signature"),
    (
        "signature of another body",
        lambda: (json.dumps(redact_body()).encode() + b" ", _signed_with(SECRET)[1]),
        401,
        "bad_signature",
    ),
    ("oversized", lambda: webhook(b"{" + b" " * 5000 + b"}"), 413, "payload_too_large"),
    ("malformed JSON", lambda: webhook(b'{"shop_domain": '), 400, "invalid_json"),
    ("not an object", lambda: webhook(b"[1, 2]"), 422, "invalid_body"),
    ("unknown topic", lambda: webhook(redact_body(), "orders/create"), 422, "unknown_topic"),
    (
        "a customer body as shop/redact",
        lambda: webhook(redact_body(), "shop/redact"),
        422,
        "topic_mismatch",
    ),
    (
        "another shop's body",
        lambda: webhook(redact_body("other-shop.myshopify.com")),
        422,
        "shop_mismatch",
    ),
    (
        "no webhook id",
        lambda: webhook(redact_body(), **{"X-Shopify-Webhook-Id": ""}),
        400,
        "missing_header",
    ),
    (
        "not a shop domain",
        lambda: webhook(redact_body(), **{"X-Shopify-Shop-Domain": "evil.example.com"}),
        400,
        "invalid_header",
    ),
    (
        "a bad customer id",
        lambda: webhook({**redact_body(), "customer": {"id": "x"}}),
        422,
        "invalid_field",
    ),
]


@pytest.mark.parametrize(
    ("make", "status", "code"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
async def test_a_refused_webhook_is_a_json_error_and_changes_nothing(
    client: TestClient[Any, Any], inspect: redis.Redis, make: Any, status: int, code: str
) -> None:
    raw, headers = make()
    answer, body = await post(client, raw, headers)
    assert (answer, body["error"]["code"]) == (status, code)
    assert stored_keys(inspect) == []


async def test_without_a_secret_the_route_is_off(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    off = settings.model_copy(update={"shopify_api_secret": None})
    client = await aiohttp_client(create_app(off))
    raw, headers = webhook(redact_body())
    status, body = await post(client, raw, headers)
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert stored_keys(inspect) == []


async def test_an_uninstalled_shop_is_refused_at_intake_until_it_installs_again(
    client: TestClient[Any, Any], inspect: redis.Redis, settings: Settings
) -> None:
    store = Redis.from_url(settings.redis_url)
    tokens = ShopTokens(store, TokenCipher(settings.token_key_list))
    try:
        await tokens.add(SHOP, "shpat_installed")
        await tokens.uninstall(SHOP, triggered_at=time.time() + 1, now=time.time())
        answer = await client.post(
            "/capture_sessions", json=capture_body(), headers=shopify_headers()
        )
        body = await answer.json()
        # The fallback token does not stand in for it either.
        assert (answer.status, body["error"]["code"]) == (403, "shop_uninstalled")
        await tokens.add(SHOP, "shpat_reinstalled")
        again = await client.post(
            "/capture_sessions", json=capture_body(), headers=shopify_headers()
        )
        assert again.status == 201
    finally:
        await store.aclose()


async def test_operators_read_webhooks_but_never_the_customer_identifiers(
    client: TestClient[Any, Any], inspect: redis.Redis, settings: Settings
) -> None:
    raw, headers = webhook(redact_body())
    webhook_id = headers["X-Shopify-Webhook-Id"]
    assert (await post(client, raw, headers))[0] == 200
    assert (await client.get("/admin/webhooks")).status == 401
    listed = await client.get("/admin/webhooks", headers=ADMIN)
    shown = await client.get(f"/admin/webhooks/{webhook_id}", headers=ADMIN)
    for answer in (listed, shown):
        assert answer.status == 200
        assert "john@example.com" not in await answer.text()
    [row] = (await listed.json())["webhooks"]
    assert (row["id"], row["state"], row["holds_customer_identifiers"]) == (
        webhook_id,
        "received",
        True,
    )
    assert [e["event"] for e in (await shown.json())["events"]] == ["received"]
    missing = await client.get(f"/admin/webhooks/{webhook_id}/report", headers=ADMIN)
    assert missing.status == 404
    store = Redis.from_url(settings.redis_url)
    try:
        await WebhookStore(store).save_report(webhook_id, {"matches": []})
    finally:
        await store.aclose()
    found = await client.get(f"/admin/webhooks/{webhook_id}/report", headers=ADMIN)
    assert (found.status, await found.json()) == (200, {"report": {"matches": []}})
    replay = await client.post(
        "/admin/webhooks/replay", json={"webhook_ids": [webhook_id]}, headers=ADMIN
    )
    assert (await replay.json())["skipped"] == [
        {"id": webhook_id, "reason": "not failed (it is received)"}
    ]
    bad = await client.get("/admin/webhooks?state=lost", headers=ADMIN)
    assert (bad.status, (await bad.json())["error"]["code"]) == (422, "invalid_field")
