"""The web process's gauges of what is stuck and what failed, scraped from the real app over
HTTP after sessions came in through the real endpoint and one was failed in the store."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from config import Settings
from ops.redis_server import LocalRedis
from sessions.keys import DUE, WORKABLE
from sessions.states import State
from tests.factories import capture_body, shopify_headers
from transport.messages import QUEUE

DB = 15
ADMIN_TOKEN = "metrics-test-admin-token-0123456789"


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_access_token="shpat_fallback_for_every_shop",
        admin_token=ADMIN_TOKEN,
    )


async def gauges(client: TestClient[Any, Any]) -> dict[str, float]:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status == 200
    text = await response.text()
    return {
        sample.name + "".join(f"/{v}" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def send(client: TestClient[Any, Any]) -> str:
    body = capture_body()
    response = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert response.status == 201
    session_id: str = body["id"]
    return session_id


async def test_nothing_stuck_reads_as_zero(client: TestClient[Any, Any]) -> None:
    seen = await gauges(client)
    assert seen["payhook_sessions_unfinished"] == 0
    assert seen["payhook_sessions_overdue"] == 0
    assert seen["payhook_oldest_unfinished_session_age_seconds"] == 0
    assert seen["payhook_pending_payments"] == 0
    assert math.isinf(seen["payhook_pending_payment_expiry_seconds"])
    assert seen["payhook_sessions_failed/capture"] == 0


async def test_backlog_age_and_failures_show_at_scrape_time(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    first, second, doomed = [await send(client) for _ in range(3)]
    # No worker runs here: the first session has waited ten minutes (moved back in its hash
    # and in the index the gauge reads), the second is overdue.
    created = time.time() - 600
    inspect.hset(f"payhook:s:{first}", "created_at", repr(created))
    inspect.zadd(WORKABLE, {first: created})
    inspect.zadd(DUE, {second: time.time() - 30})
    inspect.hset(f"payhook:s:{doomed}", "state", State.FAILED.value)
    inspect.zrem(DUE, doomed)
    inspect.zrem(WORKABLE, doomed)
    inspect.zadd("payhook:idx:failed:kind:capture", {doomed: time.time()})
    seen = await gauges(client)
    assert seen["payhook_sessions_unfinished"] == 2
    assert seen["payhook_sessions_overdue"] == 1
    assert 600 <= seen["payhook_oldest_unfinished_session_age_seconds"] < 660
    assert seen["payhook_sessions_failed/capture"] == 1
    assert seen["payhook_sessions_failed/refund"] == 0
    assert seen["payhook_queue_depth"] == inspect.llen(QUEUE) == 3


def answered(seen: dict[str, float], name: str) -> dict[str, float]:
    """`name`'s capture samples by result (the counter, or the histogram's `_count`)."""
    prefix = f"{name}/capture/"
    return {
        key.removeprefix(prefix): value for key, value in seen.items() if key.startswith(prefix)
    }


async def test_every_answered_session_request_is_timed_by_what_became_of_it(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    from redis.asyncio import BlockingConnectionPool, Redis

    from webhook.app import create_app

    # One connection: holding it makes the next request a 503 while Redis itself is fine.
    pool = BlockingConnectionPool.from_url(settings.redis_url, max_connections=1, timeout=0.2)
    client = await aiohttp_client(create_app(settings, redis=Redis(connection_pool=pool)))
    body = capture_body()
    answers = [
        await client.post("/capture_sessions", json=body, headers=shopify_headers()),
        await client.post("/capture_sessions", json=body, headers=shopify_headers()),
        await client.post("/capture_sessions", json={"id": 1}, headers=shopify_headers()),
        await client.post(
            "/capture_sessions", json={**body, "amount": "1.00"}, headers=shopify_headers()
        ),
    ]
    held = await pool.get_connection()
    try:
        answers.append(
            await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
        )
    finally:
        await pool.release(held)
    assert [a.status for a in answers] == [201, 201, 422, 409, 503]

    seen = await gauges(client)
    every = {"created": 1, "duplicate": 1, "invalid": 1, "conflict": 1, "overloaded": 1}
    assert answered(seen, "payhook_session_request_seconds_count") == every
    # The histogram and the counter tell the same story, request for request.
    assert answered(seen, "payhook_sessions_received_total") == every
    await pool.disconnect()


async def test_a_request_answered_503_while_redis_is_away_is_timed_and_counted(
    aiohttp_client: Any,
) -> None:
    from ops.redis_server import free_port
    from webhook.app import create_app

    client = await aiohttp_client(
        create_app(
            Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", admin_token=ADMIN_TOKEN)
        )
    )
    answer = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    assert answer.status == 503
    seen = await gauges(client)
    assert answered(seen, "payhook_session_request_seconds_count") == {"store_unavailable": 1}
    assert answered(seen, "payhook_sessions_received_total") == {"store_unavailable": 1}
