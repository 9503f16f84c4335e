"""The lifecycle runner's peers for tests: fakeredis, the sandbox Shopify as a real server,
and `Services` around whichever connector a test settles with."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import fakeredis
import pytest

from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sessions.claims import Claims
from sessions.ledger_store import LedgerStore
from workers.connectors.base import Connector
from workers.lifecycle.moves import Policy
from workers.lifecycle.ports import Services
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway

ServicesFor = Callable[[Connector], Services]


class Tokens:
    async def token_for(self, shop: str) -> str | None:
        return "shpat_unit"

    def opened(self, shop: str, stored: str | None) -> str | None:
        return "shpat_unit"


@pytest.fixture
async def sandbox_url(aiohttp_server: Any) -> str:
    server = await aiohttp_server(create_shopify_app(strict_sessions=False))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[SandboxShopifyClient]:
    """The sandbox Shopify's control API: what it was sent, its faults."""
    async with aiohttp.ClientSession() as http:
        yield SandboxShopifyClient(sandbox_url, http)


@pytest.fixture
async def services_for(
    sandbox_url: str, redis: fakeredis.FakeAsyncRedis
) -> AsyncIterator[ServicesFor]:
    """`services_for(connector)`: the runner's services, settling with `connector`."""
    gateway = GqlShopifyGateway(
        url_template=sandbox_url + GRAPHQL_PATH,
        api_version="2025-10",
        tokens=Tokens(),
        timeout_seconds=2,
    )

    def build(connector: Connector) -> Services:
        return Services(
            claims=Claims(redis),
            connector=connector,
            gateway=gateway,
            ledger=LedgerStore(redis),
            policy=Policy(
                psp=RetryPolicy((0.0,), max_attempts=3),
                shopify=RetryPolicy((0.0,), max_attempts=3),
                lease_seconds=10,
                max_deliveries=5,
            ),
            clock=time.time,
        )

    yield build
    await gateway.close()
