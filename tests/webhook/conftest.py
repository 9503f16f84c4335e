"""Each test module here defines `settings` (its own Redis database); these build on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config import Settings
from webhook.app import create_app


@pytest.fixture
def inspect(settings: Settings) -> Iterator[redis.Redis]:
    """A plain client on the module's database, emptied before the test."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, inspect: redis.Redis) -> Any:
    """The real app on the module's settings."""
    return await aiohttp_client(create_app(settings))
