"""Payment, capture, refund and void sessions end to end on one payment's ledger: the buyer
on the simulator PSP's page, a real worker, and the sandbox Shopify receiving the mutations."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from sandbox.client import SandboxShopifyClient
from sandbox.shopify import RunningShopifySandbox
from sandbox.shopify_side import build_capture_body, post_session
from sessions.keys import PENDING, WORKABLE
from sessions.models import Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import refund_body, void_body
from tests.integration.conftest import (
    ServeApp,
    WorkerProcess,
    buyer_page,
    open_payment,
    send_session,
    wait_final,
    wait_state,
)

pytestmark = pytest.mark.integration

SHOP = "ledger-shop.myshopify.com"


@pytest.fixture
async def app_url(serve_app: ServeApp, shopify_sandbox: RunningShopifySandbox) -> str:
    return await serve_app(**buyer_page(shopify_sandbox))


class Shop:
    """Shopify's side: sends sessions, plays the buyer, reads what Shopify was told."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        app_url: str,
        sandbox: SandboxShopifyClient,
        store: SessionStore,
    ) -> None:
        self.http, self.app_url, self.sandbox, self.store = http, app_url, sandbox, store

    async def pay(self, buyer: str = "approved", **overrides: Any) -> str:
        opened = await open_payment(self.http, self.app_url, self.sandbox, shop=SHOP, **overrides)
        await self.sandbox.buyer(buyer, change=True)
        async with self.http.get(opened.redirect_url) as page:  # the buyer's browser
            assert page.status == 200
        return opened.id

    async def settle(self, kind: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        status, _ = await send_session(self.http, self.app_url, self.sandbox, kind, body, shop=SHOP)
        assert status == 201
        session = await wait_final(self.store, body["id"])
        calls = [c for c in await self.sandbox.calls(gid=body["gid"]) if c["applied"]]
        assert len(calls) == 1, calls
        assert session.state is State.REPORTED
        return calls[0]["mutation"], calls[0]["variables"]


@pytest.fixture
def shop(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    worker: WorkerProcess,
) -> Shop:
    return Shop(http, app_url, sandbox, store)


async def test_an_authorization_is_captured_refunded_and_never_over_captured(
    shop: Shop, store: SessionStore
) -> None:
    payment = await shop.pay(amount="100.00")
    session = await wait_final(store, payment)
    assert session.report is Report.RESOLVED
    [resolve] = await shop.sandbox.calls(gid=f"gid://shopify/PaymentSession/{payment}")
    assert resolve["mutation"] == "paymentSessionResolve"
    assert resolve["variables"]["authorizationExpiresAt"].endswith("Z")

    mutation, _ = await shop.settle(
        "capture", build_capture_body(payment_id=payment, amount="60.00", currency="EUR")
    )
    assert mutation == "captureSessionResolve"
    mutation, variables = await shop.settle(
        "capture", build_capture_body(payment_id=payment, amount="60.00", currency="EUR")
    )
    assert mutation == "captureSessionReject"
    assert variables["reason"] == {
        "code": "PROCESSING_ERROR",
        "merchantMessage": "capture 60.00 EUR exceeds the 40.00 EUR still authorized",
    }

    mutation, _ = await shop.settle("refund", refund_body(payment, amount="30.00"))
    assert mutation == "refundSessionResolve"
    mutation, variables = await shop.settle("refund", refund_body(payment, amount="40.00"))
    assert mutation == "refundSessionReject"
    assert variables["reason"]["merchantMessage"] == (
        "refund 40.00 EUR exceeds the 30.00 EUR captured and not yet refunded"
    )
    mutation, variables = await shop.settle("void", void_body(payment))
    assert mutation == "voidSessionReject"
    assert "already captured" in variables["reason"]["merchantMessage"]


async def test_a_voided_authorization_cannot_be_captured(shop: Shop) -> None:
    payment = await shop.pay(amount="50.00")
    mutation, _ = await shop.settle("void", void_body(payment))
    assert mutation == "voidSessionResolve"
    mutation, variables = await shop.settle(
        "capture", build_capture_body(payment_id=payment, amount="1.00", currency="EUR")
    )
    assert mutation == "captureSessionReject"
    assert variables["reason"]["merchantMessage"] == (
        "capture refused: the authorization has been voided"
    )
    mutation, _ = await shop.settle("void", void_body(payment))
    assert mutation == "voidSessionReject"


async def test_a_sale_is_resolved_without_expiry_and_refundable_but_not_capturable(
    shop: Shop, store: SessionStore
) -> None:
    payment = await shop.pay(amount="20.00", kind="sale")
    await wait_final(store, payment)
    [resolve] = await shop.sandbox.calls(gid=f"gid://shopify/PaymentSession/{payment}")
    assert "authorizationExpiresAt" not in resolve["variables"]
    mutation, _ = await shop.settle("refund", refund_body(payment, amount="20.00"))
    assert mutation == "refundSessionResolve"
    mutation, _ = await shop.settle(
        "capture", build_capture_body(payment_id=payment, amount="5.00", currency="EUR")
    )
    assert mutation == "captureSessionReject"


async def test_a_capture_in_another_currency_is_rejected_saying_why(shop: Shop) -> None:
    payment = await shop.pay(amount="20.00")
    _, variables = await shop.settle(
        "capture", build_capture_body(payment_id=payment, amount="5.00", currency="USD")
    )
    assert variables["reason"]["merchantMessage"] == (
        "capture in USD refused: the payment is in EUR"
    )


async def test_a_declined_buyer_is_a_rejected_payment(shop: Shop, store: SessionStore) -> None:
    payment = await shop.pay("declined")
    session = await wait_final(store, payment)
    assert session.report is Report.REJECTED
    [call] = await shop.sandbox.calls(gid=f"gid://shopify/PaymentSession/{payment}")
    assert call["mutation"] == "paymentSessionReject"
    assert call["variables"]["reason"]["code"] == "PROCESSING_ERROR"


async def test_a_pending_payment_is_reported_pending_then_resolved(
    shop: Shop, store: SessionStore, http: aiohttp.ClientSession, app_url: str
) -> None:
    payment = await shop.pay("pending")
    gid = f"gid://shopify/PaymentSession/{payment}"
    session = await wait_state(store, payment, State.PENDING)
    # The metrics find it among the pending payments, due when its window closes.
    assert await store.redis.zscore(PENDING, payment) == session.pending_expires_at
    assert await store.redis.zscore(WORKABLE, payment) is None
    [pending] = await shop.sandbox.calls(gid=gid)
    assert pending["mutation"] == "paymentSessionPending"
    assert pending["variables"]["reason"] == "BUYER_ACTION_REQUIRED"
    # Later the buyer completes the payment at the PSP.
    await shop.sandbox.buyer(None, change=True)
    callback = f"{app_url}/psp/simulator/payments/{payment}"
    async with http.post(
        f"{shop.sandbox.base_url}/pay/{payment}/decide",
        data={"outcome": "approved", "callback": callback},
    ) as answer:
        assert answer.status == 200
    session = await wait_final(store, payment)
    assert session.report is Report.RESOLVED
    assert await store.redis.zmscore(PENDING, [payment]) == [None]
    assert await store.redis.zmscore(WORKABLE, [payment]) == [None]
    assert [c["mutation"] for c in await shop.sandbox.calls(gid=gid)] == [
        "paymentSessionPending",
        "paymentSessionResolve",
    ]


async def test_two_captures_racing_for_the_rest_of_an_authorization_one_wins(
    shop: Shop, store: SessionStore
) -> None:
    payment = await shop.pay(amount="80.00")
    await wait_final(store, payment)
    bodies = [
        build_capture_body(payment_id=payment, amount="80.00", currency="EUR") for _ in range(2)
    ]
    for body in bodies:
        await shop.sandbox.register([body["gid"]])
    await asyncio.gather(
        *(
            post_session(
                shop.http,
                url=f"{shop.app_url}/capture_sessions",
                body=body,
                shop=SHOP,
                api_version="2025-10",
            )
            for body in bodies
        )
    )
    reports = sorted([(await wait_final(store, b["id"])).report for b in bodies])
    assert reports == [Report.REJECTED, Report.RESOLVED]


async def test_a_forged_psp_callback_changes_nothing(
    shop: Shop, store: SessionStore, http: aiohttp.ClientSession, app_url: str
) -> None:
    payment = await open_payment(http, app_url, shop.sandbox, shop=SHOP)
    async with http.post(
        f"{app_url}/psp/simulator/payments/{payment.id}",
        json={"outcome": "approved", "reference": "forged"},
        headers={"X-Payhook-Signature": "sha256=00"},
    ) as answer:
        assert answer.status == 401
        assert (await answer.json())["error"]["code"] == "bad_signature"
    session = await store.get(payment.id)
    assert session is not None
    assert (session.state, session.outcome) == (State.RECEIVED, None)
