"""`payhook sessions release`: an operator gives back the money a failed session holds, and
only when the provider shows that nothing was applied. Real redis-server, the real CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from config.settings import child_environment
from ops.redis_server import LocalRedis
from sessions.claims import Claims
from sessions.ledger_store import LedgerStore
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from workers.connectors.order_lock import order_lock_key
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.decide import DeadLetter, Policy
from workers.lifecycle.runner import Services, run
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway

ROOT = Path(__file__).resolve().parents[2]
DB = 8

pytestmark = pytest.mark.integration


class _NoTokens:
    async def token_for(self, shop: str) -> str | None:
        return None


async def failed_capture(url: str, amount: str, attempts: int) -> tuple[str, str]:
    """A capture run until its PSP ladder is out; returns (session id, payment id)."""
    redis = Redis.from_url(url)
    gateway = GqlShopifyGateway(
        url_template="http://127.0.0.1:9/{shop}",
        api_version="2025-10",
        tokens=_NoTokens(),
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
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=child_environment({"PAYHOOK_REDIS_URL": url}),
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
    session_id, payment_id = asyncio.run(failed_capture(url, "10.55", attempts=3))
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
    session_id, payment_id = asyncio.run(failed_capture(url, "10.54", attempts=1))

    lock = order_lock_key("simulator", payment_id)
    asyncio.run(set_key(url, lock, session_id))

    refused = payhook(url, "sessions", "release", "--", session_id)

    assert refused.returncode == 1
    assert f"payhook replay {session_id}" in refused.stderr
    assert asyncio.run(get_key(url, lock)) == session_id.encode()
    assert asyncio.run(reservation(url, payment_id, session_id)) is not None


def test_money_is_not_released_while_the_provider_cannot_be_asked(url: str) -> None:
    session_id, payment_id = asyncio.run(failed_capture(url, "10.56", attempts=3))

    refused = payhook(url, "sessions", "release", "--", session_id)

    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert asyncio.run(reservation(url, payment_id, session_id)) is not None
