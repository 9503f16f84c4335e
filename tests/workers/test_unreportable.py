"""A session whose report could not be sent never reaches the PSP: its shop's token was
removed (`payhook shops remove`) or no configured key decrypts it any more. The runner
against fakeredis, the simulator PSP's books and the sandbox Shopify as a real server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
from cryptography.fernet import Fernet

from sandbox.shopify import GRAPHQL_PATH, create_shopify_app
from sessions.claims import Claims
from sessions.ledger_store import LedgerStore
from sessions.models import Op
from sessions.replay import replay
from sessions.states import State
from sessions.store import SessionStore
from shops.tokens import ShopTokens, TokenCipher
from tests.factories import SHOP, make_session, received_event
from workers.connectors.base import Operation, Result
from workers.connectors.simulator import SimulatorConnector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import DeadLetter, Done, Policy, RetryLater
from workers.lifecycle.ports import Services
from workers.lifecycle.runner import run
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway
from workers.shopify.tokens import CachedTokens

DROPPED, KEPT = Fernet.generate_key().decode(), Fernet.generate_key().decode()
ATTEMPTS = 3


@pytest.fixture
async def shopify_url(aiohttp_server: Any) -> str:
    server = await aiohttp_server(create_shopify_app(strict_sessions=False))
    return str(server.make_url("")).rstrip("/") + GRAPHQL_PATH


@pytest.fixture
async def services(redis: fakeredis.FakeAsyncRedis, shopify_url: str) -> AsyncIterator[Services]:
    # As the worker builds it: the registry under this process's keys, behind the cache.
    tokens = CachedTokens(ShopTokens(redis, TokenCipher([KEPT])))
    gateway = GqlShopifyGateway(
        url_template=shopify_url, api_version="2025-10", tokens=tokens, timeout_seconds=10
    )
    ladder = RetryPolicy((0.0,), max_attempts=ATTEMPTS)
    yield Services(
        claims=Claims(redis),
        connector=SimulatorConnector(redis),
        gateway=gateway,
        ledger=LedgerStore(redis),
        policy=Policy(psp=ladder, shopify=ladder, lease_seconds=10, max_deliveries=10),
        clock=time.time,
    )
    await gateway.close()


async def psp_calls(services: Services, session_id: str) -> int:
    assert isinstance(services.connector, SimulatorConnector)
    return (await services.connector.book(Op.CAPTURE, session_id)).calls


@pytest.mark.parametrize("lost", ["key dropped", "token removed"])
async def test_a_session_whose_token_cannot_be_read_waits_then_fails_without_the_psp(
    redis: fakeredis.FakeAsyncRedis, services: Services, lost: str
) -> None:
    shops = ShopTokens(redis, TokenCipher([KEPT]))
    if lost == "key dropped":
        await ShopTokens(redis, TokenCipher([DROPPED])).add(SHOP, "shpat_sealed_under_dropped")
    store = SessionStore(redis)
    session = make_session()
    await store.create(session, received_event(), due_at=0, queue=False)

    steps = [await run(session.id, services, CAPTURE) for _ in range(ATTEMPTS)]

    assert [type(s) for s in steps] == [RetryLater] * (ATTEMPTS - 1) + [DeadLetter], steps
    assert await psp_calls(services, session.id) == 0
    failed = await store.get(session.id)
    assert failed is not None
    assert (failed.state, failed.outcome, failed.psp_attempts) == (State.FAILED, None, 0)
    assert failed.last_error is not None
    assert SHOP in failed.last_error
    assert "PSP not asked" in failed.last_error
    assert await services.ledger.held(session.payment_id, session.id) is None
    # The operator puts the token back and replays: charged once, reported once.
    await shops.add(SHOP, "shpat_readable")
    [replayed] = await replay(store, [session.id], lease_seconds=10, per_second=0)
    assert replayed.state is State.RECEIVED
    assert await run(session.id, services, CAPTURE) == Done(State.REPORTED)
    assert await psp_calls(services, session.id) == 1


async def test_a_token_removed_after_it_was_cached_stops_the_next_psp_call(
    redis: fakeredis.FakeAsyncRedis, services: Services
) -> None:
    shops = ShopTokens(redis, TokenCipher([KEPT]))
    await shops.add(SHOP, "shpat_readable")
    store = SessionStore(redis)
    first, second = make_session(), make_session()
    for session in (first, second):
        await store.create(session, received_event(), due_at=0, queue=False)
    assert await run(first.id, services, CAPTURE) == Done(State.REPORTED)  # token now cached

    assert await shops.remove(SHOP)
    step = await run(second.id, services, CAPTURE)

    assert isinstance(step, RetryLater), step
    assert await psp_calls(services, second.id) == 0
    waiting = await store.get(second.id)
    assert waiting is not None
    assert waiting.state is State.SETTLING
    assert "no Shopify access token" in (waiting.last_error or "")


class RemovingDuringCapture(SimulatorConnector):
    """Models `payhook shops remove` landing while a capture is at the PSP, and a second
    session of the same shop checking its token in that moment (which reads the removal)."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis, during: Any) -> None:
        super().__init__(redis)
        self._during = during

    async def settle(self, kind: Op, operation: Operation) -> Result:
        result = await super().settle(kind, operation)
        if kind is not Op.CAPTURE:
            return result
        during, self._during = self._during, None
        if during is not None:
            await during()
        return result


async def test_a_capture_the_psp_took_before_its_token_was_removed_is_still_reported(
    redis: fakeredis.FakeAsyncRedis, services: Services
) -> None:
    shops = ShopTokens(redis, TokenCipher([KEPT]))
    await shops.add(SHOP, "shpat_readable")
    store = SessionStore(redis)
    at_psp, next_one = make_session(), make_session()
    for session in (at_psp, next_one):
        await store.create(session, received_event(), due_at=0, queue=False)

    async def removed_and_checked() -> None:
        assert await shops.remove(SHOP)
        assert isinstance(await run(next_one.id, services, CAPTURE), RetryLater)

    removing = replace(services, connector=RemovingDuringCapture(redis, removed_and_checked))
    step = await run(at_psp.id, removing, CAPTURE)

    # The money moved on a token checked before the PSP call: Shopify is told with it.
    assert step == Done(State.REPORTED), step
    assert await psp_calls(services, at_psp.id) == 1
    assert await psp_calls(services, next_one.id) == 0


async def test_a_session_of_an_uninstalled_shop_fails_at_its_first_claim_without_the_psp(
    redis: fakeredis.FakeAsyncRedis, services: Services
) -> None:
    shops = ShopTokens(redis, TokenCipher([KEPT]))
    await shops.add(SHOP, "shpat_readable")
    store = SessionStore(redis)
    session = make_session()
    # Admitted a moment before the uninstall's tombstone landed.
    await store.create(session, received_event(), due_at=0, queue=False)
    await shops.uninstall(SHOP, triggered_at=time.time() + 1, now=time.time())

    step = await run(session.id, services, CAPTURE)

    assert isinstance(step, DeadLetter)  # no wait on the ladder: the shop will not come back
    assert "uninstalled the app" in step.reason
    assert await psp_calls(services, session.id) == 0
    failed = await store.get(session.id)
    assert failed is not None
    assert (failed.state, failed.psp_attempts) == (State.FAILED, 0)
