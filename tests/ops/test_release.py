"""`payhook sessions release`: an operator gives back the money a failed session holds, and
only when the provider shows that nothing was applied. Real redis-server, the real CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis
from sandbox.psp import connector_environment, start_psp_fake
from sandbox.psp.common import PSP_STATE
from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sessions.claims import Claims
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Outcome
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from workers.connectors.build import build_connector
from workers.connectors.order_lock import order_lock_key
from workers.connectors.simulator import Magic, SimulatorConnector, magic_amount
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import DeadLetter, Done, Policy, RetryLater
from workers.lifecycle.ports import Services
from workers.lifecycle.runner import run
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway

ROOT = Path(__file__).resolve().parents[2]
DB = 8

pytestmark = pytest.mark.integration


class _Tokens:
    async def token_for(self, shop: str) -> str | None:
        return "shpat_release"

    def opened(self, shop: str, stored: str | None) -> str | None:
        return "shpat_release"


async def failed_capture(url: str, amount: str, attempts: int) -> tuple[str, str]:
    """A capture run until its PSP ladder is out; returns (session id, payment id)."""
    redis = Redis.from_url(url)
    gateway = GqlShopifyGateway(
        url_template="http://127.0.0.1:9/{shop}",
        api_version="2025-10",
        tokens=_Tokens(),
        timeout_seconds=1,
    )
    services = Services(
        claims=Claims(redis),
        connector=SimulatorConnector(redis),
        gateway=gateway,
        ledger=LedgerStore(redis),
        policy=Policy(
            psp=RetryPolicy((0.0,), max_attempts=attempts),
            shopify=RetryPolicy((0.0,), max_attempts=1),
            lease_seconds=10,
            max_deliveries=10,
        ),
        clock=time.time,
    )
    session = make_session(amount=Decimal(amount))
    try:
        await SessionStore(redis).create(session, received_event(), due_at=0, queue=False)
        steps = [await run(session.id, services, CAPTURE) for _ in range(attempts)]
        assert isinstance(steps[-1], DeadLetter), steps
        return session.id, session.payment_id
    finally:
        await gateway.close()
        await redis.aclose()


async def reservation(url: str, payment_id: str, session_id: str) -> object:
    redis = Redis.from_url(url)
    try:
        return await LedgerStore(redis).held(payment_id, session_id)
    finally:
        await redis.aclose()


def payhook(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return payhook_with({"PAYHOOK_REDIS_URL": url}, *args)


def payhook_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=child_environment(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def url(redis_server: LocalRedis) -> str:
    return f"{redis_server.url[:-2]}/{DB}"


async def set_key(url: str, key: str, value: str) -> None:
    redis = Redis.from_url(url)
    try:
        await redis.set(key, value)
    finally:
        await redis.aclose()


async def get_key(url: str, key: str) -> bytes | None:
    redis = Redis.from_url(url)
    try:
        value: bytes | None = await redis.get(key)
        return value
    finally:
        await redis.aclose()


def test_money_held_by_a_capture_the_provider_never_applied_is_released(url: str) -> None:
    session_id, payment_id = asyncio.run(
        failed_capture(url, magic_amount(Magic.VANISHING), attempts=3)
    )
    # Connectors without marks keep the provider order locked for a session whose outcome
    # is unknown; once the operator has released its money, the order is free again.
    lock = order_lock_key("simulator", payment_id)
    asyncio.run(set_key(url, lock, session_id))
    shown = payhook(url, "sessions", "show", "--", session_id)
    assert f"money held: capture 10.55 EUR on payment {payment_id}" in shown.stdout

    released = payhook(url, "sessions", "release", "--", session_id)

    assert released.returncode == 0, released.stderr
    assert f"released: capture 10.55 EUR on payment {payment_id}" in released.stdout
    assert asyncio.run(reservation(url, payment_id, session_id)) is None
    assert asyncio.run(get_key(url, lock)) is None
    after = payhook(url, "sessions", "show", "--", session_id)
    assert "money held: capture" not in after.stdout
    assert "reservation_released" in after.stdout


def test_money_the_provider_did_capture_is_not_released_but_sent_to_replay(url: str) -> None:
    # Captured on the first call, its answer lost, and the ladder was one attempt long.
    session_id, payment_id = asyncio.run(
        failed_capture(url, magic_amount(Magic.AMBIGUOUS), attempts=1)
    )

    lock = order_lock_key("simulator", payment_id)
    asyncio.run(set_key(url, lock, session_id))

    refused = payhook(url, "sessions", "release", "--", session_id)

    assert refused.returncode == 1
    assert f"payhook replay {session_id}" in refused.stderr
    assert asyncio.run(get_key(url, lock)) == session_id.encode()
    assert asyncio.run(reservation(url, payment_id, session_id)) is not None


def test_money_is_not_released_while_the_provider_cannot_be_asked(url: str) -> None:
    session_id, payment_id = asyncio.run(
        failed_capture(url, magic_amount(Magic.UNREACHABLE), attempts=3)
    )

    refused = payhook(url, "sessions", "release", "--", session_id)

    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert asyncio.run(reservation(url, payment_id, session_id)) is not None


async def test_a_forced_release_still_makes_the_replay_ask_the_provider_before_sending(
    url: str, aiohttp_server: Any
) -> None:
    # The capture was applied and its answer lost; then the provider could not be read, so
    # the operator checked it elsewhere and forced the release. The replay must find the
    # capture with a status look-up, not send it again: a provider without idempotency keys
    # would charge the buyer a second time.
    fake = await start_psp_fake("http")
    shopify = await aiohttp_server(create_shopify_app(strict_sessions=False))
    env = connector_environment("http", fake.url, "sk_test")
    fields = {k.removeprefix("PAYHOOK_").lower(): v for k, v in env.items()}
    settings = Settings(redis_url=url, psp_timeout_seconds=0.5, **fields)
    redis = Redis.from_url(url)
    connector = build_connector(settings, redis)
    gateway = GqlShopifyGateway(
        url_template=str(shopify.make_url("")).rstrip("/") + GRAPHQL_PATH,
        api_version="2025-10",
        tokens=_Tokens(),
        timeout_seconds=2,
    )
    ladder = RetryPolicy((0.0,), max_attempts=2)
    services = Services(
        claims=Claims(redis),
        connector=connector,
        gateway=gateway,
        ledger=LedgerStore(redis),
        policy=Policy(psp=ladder, shopify=ladder, lease_seconds=10, max_deliveries=10),
        clock=time.time,
    )
    state = fake.runner.app[PSP_STATE]
    session = make_session(amount=Decimal("10.00"))
    store = SessionStore(redis)
    try:
        await LedgerStore(redis).open(session.payment_id, Book("EUR", authorized=1000))
        await store.create(session, received_event(), due_at=0, queue=False)
        # Applied, then no answer within the PSP timeout.
        state.arm({"kind": "delay", "operation": "capture", "seconds": 1.5})
        state.arm({"kind": "status", "operation": "capture", "times": 5})
        assert isinstance(await run(session.id, services, CAPTURE), RetryLater)
        step = await run(session.id, services, CAPTURE)
        assert isinstance(step, DeadLetter), (step, state.calls)
        assert await LedgerStore(redis).held(session.payment_id, session.id) is not None

        cli = {**env, "PAYHOOK_REDIS_URL": url}
        released = await asyncio.to_thread(
            payhook_with, cli, "sessions", "release", "--force", "--", session.id
        )
        assert released.returncode == 0, released.stderr
        state.faults.clear()
        replayed = await asyncio.to_thread(payhook_with, cli, "replay", "--", session.id)
        assert replayed.returncode == 0, replayed.stderr
        before = len(state.calls)

        assert await run(session.id, services, CAPTURE) == Done(State.REPORTED)
    finally:
        await gateway.close()
        await connector.close()
        await fake.close()
    after = [(c.method, c.operation) for c in state.calls[before:]]
    assert after == [("GET", "capture")], after
    assert len(state.applied("capture")) == 1
    reported = await store.get(session.id)
    assert reported is not None
    assert reported.outcome is Outcome.APPROVED
    # The capture is on the payment's book once, as at the provider.
    book = await LedgerStore(redis).get(session.payment_id)
    await redis.aclose()
    assert book is not None
    assert (book.captured, book.reservations) == (1000, {})
