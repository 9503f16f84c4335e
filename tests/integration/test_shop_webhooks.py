"""Shopify's own webhooks end to end: the sandbox Shopify signs and delivers them to the web
app on a TCP port, `payhook worker` and `payhook beat` process them as subprocesses, all on
a real redis-server (the fault tests' database, flushed before every test).

An uninstall with sessions in flight, the privacy topics, a webhook delivered twice, and one
whose processing fails until it is dead-lettered, then replayed once an operator fixed it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from ops.redis_server import LocalRedis
from readouts.held import money_held
from sandbox.app_webhooks import build_body
from sandbox.client import SandboxShopifyClient
from sandbox.shopify import start_shopify_sandbox
from sessions.keys import INDEX_CREATED, session_key, timeline_key
from sessions.ledger_store import LedgerStore, ledger_keys
from sessions.models import Report, Session
from sessions.states import State
from sessions.store import SessionStore
from shops.tokens import ShopTokens, TokenCipher, uninstalled_at
from shops.webhook_store import WebhookStore
from shops.webhooks import HookState, Webhook
from tests.factories import (
    CALLBACK_SECRET,
    make_session,
    received_event,
    shopify_headers,
)
from tests.integration import faults_support
from tests.integration.conftest import ServeApp, open_payment, psp_says, until, wait_final
from tests.integration.faults_support import SHOP, Fleet, payhook, send, states_of

pytestmark = pytest.mark.integration

# The fault modules' fixtures (tests/integration/faults_support.py).
settings = faults_support.settings
fresh_database = faults_support.fresh_database
fleet = faults_support.fleet
restartable_redis = faults_support.restartable_redis

SECRET = "shpss_integration_app_secret_0123456789"
KEY = Fernet.generate_key().decode()
BYSTANDER = "bystander-shop.myshopify.com"
EMAIL = "jane.buyer@example.com"


def worker_env(running: Fleet, **overrides: str) -> dict[str, str]:
    fast = dict(
        PAYHOOK_TOKEN_KEYS=KEY,
        # Long PSP and Shopify rounds: the sessions must still be unfinished when the
        # uninstall comes; short webhook rounds, to see one dead-lettered in seconds.
        PAYHOOK_PSP_RETRY_LADDER="1,2",
        PAYHOOK_PSP_MAX_ATTEMPTS="200",
        PAYHOOK_SHOPIFY_RETRY_LADDER="0.5,1",
        PAYHOOK_SHOPIFY_MAX_ATTEMPTS="400",
        PAYHOOK_WEBHOOK_RETRY_LADDER="0.1,0.2,0.3",
        PAYHOOK_WEBHOOK_MAX_ATTEMPTS="3",
        PAYHOOK_WEBHOOK_RETRY_DEADLINE_SECONDS="0",
    )
    env = running.env(**{**fast, **overrides})
    env.pop("PAYHOOK_SHOPIFY_ACCESS_TOKEN")  # per-shop tokens only
    return env


async def started(running: Fleet, **overrides: str) -> dict[str, str]:
    """A worker and beat, on `worker_env`; returns the environment, for `payhook`."""
    env = worker_env(running, **overrides)
    await asyncio.gather(
        asyncio.to_thread(running.worker, env), asyncio.to_thread(running.beat, env)
    )
    return env


@pytest.fixture
async def app_url(serve_app: ServeApp) -> str:
    return await serve_app(
        shopify_access_token=None,
        token_keys=KEY,
        shopify_api_secret=SECRET,
        simulator_webhook_secret=CALLBACK_SECRET,
    )


@pytest.fixture
async def shopify(http: aiohttp.ClientSession, app_url: str) -> AsyncIterator[SandboxShopifyClient]:
    """A sandbox Shopify that signs its webhooks with the app's secret and sends them to
    the app under test."""
    running = await start_shopify_sandbox(webhook_secret=SECRET, app_url=app_url)
    yield SandboxShopifyClient(running.url, http)
    await running.close()


@pytest.fixture
async def tokens(redis: Redis) -> ShopTokens:
    registry = ShopTokens(redis, TokenCipher([KEY]))
    await registry.add(SHOP, "shpat_installed")
    await registry.add(BYSTANDER, "shpat_bystander")
    return registry


async def deliver(shopify: SandboxShopifyClient, topic: str, **options: Any) -> dict[str, Any]:
    """Shopify sends the webhook; returns the sandbox's delivery once the app answered."""
    delivery = await shopify.send_webhook(topic, options.pop("shop", SHOP), wait=True, **options)
    assert delivery["state"] == "delivered", delivery
    return delivery


