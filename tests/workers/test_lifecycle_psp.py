"""Sessions run through the real lifecycle against the sandbox PSP fakes (real HTTP
servers): what the provider recorded and what the session says, side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import fakeredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from sandbox.psp.aplazame import APLAZAME_ORDERS, create_aplazame_app, seed_order
from sandbox.psp.common import PSP_STATE
from sandbox.psp.http import HTTP_BOOKS, create_http_psp_app
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Outcome, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, received_event
from tests.workers.conftest import ServicesFor
from tests.workers.connectors.conftest import TOKEN, settings_for
from workers.connectors.base import Connector
from workers.connectors.build import build_connector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import Done, RetryLater, Step
from workers.lifecycle.ports import Services
from workers.lifecycle.runner import run
from workers.lifecycle.void import VOID
from workers.retry_policy import RetryPolicy

Server = Callable[[web.Application], Awaitable[TestServer]]


async def connector_for(
    name: str, app: web.Application, aiohttp_server: Server, redis: fakeredis.FakeAsyncRedis
) -> Connector:
    server = await aiohttp_server(app)
    return build_connector(settings_for(name, str(server.make_url("")).rstrip("/")), redis)


async def stored(redis: fakeredis.FakeAsyncRedis, **fields: Any) -> str:
    session = make_session(**fields)
    await SessionStore(redis).create(session, received_event(), due_at=0, queue=False)
    return session.id


async def finished(session_id: str, services: Services, runs: int = 5) -> Step:
    """Runs of a capture session as its retries come due."""
    step: Step = await run(session_id, services, CAPTURE)
    for _ in range(runs):
        if not isinstance(step, RetryLater):
            break
        await asyncio.sleep(step.delay)
        step = await run(session_id, services, CAPTURE)
    return step


async def test_a_void_sends_the_payments_currency_from_its_book(
    aiohttp_server: Server, redis: fakeredis.FakeAsyncRedis, services_for: ServicesFor
) -> None:
    psp = create_http_psp_app(token=TOKEN)
    connector = await connector_for("http", psp, aiohttp_server, redis)
    services = services_for(connector)
    await LedgerStore(redis).open("pay-sek", Book(currency="SEK", authorized=15_000))
    # Shopify's void session names no amount and no currency: only the book knows it.
    session_id = await stored(
        redis,
        id="void-1",
        gid="gid://shopify/VoidSession/void-1",
        kind=Kind.VOID,
        payment_id="pay-sek",
        amount=None,
        currency=None,
    )
    try:
        assert await run(session_id, services, VOID) == Done(State.REPORTED)
    finally:
        await connector.close()
    session = await SessionStore(redis).get(session_id)
    assert session is not None
    assert (session.outcome, session.report) == (Outcome.APPROVED, Report.RESOLVED)
    [void] = psp[HTTP_BOOKS]
    assert (void["operation"], void["amount"], void["currency"]) == ("void", None, "SEK")


async def test_two_captures_of_one_amount_are_two_captures_each_reported_as_its_own(
    aiohttp_server: Server, redis: fakeredis.FakeAsyncRedis, services_for: ServicesFor
) -> None:
    psp = create_aplazame_app(token=TOKEN)
    seed_order(psp, {"id": "ord-1", "total": 60_020})
    connector = await connector_for("aplazame", psp, aiohttp_server, redis)
    services = services_for(connector)
    # A ladder whose top step is longer than the connector's no-resend window, as the
    # default one is: waits are capped at the top step.
    ladder = RetryPolicy((0.0, 2.0), max_attempts=5)
    services = replace(services, policy=replace(services.policy, psp=ladder))
    first, second = [
        await stored(redis, payment_id="ord-1", amount=Decimal("100.50"), currency="EUR")
        for _ in range(2)
    ]
    # The first capture fails without being applied; the second comes while it is unsettled.
    psp[PSP_STATE].arm({"kind": "status", "status": 503, "operation": "capture"})
    try:
        assert isinstance(await run(first, services, CAPTURE), RetryLater)
        busy = await run(second, services, CAPTURE)
        assert isinstance(busy, RetryLater)
        assert "order busy" in busy.reason
        # Aplazame has no idempotency key: the first is resent only once its 503 cannot
        # still turn into a capture, so it may wait a little.
        assert await finished(first, services) == Done(State.REPORTED)
        assert await finished(second, services) == Done(State.REPORTED)
    finally:
        await connector.close()
    sessions = [await SessionStore(redis).get(session_id) for session_id in (first, second)]
    captures = psp[APLAZAME_ORDERS]["ord-1"].captures
    assert sorted(s.psp_reference for s in sessions if s is not None) == sorted(
        c["id"] for c in captures
    )
    assert [c["amount"] for c in captures] == [10_050, 10_050]
    assert all(s is not None and s.report is Report.RESOLVED for s in sessions)
