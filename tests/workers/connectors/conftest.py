"""Connector contract tests: each connector, built by `build_connector` from settings,
against its sandbox fake served by a real aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from config import Settings
from sandbox.psp import connector_environment
from sandbox.psp.common import PSP_STATE, PspCall, PspState
from sessions.models import Op
from tests.factories import new_id
from workers.connectors.base import Connector, NotFound, Operation, Result, TryAgain
from workers.connectors.build import build_connector

TOKEN = "sandbox-token"
# Short enough that a `delay` fault of DELAY seconds is a timeout, long enough for a
# loaded CI machine to answer everything else.
TIMEOUT = 1.5
DELAY = 2.1


def operation(**overrides: Any) -> Operation:
    session_id = overrides.pop("session_id", None) or new_id()
    fields: dict[str, Any] = {
        "session_id": session_id,
        "payment_id": "pay-1",
        "amount": Decimal("100.00"),
        "currency": "EUR",
        "test": True,
    }
    fields.update(overrides)
    return Operation(**fields)


def settings_for(name: str, base_url: str, **overrides: Any) -> Settings:
    env = connector_environment(name, base_url, TOKEN)
    fields: dict[str, Any] = {
        key.removeprefix("PAYHOOK_").lower(): value for key, value in env.items()
    }
    fields.update(psp_timeout_seconds=TIMEOUT, **overrides)
    return Settings(**fields)


@dataclass
class Fake:
    """A fake PSP being served, and the connector built to talk to it."""

    connector: Any  # the concrete connector class: tests reach its public surface only
    state: PspState
    app: web.Application
    url: str
    # Another worker process: a connector of its own on the same Redis.
    another_worker: Callable[[], Any]
    redis: fakeredis.FakeAsyncRedis

    def applied(self, operation: str) -> int:
        return len(self.state.applied(operation))

    def calls(self, operation: str) -> list[PspCall]:
        return [call for call in self.state.calls if call.operation == operation]


Serve = Callable[..., Awaitable[Fake]]


@pytest.fixture
async def serve(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[Serve]:
    """`await serve("ledyer", app)`: serve the fake and build its connector from settings."""
    redis = fakeredis.FakeAsyncRedis()
    built: list[Connector] = []

    async def factory(name: str, app: web.Application, **settings: Any) -> Fake:
        server = await aiohttp_server(app)
        url = str(server.make_url("")).rstrip("/")

        def connect() -> Connector:
            built.append(build_connector(settings_for(name, url, **settings), redis))
            return built[-1]

        return Fake(connect(), app[PSP_STATE], app, url, connect, redis)

    yield factory
    for connector in built:
        await connector.close()
    await redis.aclose()


async def settled(
    connector: Any, kind: Op, op: Operation, *, tries: int = 8, pause: float = 0.0
) -> Result:
    """The connector asked as the lifecycle asks it, until an outcome or `tries` run out:
    after an ambiguous answer, `status` first, and the operation again only on `NotFound`;
    `pause` seconds between attempts, or longer if the answer asked for it."""
    uncertain = False
    answer: Result = TryAgain("not asked yet")
    for attempt in range(tries):
        if attempt:
            await asyncio.sleep(max(pause, getattr(answer, "retry_after", None) or 0.0))
        known = await connector.status(kind, op) if uncertain else NotFound()
        answer = await connector.settle(kind, op) if isinstance(known, NotFound) else known
        if not isinstance(answer, TryAgain):
            return answer
        uncertain = uncertain or answer.ambiguous
    return answer