async def finished(hooks: WebhookStore, webhook_id: str, patience: float = 30.0) -> Webhook:
    async def check() -> Webhook | None:
        found = await hooks.get(webhook_id)
        return found if found and found.state in (HookState.DONE, HookState.FAILED) else None

    return await until(check, f"webhook {webhook_id} processed", patience)


async def session(store: SessionStore, session_id: str) -> Session:
    found = await store.get(session_id)
    assert found is not None
    return found


async def test_an_uninstall_with_sessions_in_flight_fails_them_and_shows_the_money_held(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    shopify: SandboxShopifyClient,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
    tokens: ShopTokens,
) -> None:
    env = await started(fleet)
    # Shopify is down for the reports: an approved capture waits to be reported.
    await sandbox.add_fault({"kind": "status", "status": 503, "for_seconds": 120})
    sent = [
        await send(http, app_url, sandbox, "30.55"),  # every PSP answer lost
        await send(http, app_url, sandbox, "20.00"),  # approved, not yet reported
        await send(http, app_url, sandbox, "40.55", shop=BYSTANDER),
    ]
    assert [s.status for s in sent] == [201, 201, 201]
    lost, settled, bystander = (s.id for s in sent)
    # A payment whose buyer is on the PSP's page.
    waiting = (await open_payment(http, app_url, sandbox, shop=SHOP)).id

    async def in_their_states() -> bool:
        one, two = await session(store, lost), await session(store, settled)
        return one.psp_uncertain and two.state is State.SETTLED and two.report_attempts >= 1

    await until(in_their_states, "sessions in flight")
    webhook_id, body = str(uuid.uuid4()), build_body("app/uninstalled", SHOP)
    for _ in range(2):  # Shopify delivers it twice: one webhook
        await deliver(shopify, "app/uninstalled", webhook_id=webhook_id, payload=body)
    hooks = WebhookStore(redis)
    done = await finished(hooks, webhook_id)

    assert done.state is HookState.DONE, done
    assert uninstalled_at(await tokens.stored(SHOP)) is not None
    async with http.post(
        f"{app_url}/capture_sessions",
        json={
            "id": "after-uninstall",
            "gid": "gid://shopify/CaptureSession/after-uninstall",
            "payment_id": "pay_x",
            "amount": "1.00",
            "currency": "EUR",
            "merchant_locale": "en",
            "proposed_at": "2026-11-23T10:00:00Z",
        },
        headers=shopify_headers(**{"Shopify-Shop-Domain": SHOP}),
    ) as refused:
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "shop_uninstalled"

    ledger = LedgerStore(redis)
    failed = {i: await session(store, i) for i in (lost, settled, waiting)}
    for one in failed.values():
        assert one.state is State.FAILED, one
        assert f"{SHOP} uninstalled the app" in (one.last_error or "")
    # The dead-letter view lists them, with the reason.
    code, listed = await payhook(env, "sessions", "list", "--state", "failed", "--shop", SHOP)
    assert code == 0
    assert all(i in listed for i in failed)
    assert "uninstalled the app" in listed
    # The capture whose PSP answers were lost keeps its reservation: shown, not released.
    held = await money_held(ledger, failed[lost])
    assert held is not None
    assert held.minor == 3055
    assert await money_held(ledger, failed[settled]) is None
    assert lost in (done.result or "")
    code, stats = await payhook(env, "sessions", "stats", "--json")
    assert code == 0
    assert "30.55" in stats
    # The other shop is untouched; one webhook however often it came.
    assert (await session(store, bystander)).state is State.SETTLING
    events = await hooks.events(webhook_id)
    assert [e.event for e in events] == ["received", "done"]

    # A re-install lets the shop in again.
    await tokens.add(SHOP, "shpat_reinstalled")
    again = await send(http, app_url, sandbox, "5.00")
    assert again.status == 201
    await sandbox.clear_faults()
    reported = await wait_final(store, again.id, patience=30)
    assert (reported.state, reported.report) == (State.REPORTED, Report.RESOLVED)


