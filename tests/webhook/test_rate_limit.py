"""The optional per-shop rate limit, through the real app on a real redis-server: a shop
past its budget gets 429 with Retry-After, whichever web process it reaches."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from redis.asyncio import BlockingConnectionPool, Redis

from config import Settings
from ops.redis_server import LocalRedis
from sessions.keys import session_key
from tests.factories import SHOP, capture_body, shopify_headers
from webhook.app import create_app
from webhook.rate_limit import RateLimit

DB = 10
ADMIN_TOKEN = "rate-limit-test-admin-token-0123456789"


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_access_token="shpat_fallback_for_every_shop",
        shop_rate_limit=3,
        shop_rate_window_seconds=60,
        admin_token=ADMIN_TOKEN,
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
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    metrics = await (await first.get("/metrics", headers=admin)).text()
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


@pytest.mark.parametrize("window", [1.0, 60.0])
async def test_a_burst_at_limit_three_lets_exactly_three_through(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis, window: float
) -> None:
    three = settings.model_copy(update={"shop_rate_limit": 3, "shop_rate_window_seconds": window})
    client = await aiohttp_client(create_app(three))
    answers = await asyncio.gather(*(post(client) for _ in range(4)))
    assert sorted(answer.status for _, answer in answers) == [201, 201, 201, 429]


@pytest.mark.parametrize(("limit", "window"), [(3, 1.0), (7, 1.0), (60, 10.0)])
async def test_however_fast_the_burst_exactly_the_limit_gets_through(
    settings: Settings, inspect: redis.Redis, limit: int, window: float
) -> None:
    # One connection: the calls reach Redis back to back, within a millisecond or two.
    pool = BlockingConnectionPool.from_url(settings.redis_url, max_connections=1)
    client = Redis(connection_pool=pool)
    try:
        limiter = RateLimit(client, limit=limit, window_seconds=window)
        started = time.monotonic()
        waits = [await limiter.wait_for(SHOP) for _ in range(limit + 1)]
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
        await pool.disconnect()
    assert waits[:limit] == [0.0] * limit
    # On a host so loaded that the burst took longer than one slot's refill, the last call
    # may rightly go through; otherwise it waits at most that refill.
    if elapsed < window / limit:
        assert 0 < waits[limit] <= window / limit + 0.01, elapsed


async def test_a_limit_above_a_thousand_a_second_is_kept_exactly(
    settings: Settings, inspect: redis.Redis
) -> None:
    # A burst in one transaction outruns the refill (2,000 a second) however busy the host:
    # a client's own pace could not, and would prove nothing.
    limit, sent = 2000, 8000
    client = Redis.from_url(settings.redis_url)
    try:
        limiter = RateLimit(client, limit=limit, window_seconds=1.0)
        started = await client.time()
        waits = await limiter.wait_for_each(SHOP, sent)
        ended = await client.time()
    finally:
        await client.aclose()
    elapsed = (ended[0] - started[0]) + (ended[1] - started[1]) / 1e6
    allowed = sum(1 for wait in waits if wait == 0)
    # The whole budget at once, then one more per 1/2000 s: nothing capped it, nothing more.
    assert limit <= allowed <= limit + math.ceil(elapsed * limit) + 1, (allowed, elapsed)
    assert allowed < sent, "the burst outran the budget: the test proves nothing"
    refused = [wait for wait in waits if wait > 0]
    assert max(refused) <= 1.0
