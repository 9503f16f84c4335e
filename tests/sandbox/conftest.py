"""Fixtures for the sandbox Shopify: a real server, a gql session on it, plain HTTP for admin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from gql import Client
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport

from sandbox.shopify import create_shopify_app
from tests.sandbox.helpers import AUTH, GRAPHQL_PATH

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def shopify_factory(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> ServerFactory:
    """Start a sandbox Shopify; overrides go to `create_shopify_app`, e.g. `tokens=`."""

    async def start(**overrides: Any) -> TestServer:
        return await aiohttp_server(create_shopify_app(**overrides))

    return start


@pytest.fixture
async def shopify(shopify_factory: ServerFactory) -> TestServer:
    return await shopify_factory()


@pytest.fixture
async def http(
    shopify: TestServer, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> TestClient[Any, Any]:
    """Plain HTTP to the sandbox: its admin API, and raw GraphQL when headers matter."""
    return await aiohttp_client(shopify)


@pytest.fixture
async def gql_session(shopify: TestServer) -> AsyncIterator[AsyncClientSession]:
    """payhook's way in: the real gql client over aiohttp, with the shop's token."""
    transport = AIOHTTPTransport(url=str(shopify.make_url(GRAPHQL_PATH)), headers=AUTH)
    async with Client(transport=transport) as session:
        yield session