async def test_a_failing_webhook_is_retried_dead_lettered_and_replayed_once_fixed(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    shopify: SandboxShopifyClient,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
    tokens: ShopTokens,
) -> None:
    waiting = (await open_payment(http, app_url, sandbox, shop=SHOP)).id
    # A session whose timeline holds another Redis type: no write to it can succeed.
    await redis.delete(timeline_key(waiting))
    await redis.set(timeline_key(waiting), "not a list")
    env = await started(fleet)
    delivery = await deliver(shopify, "app/uninstalled")
    webhook_id = delivery["webhook_id"]
    hooks = WebhookStore(redis)
    dead = await finished(hooks, webhook_id)

    assert (dead.state, dead.attempts) == (HookState.FAILED, 3), dead
    assert waiting in (dead.last_error or "")
    assert "holds another Redis type" in (dead.last_error or "")
    assert [e.event for e in await hooks.events(webhook_id)] == [
        "received",
        "retry",
        "retry",
        "failed",
    ]
    assert len(delivery["attempts"]) == 1  # Shopify had its 200 at once
    code, listed = await payhook(env, "webhooks", "list", "--state", "failed")
    assert code == 0
    assert webhook_id in listed
    assert (await session(store, waiting)).state is State.RECEIVED

    await redis.delete(timeline_key(waiting))  # the operator repairs the key
    code, replayed = await payhook(env, "webhooks", "replay", webhook_id)
    assert code == 0, replayed
    done = await finished(hooks, webhook_id)
    assert done.state is HookState.DONE, done
    assert (await session(store, waiting)).state is State.FAILED


async def test_customer_requests_report_and_redact_what_names_the_customer(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    shopify: SandboxShopifyClient,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
    tokens: ShopTokens,
) -> None:
    env = await started(fleet)
    # The PSP declines with a message that quotes the buyer: payhook keeps that text.
    named = (await open_payment(http, app_url, sandbox, shop=SHOP)).id
    await psp_says(http, app_url, named, "declined", message=f"card of {EMAIL} declined by issuer")
    other = (await open_payment(http, app_url, sandbox, shop=SHOP, amount="12.00")).id
    before = await until(lambda: _declined(store, named), "the decline to be stored")
    customer = {"id": 7001, "email": EMAIL, "phone": "+15550001111"}

    asked = await deliver(
        shopify, "customers/data_request", customer=customer, orders=[1], data_request_id=99
    )
    done = await finished(WebhookStore(redis), asked["webhook_id"])
    assert done.state is HookState.DONE, done
    assert done.payload is None  # the customer's identifiers went with the work
    code, out = await payhook(env, "webhooks", "report", asked["webhook_id"])
    assert code == 0, out
    report = json.loads(out)
    assert report["data_request_id"] == 99
    assert report["searched"]["for"] == ["email", "phone"]
    assert [m["session_id"] for m in report["matches"]] == [named]
    assert EMAIL in report["matches"][0]["fields"]["merchant_message"]

    redacted = await deliver(shopify, "customers/redact", customer=customer, orders=[1])
    assert (await finished(WebhookStore(redis), redacted["webhook_id"])).state is HookState.DONE
    after = await session(store, named)
    assert EMAIL not in (after.merchant_message or "")
    assert "[redacted]" in (after.merchant_message or "")
    # The money record is as it was.
    assert (after.amount, after.outcome, after.psp_reference, after.payment_id) == (
        before.amount,
        before.outcome,
        before.psp_reference,
        before.payment_id,
    )
    assert (await session(store, other)).merchant_message is None


