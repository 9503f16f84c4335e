"""A shop whose access token Shopify rejects, as an operator lives it: the session waits as
failed with the reason (`payhook sessions show`), is neither retried nor reported again, and
once `payhook shops add` stores the right token, `payhook replay` reports it exactly once.
The lifecycle runner, a real redis-server and the sandbox Shopify as a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from redis.asyncio import Redis

from config import Settings
from ops.cli import main
from ops.redis_server import LocalRedis
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sessions.claims import Claims
from sessions.ledger_store import LedgerStore
from sessions.models import Op, Outcome
from sessions.states import State
from sessions.store import SessionStore
from shops.tokens import ShopTokens, TokenCipher
from tests.factories import make_session, received_event
from webhook.app import create_app
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import DeadLetter, Done, Policy, Skipped
from workers.lifecycle.ports import Services
from workers.lifecycle.runner import run
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway

DB = 13
SHOP = "locked-shop.myshopify.com"
RIGHT = "shpat_the_right_one"
KEY = Fernet.generate_key().decode()
ADMIN = SecretStr("admin")


async def payhook(argv: list[str]) -> int:
    """The `payhook` command line, run as its own program would (it starts its own loop)."""
    return await asyncio.to_thread(main, argv)


@pytest.fixture
def settings(redis_server: LocalRedis, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # The operator's commands read the same environment as the worker.
    monkeypatch.setenv("PAYHOOK_REDIS_URL", f"redis://127.0.0.1:{redis_server.port}/{DB}")
    monkeypatch.setenv("PAYHOOK_TOKEN_KEYS", KEY)
    return Settings()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def shopify(aiohttp_server: Any) -> AsyncIterator[tuple[str, SandboxShopifyClient]]:
    server = await aiohttp_server(create_shopify_app(strict_sessions=False, tokens={SHOP: RIGHT}))
    url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        yield url, SandboxShopifyClient(url, http)


@pytest.fixture
async def services(
    redis: Redis, settings: Settings, shopify: tuple[str, SandboxShopifyClient]
) -> AsyncIterator[Services]:
    gateway = GqlShopifyGateway(
        url_template=shopify[0] + GRAPHQL_PATH,
        api_version="2025-10",
        tokens=ShopTokens(redis, TokenCipher(settings.token_key_list)),
        timeout_seconds=2,
    )
    ladder = RetryPolicy((0.0,), max_attempts=3)
    yield Services(
        claims=Claims(redis),
        connector=SimulatorConnector(redis),
        gateway=gateway,
        ledger=LedgerStore(redis),
        policy=Policy(psp=ladder, shopify=ladder, lease_seconds=10, max_deliveries=5),
        clock=time.time,
    )
    await gateway.close()


async def test_a_rejected_token_fails_the_session_until_the_token_is_fixed_and_replayed(
    redis: Redis,
    services: Services,
    shopify: tuple[str, SandboxShopifyClient],
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
    aiohttp_client: Any,
) -> None:
    sandbox = shopify[1]
    assert await payhook(["shops", "add", SHOP, "--token", "shpat_revoked"]) == 0
    store = SessionStore(redis)
    session = make_session(shop=SHOP)
    await store.create(session, received_event(), due_at=0, queue=False)

    step = await run(session.id, services, CAPTURE)
    assert isinstance(step, DeadLetter)
    failed = await store.get(session.id)
    assert failed is not None
    assert failed.state is State.FAILED
    assert failed.outcome is Outcome.APPROVED  # the money moved; only the report is owed
    assert failed.last_error is not None
    assert "access token" in failed.last_error
    assert SHOP in failed.last_error
    assert "payhook shops add" in failed.last_error

    # Another delivery neither retries nor reports it.
    assert isinstance(await run(session.id, services, CAPTURE), Skipped)
    capsys.readouterr()
    assert await payhook(["sessions", "show", "--", session.id]) == 0
    shown = capsys.readouterr().out
    assert "failed" in shown
    assert "Shopify rejected the access token" in shown
    admin = await aiohttp_client(create_app(settings.model_copy(update={"admin_token": ADMIN})))
    listed = await admin.get(
        "/admin/sessions?state=failed", headers={"Authorization": "Bearer admin"}
    )
    [summary] = (await listed.json())["sessions"]
    assert summary["id"] == session.id
    assert "Shopify rejected the access token" in summary["last_error"]

    assert await payhook(["shops", "add", SHOP, "--token", RIGHT]) == 0
    assert await payhook(["replay", "--", session.id]) == 0
    assert await run(session.id, services, CAPTURE) == Done(State.REPORTED)
    assert (await sandbox.session_state(session.gid) or {})["state"] == "resolved"
    resolves = [c for c in await sandbox.calls(gid=session.gid) if c.get("status") == 200]
    assert len(resolves) == 1
    assert isinstance(services.connector, SimulatorConnector)
    assert (await services.connector.book(Op.CAPTURE, session.id)).calls == 1
