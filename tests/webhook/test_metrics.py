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
from sessions.keys import DUE
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
    # No worker runs here: the first session has waited ten minutes, the second is overdue.
    inspect.hset(f"payhook:s:{first}", "created_at", repr(time.time() - 600))
    inspect.zadd(DUE, {second: time.time() - 30})
    inspect.hset(f"payhook:s:{doomed}", "state", State.FAILED.value)
    inspect.zrem(DUE, doomed)
    inspect.zadd("payhook:idx:failed:kind:capture", {doomed: time.time()})
    seen = await gauges(client)
    assert seen["payhook_sessions_unfinished"] == 2
    assert seen["payhook_sessions_overdue"] == 1
    assert 600 <= seen["payhook_oldest_unfinished_session_age_seconds"] < 660
    assert seen["payhook_sessions_failed/capture"] == 1
    assert seen["payhook_sessions_failed/refund"] == 0
    assert seen["payhook_queue_depth"] == inspect.llen(QUEUE) == 3