async def test_shop_redact_erases_the_shop_but_keeps_the_money_held(
    fleet: Fleet,
    http: aiohttp.ClientSession,
    app_url: str,
    shopify: SandboxShopifyClient,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
    tokens: ShopTokens,
) -> None:
    env = await started(fleet)
    sent = [
        await send(http, app_url, sandbox, "15.00"),
        await send(http, app_url, sandbox, "25.55"),
        await send(http, app_url, sandbox, "16.00", shop=BYSTANDER),
    ]
    assert [s.status for s in sent] == [201, 201, 201]
    reported, lost, bystander = (s.id for s in sent)
    await wait_final(store, reported)
    await wait_final(store, bystander)
    reported_payment = (await session(store, reported)).payment_id
    lost_payment = (await session(store, lost)).payment_id
    await until(lambda: _uncertain(store, lost), "the lost capture to retry")

    gone = await deliver(shopify, "app/uninstalled")
    await finished(WebhookStore(redis), gone["webhook_id"])
    erased = await deliver(shopify, "shop/redact")
    done = await finished(WebhookStore(redis), erased["webhook_id"])
    assert done.state is HookState.DONE, done

    # The reported capture is gone with its timeline, listing entry and ledger book.
    assert await redis.exists(session_key(reported), timeline_key(reported)) == 0
    assert await redis.zscore(INDEX_CREATED, reported) is None
    assert await redis.exists(*ledger_keys(reported_payment)) == 0
    # The failed capture that may have moved money stays, with its book and reservation.
    kept = await session(store, lost)
    assert kept.state is State.FAILED
    assert await money_held(LedgerStore(redis), kept) is not None
    assert await redis.exists(ledger_keys(lost_payment)[0]) == 1
    assert "redacted" in [e.event for e in await store.timeline(lost)]
    # The other shop keeps everything; the uninstalled shop stays refused.
    assert (await session(store, bystander)).state is State.REPORTED
    assert uninstalled_at(await tokens.stored(SHOP)) is not None

    # The operator checks the provider and releases the money; the redact, done again,
    # erases what it had to keep.
    code, out = await payhook(env, "sessions", "release", lost)
    assert code == 0, out
    code, out = await payhook(env, "webhooks", "replay", "--again", erased["webhook_id"])
    assert code == 0, out
    again = await finished(WebhookStore(redis), erased["webhook_id"])
    assert again.state is HookState.DONE
    assert again.replays == 1
    assert await redis.exists(session_key(lost), *ledger_keys(lost_payment)) == 0


async def _uncertain(store: SessionStore, session_id: str) -> bool:
    found = await store.get(session_id)
    return found is not None and found.psp_uncertain


async def _declined(store: SessionStore, session_id: str) -> Session | None:
    found = await store.get(session_id)
    return found if found is not None and found.outcome is not None else None


async def test_a_redis_killed_mid_uninstall_leaves_it_to_be_finished_once(
    fleet: Fleet,
    restartable_redis: LocalRedis,
    http: aiohttp.ClientSession,
    app_url: str,
    shopify: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
    tokens: ShopTokens,
) -> None:
    # Many sessions to fail, so the uninstall is still at work when Redis dies.
    sessions = [make_session(shop=SHOP) for _ in range(1500)]
    due = time.time() + 3600
    for start in range(0, len(sessions), 100):
        await asyncio.gather(
            *(
                store.create(s, received_event(), due_at=due, queue=False)
                for s in sessions[start : start + 100]
            )
        )
    await started(fleet, PAYHOOK_WEBHOOK_MAX_ATTEMPTS="50")
    delivery = await deliver(shopify, "app/uninstalled")
    ids = [s.id for s in sessions]

    async def some_failed() -> bool:
        states = await states_of(redis, ids[:: len(ids) // 50])
        return any(state == State.FAILED.value for state in states.values())

    await until(some_failed, "the uninstall to start failing sessions", patience=30)
    await asyncio.to_thread(restartable_redis.restart, kill=True)
    done = await finished(WebhookStore(redis), delivery["webhook_id"], patience=90)

    assert done.state is HookState.DONE, done
    events = [e.event for e in await WebhookStore(redis).events(delivery["webhook_id"])]
    states = await states_of(redis, ids)
    assert set(states.values()) == {State.FAILED.value}
    # Each session failed once, however many attempts the webhook took.
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.lrange(timeline_key(session_id), 0, -1)
        timelines = await pipe.execute()
    failures = [sum(json.loads(e)["event"] == "failed" for e in t) for t in timelines]
    print(f"FIGURES: uninstall through a Redis kill: events={events}")
    assert set(failures) == {1}
