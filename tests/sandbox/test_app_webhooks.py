"""The sandbox delivers Shopify's own webhooks: signed like Shopify's, retried on any answer
but a 2xx for a bounded number of times, steered through its admin route."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandbox.client import SandboxAdminError, SandboxShopifyClient
from sandbox.shopify import start_shopify_sandbox

SECRET = "shpss_sandbox_test_secret"
SHOP = "sandbox-hooks.myshopify.com"

Received = list[tuple[dict[str, str], bytes]]


async def fake_app(aiohttp_server: Any, statuses: list[int]) -> tuple[str, Received]:
    """An app that answers `statuses` in turn (the last one forever) and keeps what came."""
    received: Received = []

    async def take(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        status = statuses[min(len(received), len(statuses)) - 1]
        return web.json_response({}, status=status)

    app = web.Application()
    app.router.add_post("/shopify/webhooks", take)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), received


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def sandbox_for(http: aiohttp.ClientSession, app_url: str, **options: Any) -> Any:
    running = await start_shopify_sandbox(webhook_secret=SECRET, app_url=app_url, **options)
    return running, SandboxShopifyClient(running.url, http)


def signed(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def test_a_webhook_is_signed_like_shopifys_and_retried_until_the_app_takes_it(
    aiohttp_server: Any, http: aiohttp.ClientSession
) -> None:
    app_url, received = await fake_app(aiohttp_server, [503, 500, 200])
    running, sandbox = await sandbox_for(http, app_url)
    try:
        delivery = await sandbox.send_webhook(
            "customers/redact",
            SHOP,
            customer={"id": 1, "email": "a@example.com"},
            orders=[5],
            retry_delays=[0.01, 0.01, 0.01],
            wait=True,
        )
    finally:
        await running.close()
    assert delivery["state"] == "delivered"
    assert [a["status"] for a in delivery["attempts"]] == [503, 500, 200]
    ids = {headers["X-Shopify-Webhook-Id"] for headers, _ in received}
    assert ids == {delivery["webhook_id"]}  # one webhook, however often it is sent
    headers, body = received[-1]
    assert headers["X-Shopify-Topic"] == "customers/redact"
    assert headers["X-Shopify-Shop-Domain"] == SHOP
    assert headers["X-Shopify-Hmac-Sha256"] == signed(SECRET, body)
    sent = json.loads(body)
    assert sent["shop_domain"] == SHOP
    assert sent["customer"]["email"] == "a@example.com"
    assert sent["orders_to_redact"] == [5]


async def test_a_webhook_names_the_api_version_the_sandbox_serves(
    aiohttp_server: Any, http: aiohttp.ClientSession
) -> None:
    app_url, received = await fake_app(aiohttp_server, [200])
    running, sandbox = await sandbox_for(http, app_url, api_version="2026-04")
    try:
        await sandbox.send_webhook("app/uninstalled", SHOP, wait=True)
    finally:
        await running.close()
    [(headers, _)] = received
    assert headers["X-Shopify-API-Version"] == "2026-04"


async def test_an_app_that_never_takes_it_is_given_up_on_after_the_bounded_retries(
    aiohttp_server: Any, http: aiohttp.ClientSession
) -> None:
    app_url, received = await fake_app(aiohttp_server, [500])
    running, sandbox = await sandbox_for(http, app_url)
    try:
        delivery = await sandbox.send_webhook(
            "app/uninstalled", SHOP, retry_delays=[0.01, 0.01], wait=True
        )
        listed = await sandbox.webhook_deliveries()
        await sandbox.reset()
        after_reset = await sandbox.webhook_deliveries()
    finally:
        await running.close()
    assert delivery["state"] == "gave_up"
    assert len(received) == 3
    assert [d["id"] for d in listed] == [delivery["id"]]
    assert after_reset == []
    assert json.loads(received[0][1])["myshopify_domain"] == SHOP


async def test_an_unreachable_app_is_retried_too(http: aiohttp.ClientSession) -> None:
    running, sandbox = await sandbox_for(http, "http://127.0.0.1:9")
    try:
        delivery = await sandbox.send_webhook("shop/redact", SHOP, retry_delays=[0.01], wait=True)
    finally:
        await running.close()
    assert delivery["state"] == "gave_up"
    assert [a["status"] for a in delivery["attempts"]] == [None, None]
    assert all(a["error"] for a in delivery["attempts"])


@pytest.mark.parametrize(("sign", "expected"), [("bad", "wrong"), ("none", None)])
async def test_a_forged_or_unsigned_webhook_can_be_sent_on_purpose(
    aiohttp_server: Any, http: aiohttp.ClientSession, sign: str, expected: str | None
) -> None:
    app_url, received = await fake_app(aiohttp_server, [200])
    running, sandbox = await sandbox_for(http, app_url)
    try:
        await sandbox.send_webhook("shop/redact", SHOP, sign=sign, wait=True)
    finally:
        await running.close()
    headers, body = received[0]
    value = headers.get("X-Shopify-Hmac-Sha256")
    if expected is None:
        assert value is None
    else:
        assert value is not None
        assert value != signed(SECRET, body)


@pytest.mark.parametrize(
    "wanted",
    [
        {"shop": SHOP},
        {"topic": "shop/redact"},
        {"topic": "shop/redact", "shop": SHOP, "retry_delays": [61]},
        {"topic": "shop/redact", "shop": SHOP, "retry_delays": [0.1] * 11},
        {"topic": "shop/redact", "shop": SHOP, "sign": "maybe"},
        {"topic": "shop/redact", "shop": SHOP, "payload": [1]},
    ],
    ids=["no topic", "no shop", "long delay", "many retries", "sign", "payload not object"],
)
async def test_a_delivery_the_sandbox_cannot_make_is_refused(
    http: aiohttp.ClientSession, wanted: dict[str, Any]
) -> None:
    running, _ = await sandbox_for(http, "http://127.0.0.1:9")
    try:
        async with http.post(f"{running.url}/_sandbox/webhooks", json=wanted) as answer:
            assert answer.status == 400
            assert "error" in await answer.json()
    finally:
        await running.close()


async def test_without_an_app_url_or_a_secret_nothing_is_sent(http: aiohttp.ClientSession) -> None:
    running = await start_shopify_sandbox()
    sandbox = SandboxShopifyClient(running.url, http)
    try:
        with pytest.raises(SandboxAdminError, match="app URL"):
            await sandbox.send_webhook("shop/redact", SHOP)
        with pytest.raises(SandboxAdminError, match="secret"):
            await sandbox.send_webhook("shop/redact", SHOP, url="http://127.0.0.1:9/x")
    finally:
        await running.close()
