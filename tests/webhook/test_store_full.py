"""A Redis past its `maxmemory` (with `noeviction`, as payhook requires) refuses every write:
intake says so with a 503 Shopify retries, a code an operator can alert on and a log line,
and takes the session once Redis has room again. A real redis-server of its own, made full."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config import Settings
from ops.redis_server import LocalRedis
from sessions.keys import session_key
from tests.factories import capture_body, shopify_headers
from webhook.app import create_app


@pytest.fixture(scope="module")
def full_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(Path(tmp_path_factory.mktemp("redis-full"))).start()
    yield server
    server.stop()


@pytest.fixture
def inspect(full_redis: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(port=full_redis.port, decode_responses=True)
    client.flushdb()
    # Whatever it holds is over one byte: every write is refused, reads still answer.
    client.config_set("maxmemory", 1)
    yield client
    client.config_set("maxmemory", 0)
    client.close()


# With the rate limit on, its own script is the first write the full Redis refuses.
@pytest.mark.parametrize("rate_limit", [None, 100], ids=["no rate limit", "rate limit"])
async def test_a_full_redis_is_a_503_store_full_and_the_retry_is_taken_once_it_has_room(
    aiohttp_client: Any,
    full_redis: LocalRedis,
    inspect: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    rate_limit: int | None,
) -> None:
    settings = Settings(
        redis_url=full_redis.url,
        shopify_access_token="shpat_fallback",
        shop_rate_limit=rate_limit,
    )
    client = await aiohttp_client(create_app(settings))
    body = capture_body()
    with caplog.at_level(logging.WARNING, logger="payhook.webhook"):
        answer = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert answer.status == 503
    assert (await answer.json())["error"]["code"] == "store_full"
    assert int(answer.headers["Retry-After"]) >= 1
    assert any("maxmemory" in record.getMessage() for record in caplog.records), caplog.text
    assert inspect.dbsize() == 0

    inspect.config_set("maxmemory", 0)
    again = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert again.status == 201
    assert inspect.exists(session_key(body["id"]))
