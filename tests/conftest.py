"""Shared fixtures: fakeredis for unit tests, a real redis-server for the whole run (one per
pytest-xdist worker: tests in one worker run one at a time, so a database number only has to
be kept apart from the other modules that run on the same server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fakeredis
import pytest
from redis.asyncio import Redis

from ops.redis_server import LocalRedis
from tests.factories import RedisDb


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples",
        type=int,
        default=8,
        help="schemathesis examples per operation in tests/webhook/test_openapi.py "
        "(the suite's bounded run; docs/operations.md has the longer one)",
    )


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(Path(tmp_path_factory.mktemp("redis")), appendfsync="always").start()
    yield server
    server.stop()


@pytest.fixture
async def redis_db(redis_server: LocalRedis) -> AsyncIterator[RedisDb]:
    """`await redis_db(n)`: a client of the run's redis-server on database `n`, flushed
    first; closed after the test."""
    clients: list[Redis] = []

    async def connect(db: int) -> Redis:
        client = Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/{db}")
        clients.append(client)
        await client.flushdb()
        return client

    yield connect
    for client in clients:
        await client.aclose()
