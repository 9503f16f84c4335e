"""The life of an install end to end: a merchant's browser through the app's install route,
the sandbox Shopify's authorize page and back to the callback over real HTTP; a real worker
and beat then send `paymentsAppConfigure`; and the shop's sessions are reported with the
token the install stored (the sandbox accepts no other for that shop)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from config import Settings
from ops.redis_server import LocalRedis, free_port
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import send_capture_session
from sandbox.state import SANDBOX_STATE
from sessions.keys import SHOPS
from sessions.models import Report
from sessions.store import SessionStore
from shops.onboarding import Onboarding, OnboardingState, OnboardingStore
from shops.tokens import TokenCipher
from tests.integration.conftest import DB, WorkerProcess, until, wait_final, worker_environment
from webhook.app import create_app

pytestmark = pytest.mark.integration

API_KEY = "e2e-install-app"
API_SECRET = "e2e-install-app-secret-0123456789"
KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def worker_and_beat(
    redis_server: LocalRedis,
    shopify_sandbox: RunningShopifySandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    state = tmp_path_factory.mktemp("install")
    env = worker_environment(redis_server, shopify_sandbox, state, PAYHOOK_TOKEN_KEYS=KEY)
    worker = WorkerProcess.start(["worker"], env, state / "worker.log")
    beat = WorkerProcess.start(["beat"], env, state / "beat.log", ready_marker=None)
    yield
    beat.stop()
    worker.stop()


@pytest.fixture
async def installing_app(
    aiohttp_server: Any,
    redis_server: LocalRedis,
    shopify_sandbox: RunningShopifySandbox,
    worker_and_beat: None,
) -> str:
    async with aiohttp.ClientSession() as http:
        await SandboxShopifyClient(shopify_sandbox.url, http).add_app(API_KEY, API_SECRET)
    port = free_port()
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_graphql_url=shopify_sandbox.graphql_url_template,
        shopify_authorize_url=shopify_sandbox.authorize_url_template,
        shopify_token_url=shopify_sandbox.token_url_template,
        shopify_api_key=API_KEY,
        shopify_api_secret=API_SECRET,
        token_keys=KEY,
        public_url=f"http://127.0.0.1:{port}",
    )
    server = await aiohttp_server(create_app(settings), port=port)
    return str(server.make_url("")).rstrip("/")


async def configured_at_shopify(sandbox: SandboxShopifyClient, shop: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        return (await sandbox.configurations()).get(shop)

    return await until(check, f"{shop} configured at Shopify")


async def onboarded(redis: Redis, shop: str) -> Onboarding:
    """The shop's onboarding record once it says configured."""

    async def check() -> Onboarding | None:
        record = await OnboardingStore(redis).get(shop)
        return record if record and record.state is OnboardingState.CONFIGURED else None

    return await until(check, f"the onboarding record of {shop} configured")


async def test_an_install_is_onboarded_by_the_workers_and_its_token_reports_its_sessions(
    installing_app: str,
    http: aiohttp.ClientSession,
    sandbox: SandboxShopifyClient,
    shopify_sandbox: RunningShopifySandbox,
    redis: Redis,
    store: SessionStore,
) -> None:
    shop = f"e2e-install-{secrets.token_hex(3)}.myshopify.com"
    async with http.get(f"{installing_app}/shopify/install", params={"shop": shop}) as answer:
        assert answer.status == 200, await answer.text()
        assert (await answer.json())["installed"] is True

    issued = shopify_sandbox.runner.app[SANDBOX_STATE].tokens[shop]
    stored = await redis.hget(SHOPS, shop)
    assert stored is not None
    assert stored.startswith(b"fernet:")
    assert issued.encode() not in stored
    assert TokenCipher([KEY]).open(stored.decode()) == issued

    assert await configured_at_shopify(sandbox, shop) == {"externalHandle": shop, "ready": True}
    calls = [c for c in await sandbox.calls(mutation="paymentsAppConfigure") if c["shop"] == shop]
    assert [(c["applied"], c["variables"]) for c in calls] == [
        (True, {"externalHandle": shop, "ready": True})
    ]
    # Shopify holds it before the worker has read its answer: the record follows.
    record = await onboarded(redis, shop)
    assert (record.state, record.accepted_ready) == (OnboardingState.CONFIGURED, True)

    sent = await send_capture_session(
        http,
        app_url=installing_app,
        sandbox=sandbox,
        shop=shop,
        payment_id=f"pay_{secrets.token_hex(5)}",
        amount="12.00",
        currency="EUR",
    )
    assert sent.status == 201
    session = await wait_final(store, sent.id)
    assert session.report is Report.RESOLVED
