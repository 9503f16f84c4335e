"""Shopify's test mode against the PSP account: a test session never reaches a live account
(not even a status lookup), and is rejected saying why; a live session, or a test one on a
test account, goes through with its `test` flag. The `http` connector against its fake (a
real HTTP server), the sandbox Shopify as a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
from aiohttp.test_utils import TestServer

from sandbox.client import SandboxShopifyClient
from sandbox.psp.common import PSP_STATE
from sandbox.psp.http import HTTP_BOOKS, create_http_psp_app
from sessions.ledger import Book
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Outcome, PaymentKind, Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import make_session, new_id, received_event
from tests.workers.conftest import ServicesFor
from tests.workers.connectors.conftest import TOKEN, settings_for
from workers.connectors.build import build_connector
from workers.lifecycle.capture import CAPTURE
from workers.lifecycle.moves import Done
from workers.lifecycle.payment import PAYMENT
from workers.lifecycle.ports import Services
from workers.lifecycle.runner import run

REFUSED = "Test mode: this {kind} was not sent to the payment provider, whose account is live."


@pytest.fixture
async def psp(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    server: TestServer = await aiohttp_server(create_http_psp_app(token=TOKEN))
    return server


Account = Callable[[str], Awaitable[Services]]


@pytest.fixture
async def account(
    psp: TestServer, services_for: ServicesFor, redis: fakeredis.FakeAsyncRedis
) -> AsyncIterator[Account]:
    """`account("live")`: the runner's services, settling with the http fake as that account."""
    opened = []

    async def build(kind: str) -> Services:
        url = str(psp.make_url("")).rstrip("/")
        connector = build_connector(settings_for("http", url, http_connector_account=kind), redis)
        opened.append(connector)
        return services_for(connector)

    yield build
    for connector in opened:
        await connector.close()


async def capture(redis: fakeredis.FakeAsyncRedis, **fields: Any) -> str:
    await LedgerStore(redis).open("pay-1", Book(currency="EUR", authorized=10_000))
    session = make_session(payment_id="pay-1", amount=Decimal("10.00"), **fields)
    await SessionStore(redis).create(session, received_event(), due_at=0, queue=False)
    return session.id


@pytest.mark.parametrize("interrupted", [False, True])
async def test_a_test_capture_on_a_live_account_is_rejected_and_the_psp_never_asked(
    account: Account,
    psp: TestServer,
    redis: fakeredis.FakeAsyncRedis,
    sandbox: SandboxShopifyClient,
    interrupted: bool,
) -> None:
    services = await account("live")
    # Interrupted: an earlier run's answer was lost, so a status lookup would come first.
    session_id = await capture(redis, test=True, psp_uncertain=interrupted)

    assert await run(session_id, services, CAPTURE) == Done(State.REPORTED)

    assert psp.app[PSP_STATE].calls == []
    session = await SessionStore(redis).get(session_id)
    assert session is not None
    assert (session.outcome, session.report, session.psp_attempts) == (
        Outcome.DECLINED,
        Report.REJECTED,
        0,
    )
    [call] = await sandbox.calls(gid=session.gid)
    assert call["mutation"] == "captureSessionReject"
    assert call["variables"]["reason"] == {
        "code": "PROCESSING_ERROR",
        "merchantMessage": REFUSED.format(kind="capture"),
    }
    timeline = await SessionStore(redis).timeline(session_id)
    assert "test_refused" in [event.event for event in timeline]
    # Nothing is held on the payment's book for it.
    book = await LedgerStore(redis).get("pay-1")
    assert book is not None
    assert (book.reservations, book.captured) == ({}, 0)


@pytest.mark.parametrize(("test", "kind"), [(False, "live"), (True, "test"), (False, "test")])
async def test_other_sessions_go_to_the_psp_with_their_test_flag(
    account: Account,
    psp: TestServer,
    redis: fakeredis.FakeAsyncRedis,
    sandbox: SandboxShopifyClient,
    test: bool,
    kind: str,
) -> None:
    services = await account(kind)
    session_id = await capture(redis, test=test)

    assert await run(session_id, services, CAPTURE) == Done(State.REPORTED)

    [book] = psp.app[HTTP_BOOKS]
    assert (book["key"], book["test"]) == (session_id, test)
    session = await SessionStore(redis).get(session_id)
    assert session is not None
    assert session.report is Report.RESOLVED


async def test_a_test_payment_on_a_live_account_is_rejected_without_waiting_for_a_buyer(
    account: Account, redis: fakeredis.FakeAsyncRedis, sandbox: SandboxShopifyClient
) -> None:
    services = await account("live")
    session_id = new_id()
    payment = make_session(
        id=session_id,
        kind=Kind.PAYMENT,
        gid=f"gid://shopify/PaymentSession/{session_id}",
        payment_id=session_id,
        payment_kind=PaymentKind.AUTHORIZATION,
        test=True,
    )
    await SessionStore(redis).create(payment, received_event(), due_at=0, queue=False)

    assert await run(session_id, services, PAYMENT) == Done(State.REPORTED)

    [call] = await sandbox.calls(gid=payment.gid)
    assert call["mutation"] == "paymentSessionReject"
    assert call["variables"]["reason"]["merchantMessage"] == REFUSED.format(kind="payment")
    # No book: Shopify was told there is no payment to capture.
    assert await LedgerStore(redis).get(session_id) is None
