"""Onboarding through the workers' Shopify gateway, against the sandbox Shopify as a real
server: what Shopify answers `paymentsAppConfigure` becomes the shop's onboarding state, a
retry follows the Shopify ladder, and neither a second worker nor a late answer to an older
ask makes a shop configured twice or wrongly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from cryptography.fernet import Fernet
from graphql import parse, validate

from errors import MissingCredentials, ShopifyUnavailable, ShopifyUserError, TokenRejected
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sandbox.shopify_schema import build_schema
from shops.onboarding import Ask, OnboardingState, OnboardingStore
from shops.tokens import ShopTokens, TokenCipher
from workers.onboarding import Onboarder, decide
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway
from workers.shopify.mutations import configure_app

SHOP = "onboard-shop.myshopify.com"
LOCKED = "locked-shop.myshopify.com"
KEY = Fernet.generate_key().decode()
LADDER = RetryPolicy((5.0, 10.0), max_attempts=3)
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sandbox_url(aiohttp_server: Any) -> str:
    server = await aiohttp_server(create_shopify_app(tokens={LOCKED: "shpat_right"}))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> OnboardingStore:
    return OnboardingStore(redis)


@pytest.fixture
async def onboarder_for(
    sandbox_url: str, redis: fakeredis.FakeAsyncRedis, store: OnboardingStore, clock: Clock
) -> AsyncIterator[Any]:
    """`onboarder_for()`: one worker's onboarder (its own gateway), on the same Redis."""
    gateways: list[GqlShopifyGateway] = []

    def build(policy: RetryPolicy = LADDER) -> Onboarder:
        tokens = ShopTokens(redis, TokenCipher([KEY]))
        gateway = GqlShopifyGateway(
            url_template=sandbox_url + GRAPHQL_PATH,
            api_version="2025-10",
            tokens=tokens,
            timeout_seconds=2,
        )
        gateways.append(gateway)
        return Onboarder(store, gateway, tokens, policy, hold_for=30, clock=clock)

    yield build
    for gateway in gateways:
        await gateway.close()


async def installed(store: OnboardingStore, shop: str = SHOP, token: str = "shpat_x") -> None:
    sealed = TokenCipher([KEY]).seal(token)
    await store.install(shop, sealed, handle=shop, ready=True, now=NOW)


def test_the_configure_document_is_valid_against_the_schema() -> None:
    mutation = configure_app("acct-1", True)
    assert validate(build_schema(), parse(mutation.document)) == []
    assert mutation.variables == {"externalHandle": "acct-1", "ready": True}


ASK = Ask(SHOP, request=1, handle=SHOP, ready=True, attempts=0, since=None)


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (None, OnboardingState.CONFIGURED),
        (
            ShopifyUserError("paymentsAppConfigure", None, "no", [{"message": "no"}]),
            OnboardingState.REFUSED,
        ),
        (ShopifyUserError("paymentsAppConfigure", "HTTP_400", "bad"), OnboardingState.FAILED),
        (TokenRejected("paymentsAppConfigure", SHOP, 401, "x"), OnboardingState.FAILED),
        (MissingCredentials("no token"), OnboardingState.FAILED),
        (ShopifyUnavailable("HTTP 503", cause="http_5xx"), OnboardingState.QUEUED),
    ],
)
def test_each_answer_decides_the_onboarding_state(error: Any, state: OnboardingState) -> None:
    assert decide(ASK, error, LADDER, now=NOW, rand=lambda: 1.0).state is state


def test_a_retry_waits_the_ladder_at_least_as_long_as_shopify_asks_then_gives_up() -> None:
    throttled = ShopifyUnavailable("429", retry_after=8.0, cause="http_429")
    first = decide(ASK, throttled, LADDER, now=NOW, rand=lambda: 0.0)
    assert first.retry_at == NOW + 8.0
    last = Ask(SHOP, request=1, handle=None, ready=True, attempts=2, since=NOW - 60)
    gave_up = decide(last, throttled, LADDER, now=NOW, rand=lambda: 0.0)
    assert gave_up.state is OnboardingState.FAILED
    assert "gave up after 3 attempts" in str(gave_up.error)


async def test_an_installed_shop_is_configured_ready_at_shopify(
    onboarder_for: Any, store: OnboardingStore, sandbox: SandboxShopifyClient
) -> None:
    await installed(store)
    assert await onboarder_for().run_due() == 1
    assert (await sandbox.configurations())[SHOP] == {"externalHandle": SHOP, "ready": True}
    [call] = await sandbox.calls(mutation="paymentsAppConfigure")
    assert (call["shop"], call["applied"]) == (SHOP, True)
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.accepted_ready, record.accepted_handle) == (
        OnboardingState.CONFIGURED,
        True,
        SHOP,
    )
    assert await onboarder_for().run_due() == 0


