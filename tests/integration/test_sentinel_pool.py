"""A web process with sentinels under load: out of Redis connections it waits for one like it
does without them, then says it is overloaded (never `store_unavailable` at once while Redis
is fine), and `/readyz` asks the sentinels over connections it keeps, not new ones per probe.
The real app on redis-server, its replica and three sentinels on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis import Redis as SyncRedis

from config import Settings
from redisio.connect import redis_client
from tests.factories import capture_body, shopify_headers
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.fleet_support import MASTER, ReplicatedRedis
from tests.integration.test_failover import replicated  # noqa: F401 - the fleet's fixture
from webhook.app import create_app

pytestmark = pytest.mark.integration


async def test_a_web_process_out_of_sentinel_connections_waits_then_says_it_is_overloaded(
    aiohttp_client: Any,
    replicated: ReplicatedRedis,  # noqa: F811
) -> None:
    settings = Settings(
        redis_sentinels=replicated.sentinel_list,
        redis_sentinel_master=MASTER,
        redis_timeout_seconds=0.5,
        shopify_access_token="shpat_sentinel_pool",
    )
    store = redis_client(settings, connections=1, name="payhook-web-test")
    client = await aiohttp_client(create_app(settings, redis=store))
    assert (
        await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    ).status == 201
    pool = store.connection_pool
    held = await pool.get_connection()  # every connection busy, Redis itself fine
    try:
        began = time.monotonic()
        answer = await client.post(
            "/capture_sessions", json=capture_body(), headers=shopify_headers()
        )
        waited = time.monotonic() - began
    finally:
        await pool.release(held)
    assert answer.status == 503
    assert (await answer.json())["error"]["code"] == "overloaded"
    assert waited >= 0.4  # the pool's documented wait, PAYHOOK_REDIS_TIMEOUT_SECONDS
    again = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    assert again.status == 201
    await store.aclose()


def connections_received(port: int) -> int:
    sentinel = SyncRedis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        return int(sentinel.info("stats")["total_connections_received"])
    finally:
        sentinel.close()


async def test_readyz_asks_the_sentinels_over_connections_it_keeps(
    aiohttp_client: Any,
    replicated: ReplicatedRedis,  # noqa: F811
) -> None:
    settings = Settings(
        redis_sentinels=replicated.sentinel_list,
        redis_sentinel_master=MASTER,
        admin_token=ADMIN_TOKEN,
    )
    client = await aiohttp_client(create_app(settings))
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    first = await client.get("/readyz", headers=admin)
    assert len((await first.json())["topology"]["sentinels"]) == 3
    before = [connections_received(s.port) for s in replicated.sentinels]

    for _ in range(10):
        answer = await client.get("/readyz", headers=admin)
        topology = (await answer.json())["topology"]
        assert topology["primary"] == f"127.0.0.1:{replicated.primary.port}"

    after = [connections_received(s.port) for s in replicated.sentinels]
    # This test's own INFO connection each time, and none for the ten probes, which would
    # each open one without kept clients. A loaded host may add a stray one (a sentinel's
    # link to another timing out and coming back), never one a probe.
    opened = [a - b for a, b in zip(after, before, strict=True)]
    assert all(1 <= n <= 3 for n in opened), opened
