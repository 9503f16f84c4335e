"""No money moves for a session Shopify cannot be told about, with real processes: a
`payhook worker` whose `PAYHOOK_TOKEN_KEYS` lost the key a shop's token was sealed under, and
`payhook shops remove` while sessions flow. The web app on a TCP port, the sandbox Shopify,
the Aplazame fake (no idempotency keys: every capture it takes is money moved) and
redis-server; the fault tests' fixtures (own database, flushed, every process killed)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from sandbox.client import SandboxShopifyClient
from sandbox.psp import connector_environment, start_psp_fake
from sandbox.shopify_side import SentSession, send_capture_session
from sessions.models import Report
from sessions.states import State
from sessions.store import SessionStore
from shops.tokens import ShopTokens, TokenCipher
from tests.integration import faults_support
from tests.integration.conftest import ROOT, ServeApp
from tests.integration.faults_support import SHOP, Fleet, wait_all_final

pytestmark = pytest.mark.integration

# The fault modules' fixtures (tests/integration/faults_support.py).
settings = faults_support.settings
fresh_database = faults_support.fresh_database
fleet = faults_support.fleet

SEALED_UNDER, OTHER = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def worker_env(running: Fleet, psp_url: str, keys: str, **overrides: str) -> dict[str, str]:
    env = running.env(
        **connector_environment("aplazame", psp_url, "sk_test"),
        PAYHOOK_TOKEN_KEYS=keys,
        # Short token waits: the ladder's four rungs, then failed.
        PAYHOOK_PSP_MAX_ATTEMPTS="4",
        **overrides,
    )
    env.pop("PAYHOOK_SHOPIFY_ACCESS_TOKEN")  # per-shop tokens only
    return env


async def send(
    http: aiohttp.ClientSession, app_url: str, sandbox: SandboxShopifyClient
) -> SentSession:
    sent = await faults_support.send(http, app_url, sandbox, "25.00")
    assert sent.status == 201
    return sent


async def captures(http: aiohttp.ClientSession, psp_url: str) -> dict[str, int]:
    """Captures the PSP applied, by payment (its order id is the payment's)."""
    async with http.get(f"{psp_url}/_sandbox/calls", params={"operation": "capture"}) as answer:
        calls = (await answer.json())["calls"]
    applied: dict[str, int] = {}
    for call in calls:
        if call["method"] == "POST" and call["applied"]:
            order = call["path"].split("/")[2]
            applied[order] = applied.get(order, 0) + 1
    return applied


def payhook(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_worker_that_lost_the_tokens_key_never_asks_the_psp_for_that_shop(
    fleet: Fleet,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
) -> None:
    await ShopTokens(redis, TokenCipher([SEALED_UNDER])).add(SHOP, "shpat_sealed")
    # The web process still has the old key; the worker's settings dropped it.
    app_url = await serve_app(shopify_access_token=None, token_keys=f"{OTHER},{SEALED_UNDER}")
    fake = await start_psp_fake("aplazame")
    try:
        env = worker_env(fleet, fake.url, OTHER)
        sent = [await send(http, app_url, sandbox) for _ in range(5)]
        await asyncio.to_thread(fleet.worker, env)
        states = await wait_all_final(redis, [s.id for s in sent], patience=40)
        applied = await captures(http, fake.url)
        async with http.get(f"{fake.url}/_sandbox/calls") as answer:
            every_call = (await answer.json())["calls"]
    finally:
        await fake.close()
    assert set(states.values()) == {State.FAILED.value}, states
    assert applied == {}
    assert every_call == []  # not even a read: the PSP was never asked
    listed = await asyncio.to_thread(payhook, env, "sessions", "list", "--state", "failed")
    assert listed.returncode == 0, listed.stderr
    for one in sent:
        assert one.id in listed.stdout
    reason = f"no key in PAYHOOK_TOKEN_KEYS decrypts the token of {SHOP}: PSP not asked"
    assert listed.stdout.count(reason) == len(sent), listed.stdout


async def test_shops_remove_during_traffic_stops_the_psp_for_sessions_not_yet_there(
    fleet: Fleet,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    redis: Redis,
) -> None:
    await ShopTokens(redis, TokenCipher([OTHER])).add(SHOP, "shpat_readable")
    app_url = await serve_app(shopify_access_token=None, token_keys=OTHER)
    # Each capture takes 0.4 s at the PSP and the worker runs two at a time: most of the
    # sessions accepted are still waiting for the PSP when the token goes.
    fake = await start_psp_fake("aplazame", latency=0.4)
    try:
        env = worker_env(fleet, fake.url, OTHER, PAYHOOK_WORKER_CONCURRENCY="2")
        await asyncio.to_thread(fleet.worker, env)
        sent = [await send(http, app_url, sandbox) for _ in range(20)]
        for _ in range(200):
            if await captures(http, fake.url):
                break
            await asyncio.sleep(0.05)
        removed = await asyncio.to_thread(payhook, env, "shops", "remove", SHOP)
        assert removed.returncode == 0, removed.stderr
        late = await send_capture_session(
            http,
            app_url=app_url,
            sandbox=sandbox,
            shop=SHOP,
            payment_id="pay_after_removal",
            amount="25.00",
            currency="EUR",
            retry_delays=(),
        )
        states = await wait_all_final(redis, [s.id for s in sent], patience=60)
        applied = await captures(http, fake.url)
    finally:
        await fake.close()
    assert late.status == 403  # refused at intake from the removal on
    sessions = {s.id: await store.get(s.id) for s in sent}
    at_psp = [i for i, s in sessions.items() if s is not None and s.payment_id in applied]
    never = [i for i in sessions if i not in at_psp]
    figures = f"at_psp={len(at_psp)} never={len(never)} states={sorted(states.values())}"
    # Money moved only where Shopify was told, exactly once.
    for session_id in at_psp:
        reported = sessions[session_id]
        assert reported is not None
        assert (reported.state, reported.report) == (State.REPORTED, Report.RESOLVED), figures
        assert applied[reported.payment_id] == 1, figures
    print(f"FIGURES: shops remove during traffic {figures}")
    assert len(never) >= 5, figures
    for session_id in never:
        waited = sessions[session_id]
        assert waited is not None
        assert waited.state is State.FAILED, figures
        assert "no Shopify access token" in (waited.last_error or ""), figures
        assert "PSP not asked" in (waited.last_error or ""), figures
