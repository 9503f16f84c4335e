"""Shared fixtures: fakeredis for unit tests, a real redis-server for the whole run (one per
pytest-xdist worker: tests in one worker run one at a time, so a database number only has to
be kept apart from the other modules that run on the same server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fakeredis
import pytest

from ops.redis_server import LocalRedis


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
