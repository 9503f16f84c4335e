"""The optional per-shop rate limit, through the real app on a real redis-server: a shop
past its budget gets 429 with Retry-After, whichever web process it reaches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient

from config import Settings
from ops.redis_server import LocalRedis
from sessions.keys import session_key
from tests.factories import capture_body, shopify_headers
from webhook.app import create_app

DB = 10


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_access_token="shpat_fallback_for_every_shop",
        shop_rate_limit=3,
        shop_rate_window_seconds=60,
    )


async def post(client: TestClient[Any, Any], shop: str = "busy.myshopify.com") -> Any:
    body = capture_body()
    headers = shopify_headers(**{"Shopify-Shop-Domain": shop})
    return body, await client.post("/capture_sessions", json=body, headers=headers)


async def test_a_shop_past_its_budget_gets_429_with_retry_after_across_web_processes(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))  # another web process, same Redis
    for client in (first, second, first):
        _, answer = await post(client)
        assert answer.status == 201
    for client in (first, second):
        body, answer = await post(client)
        assert answer.status == 429
        assert (await answer.json())["error"]["code"] == "rate_limited"
        assert 1 <= int(answer.headers["Retry-After"]) <= 60
        assert not inspect.exists(session_key(body["id"]))
    _, other_shop = await post(first, shop="quiet.myshopify.com")
    assert other_shop.status == 201
    metrics = await (await first.get("/metrics")).text()
    assert 'payhook_sessions_received_total{kind="capture",result="rate_limited"} 1.0' in metrics


async def test_after_retry_after_the_shop_is_served_again(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    tight = settings.model_copy(update={"shop_rate_limit": 1, "shop_rate_window_seconds": 2.0})
    client = await aiohttp_client(create_app(tight))
    assert (await post(client))[1].status == 201
    _, refused = await post(client)
    assert refused.status == 429
    await asyncio.sleep(int(refused.headers["Retry-After"]) + 0.1)
    assert (await post(client))[1].status == 201


async def test_without_the_setting_there_is_no_limit(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    unlimited = settings.model_copy(update={"shop_rate_limit": None})
    client = await aiohttp_client(create_app(unlimited))
    answers = await asyncio.gather(*(post(client) for _ in range(20)))
    assert {answer.status for _, answer in answers} == {201}