async def test_user_errors_are_kept_whole_and_not_retried(
    onboarder_for: Any, store: OnboardingStore, sandbox: SandboxShopifyClient, clock: Clock
) -> None:
    await installed(store)
    await sandbox.add_fault(
        {
            "kind": "user_error",
            "mutation": "paymentsAppConfigure",
            "message": "Merchant onboarding is not complete",
            "field": ["ready"],
            "times": 1,
        }
    )
    await onboarder_for().run_due()
    record = await store.get(SHOP)
    assert record is not None
    assert record.state is OnboardingState.REFUSED
    assert [(e.field, e.message) for e in record.user_errors] == [
        (["ready"], "Merchant onboarding is not complete")
    ]
    assert record.accepted_ready is None
    clock.now += 3600
    assert await onboarder_for().run_due() == 0
    assert await sandbox.configurations() == {}


async def test_shopify_away_is_retried_on_the_ladder_until_it_takes_the_ask(
    onboarder_for: Any, store: OnboardingStore, sandbox: SandboxShopifyClient, clock: Clock
) -> None:
    await installed(store)
    await sandbox.add_fault({"kind": "status", "status": 503, "times": 2})
    onboarder = onboarder_for()
    await onboarder.run_due()
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.attempts) == (OnboardingState.QUEUED, 1)
    assert "503" in str(record.last_error)
    # Not before the ladder's wait is over (its ceiling is 5 s after the first attempt).
    for _ in range(3):
        clock.now += 10
        await onboarder.run_due()
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.attempts) == (OnboardingState.CONFIGURED, 3)
    statuses = [c["status"] for c in await sandbox.calls(mutation="paymentsAppConfigure")]
    assert statuses == [503, 503, 200]


@pytest.mark.parametrize(
    ("shop", "token", "reason"),
    [
        (SHOP, None, "no Shopify access token"),
        (LOCKED, "shpat_wrong", "rejected the access token"),
    ],
    ids=["no token", "a token Shopify refuses"],
)
async def test_without_a_token_shopify_takes_the_ask_fails_with_its_fix(
    onboarder_for: Any,
    store: OnboardingStore,
    sandbox: SandboxShopifyClient,
    shop: str,
    token: str | None,
    reason: str,
) -> None:
    if token is None:
        await store.ask(shop, handle=None, ready=True, by="operator", now=NOW)
    else:
        await installed(store, shop, token)
    await onboarder_for().run_due()
    record = await store.get(shop)
    assert record is not None
    assert record.state is OnboardingState.FAILED
    assert reason in str(record.last_error)
    assert f"payhook shops add {shop}" in str(record.last_error)


async def test_an_ask_made_while_the_last_one_is_in_flight_is_sent_after_it(
    onboarder_for: Any, store: OnboardingStore, sandbox: SandboxShopifyClient
) -> None:
    await installed(store)
    await sandbox.add_fault(
        {"kind": "delay", "seconds": 0.5, "mutation": "paymentsAppConfigure", "times": 1}
    )
    onboarder = onboarder_for()
    first = asyncio.create_task(onboarder.run_due())
    for _ in range(250):  # until the call is at Shopify: its delay rule is spent
        if not await sandbox.faults():
            break
        await asyncio.sleep(0.02)
    # The operator takes the shop off while the install's ask is at Shopify.
    await store.ask(SHOP, handle="acct-9", ready=False, by="operator", now=NOW)
    await first
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.ready, record.accepted_ready) == (
        OnboardingState.QUEUED,
        False,
        None,
    )
    await onboarder.run_due()
    assert (await sandbox.configurations())[SHOP] == {"externalHandle": "acct-9", "ready": False}
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.accepted_ready) == (OnboardingState.CONFIGURED, False)


async def test_two_workers_sweeping_at_once_send_each_ask_once(
    onboarder_for: Any, store: OnboardingStore, sandbox: SandboxShopifyClient
) -> None:
    for index in range(5):
        await installed(store, f"shop-{index}.myshopify.com")
    sent = await asyncio.gather(onboarder_for().run_due(), onboarder_for().run_due())
    assert sum(sent) == 5
    shops = [c["shop"] for c in await sandbox.calls(mutation="paymentsAppConfigure")]
    assert sorted(shops) == [f"shop-{index}.myshopify.com" for index in range(5)]
