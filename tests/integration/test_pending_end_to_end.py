"""Pending payments end to end: the buyer on the simulator PSP's page, a real worker, the
sandbox Shopify checking each `paymentSessionPending` against its window, and answering
its userError codes when a fault says so."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from config import Settings
from sandbox.client import SandboxShopifyClient
from sandbox.ledger import PENDING_LIMIT_SECONDS
from sandbox.shopify import RunningShopifySandbox
from sessions.models import Report
from sessions.states import State
from sessions.store import SessionStore
from tests.integration.conftest import (
    ServeApp,
    WorkerProcess,
    buyer_page,
    open_payment,
    wait_final,
    wait_state,
)
from workers.lifecycle.reporting import PENDING_EXPIRED

pytestmark = pytest.mark.integration

SHOP = "pending-e2e.myshopify.com"
PENDING = "paymentSessionPending"


@pytest.fixture
async def app_url(serve_app: ServeApp, shopify_sandbox: RunningShopifySandbox) -> str:
    return await serve_app(**buyer_page(shopify_sandbox))


async def pay(
    http: aiohttp.ClientSession, app_url: str, sandbox: SandboxShopifyClient, amount: str
) -> dict[str, Any]:
    """A payment session from Shopify, whose buyer leaves it pending on the PSP's page."""
    opened = await open_payment(http, app_url, sandbox, shop=SHOP, amount=amount)
    await sandbox.buyer("pending", change=True)
    async with http.get(opened.redirect_url) as page:  # the buyer's browser
        assert page.status == 200
    return opened.body


async def test_a_payment_held_for_the_merchant_is_pending_for_that_reason_inside_the_limit(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    settings: Settings,
    worker: WorkerProcess,
) -> None:
    body = await pay(http, app_url, sandbox, "10.57")
    session = await wait_state(store, body["id"], State.PENDING)

    [call] = await sandbox.calls(gid=body["gid"])
    assert (call["mutation"], call["variables"]["reason"]) == (PENDING, "MERCHANT_ACTION_REQUIRED")
    closes = datetime.fromisoformat(call["variables"]["pendingExpiresAt"]).timestamp()
    assert closes == int(session.created_at + settings.pending_seconds)
    assert closes < call["at"] + PENDING_LIMIT_SECONDS - 600
    state = await sandbox.session_state(body["gid"])
    assert state is not None
    assert (state["state"], state["reason"]) == ("pending", {"code": "MERCHANT_ACTION_REQUIRED"})


async def test_a_window_shopify_says_has_closed_rejects_the_payment_in_the_same_run(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    worker: WorkerProcess,
) -> None:
    await sandbox.add_fault(
        {
            "kind": "user_error",
            "mutation": PENDING,
            "code": "EXPIRED_PENDING_EXPIRES_AT",
            "field": ["pendingExpiresAt"],
            "times": 1,
        }
    )
    body = await pay(http, app_url, sandbox, "20.00")

    session = await wait_final(store, body["id"])

    assert (session.state, session.report) == (State.REPORTED, Report.REJECTED)
    calls = await sandbox.calls(gid=body["gid"])
    assert [(c["mutation"], c["user_error_codes"]) for c in calls] == [
        (PENDING, ["EXPIRED_PENDING_EXPIRES_AT"]),
        ("paymentSessionReject", []),
    ]
    assert calls[1]["variables"]["reason"]["merchantMessage"] == PENDING_EXPIRED
    assert session.deliveries == 1  # one run did both


async def test_a_window_out_of_range_is_sent_again_until_shopify_takes_it(
    http: aiohttp.ClientSession,
    app_url: str,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    worker: WorkerProcess,
) -> None:
    await sandbox.add_fault(
        {
            "kind": "user_error",
            "mutation": PENDING,
            "code": "OUT_OF_RANGE_PENDING_EXPIRES_AT",
            "times": 2,
        }
    )
    began = time.time()
    body = await pay(http, app_url, sandbox, "30.00")

    await wait_state(store, body["id"], State.PENDING)

    calls = await sandbox.calls(gid=body["gid"])
    assert [c["user_error_codes"] for c in calls] == [
        ["OUT_OF_RANGE_PENDING_EXPIRES_AT"],
        ["OUT_OF_RANGE_PENDING_EXPIRES_AT"],
        [],
    ]
    assert len({c["variables"]["pendingExpiresAt"] for c in calls}) == 1
    assert all(c["at"] >= began for c in calls)
