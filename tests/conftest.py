"""Shared fixtures: a real redis-server for the whole run, and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(Path(tmp_path_factory.mktemp("redis")), appendfsync="always").start()
    yield server
    server.stop()
