"""Payment confirmation and test mode end to end, with real processes: the web app on a TCP
port, `payhook worker` (and `payhook beat`) as subprocesses, a real redis-server, the sandbox
Shopify as a real server sending its confirmation requests to the app, and the `http`
connector's fake as a real server.

- Confirmation on: an approved payment is `paymentSessionConfirm`ed, Shopify's confirmation
  request comes to `/payment_confirmations`, and the payment is resolved; "do not confirm"
  ends in `paymentSessionReject` `CONFIRMATION_REJECTED`; a repeated request changes nothing;
  a worker killed between the confirm and the resolve leaves a payment settled once.
- Confirmation off: resolved at once, as before.
- Test mode: a test session is never sent to a live PSP account, and is rejected saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.client import SandboxShopifyClient
from sandbox.psp import RunningFake, connector_environment, start_psp_fake
from sandbox.shopify_side import send_capture_session
from sessions.ledger_store import LedgerStore
from sessions.models import Report
from sessions.states import State
from sessions.store import SessionStore
from tests.factories import shopify_headers
from tests.integration import faults_support
from tests.integration.conftest import ServeApp, open_payment, psp_says, until, wait_final
from tests.integration.faults_support import SHOP, Fleet, kill_group

pytestmark = pytest.mark.integration

CONFIRM, RESOLVE, REJECT = "paymentSessionConfirm", "paymentSessionResolve", "paymentSessionReject"
CONFIRMATION_ON = {"PAYHOOK_PAYMENT_CONFIRMATION": "true"}


# The fault modules' fixtures (tests/integration/faults_support.py).
settings = faults_support.settings_with_psp_callbacks
fresh_database = faults_support.fresh_database
fleet = faults_support.fleet


class Checkout:
    """Shopify and the buyer's PSP: a payment session, then the PSP's signed approval."""

    def __init__(
        self, http: aiohttp.ClientSession, app_url: str, sandbox: SandboxShopifyClient
    ) -> None:
        self.http, self.app_url, self.sandbox = http, app_url, sandbox

    async def pay(self, **overrides: Any) -> tuple[str, str]:
        payment = await open_payment(
            self.http,
            self.app_url,
            self.sandbox,
            shop=SHOP,
            # As the extension's confirmation_callback_url points Shopify at the app.
            confirmation_callback_url=f"{self.app_url}/payment_confirmations",
            **overrides,
        )
        status, _ = await psp_says(self.http, self.app_url, payment.id, "approved")
        assert status == 200
        return payment.id, payment.gid

    async def confirmation(self, gid: str, result: bool) -> int:
        """Shopify sending its confirmation request (again)."""
        body = {"gid": gid, "confirmation_result": result}
        async with self.http.post(
            f"{self.app_url}/payment_confirmations",
            json=body,
            headers=shopify_headers(**{"Shopify-Shop-Domain": SHOP}),
        ) as answer:
            return answer.status


@pytest.fixture
def checkout(http: aiohttp.ClientSession, app_url: str, sandbox: SandboxShopifyClient) -> Checkout:
    return Checkout(http, app_url, sandbox)


async def applied(sandbox: SandboxShopifyClient, gid: str) -> list[str]:
    return [c["mutation"] for c in await sandbox.calls(gid=gid) if c["applied"]]


async def test_a_payment_is_resolved_once_shopify_confirms_it(
    fleet: Fleet, checkout: Checkout, sandbox: SandboxShopifyClient, store: SessionStore
) -> None:
    await asyncio.to_thread(fleet.worker, fleet.env(**CONFIRMATION_ON))

    session_id, gid = await checkout.pay()

    session = await wait_final(store, session_id)
    assert (session.state, session.report, session.confirmation_result) == (
        State.REPORTED,
        Report.RESOLVED,
        True,
    )
    assert await applied(sandbox, gid) == [CONFIRM, RESOLVE]
    [sent] = await sandbox.confirmations(gid)
    assert (sent["confirmation_result"], sent["status"]) == (True, 201)
    events = [e.event for e in await store.timeline(session_id)]
    # Shopify's request may overtake the confirm's answer on a busy host: it then takes the
    # session from the worker, whose own "requested" write changes nothing.
    assert "confirmation" in events
    if "confirmation_requested" in events:
        assert events.index("confirmation_requested") < events.index("confirmation")
    assert await LedgerStore(store.redis).get(session_id) is not None


async def test_a_payment_shopify_does_not_confirm_is_rejected_confirmation_rejected(
    fleet: Fleet, checkout: Checkout, sandbox: SandboxShopifyClient, store: SessionStore
) -> None:
    await asyncio.to_thread(fleet.worker, fleet.env(**CONFIRMATION_ON))
    await sandbox.add_fault({"kind": "do_not_confirm", "times": 1})

    session_id, gid = await checkout.pay()

    session = await wait_final(store, session_id)
    assert (session.state, session.report, session.confirmation_result) == (
        State.REPORTED,
        Report.REJECTED,
        False,
    )
    assert await applied(sandbox, gid) == [CONFIRM, REJECT]
    [*_, reject] = await sandbox.calls(gid=gid)
    assert reject["variables"]["reason"]["code"] == "CONFIRMATION_REJECTED"
    assert (await sandbox.session_state(gid) or {})["state"] == "rejected"
    # Shopify was told there is no payment: nothing can be captured against it.
    assert await LedgerStore(store.redis).get(session_id) is None


async def test_a_repeated_confirmation_request_changes_nothing(
    fleet: Fleet, checkout: Checkout, sandbox: SandboxShopifyClient, store: SessionStore
) -> None:
    await asyncio.to_thread(fleet.worker, fleet.env(**CONFIRMATION_ON))
    session_id, gid = await checkout.pay()
    await wait_final(store, session_id)
    before = (await store.get(session_id), await store.timeline(session_id))

    assert await checkout.confirmation(gid, True) == 201
    assert await checkout.confirmation(gid, False) == 409
    await asyncio.sleep(1.0)  # time for a worker to act on anything queued

    assert (await store.get(session_id), await store.timeline(session_id)) == before
    assert await applied(sandbox, gid) == [CONFIRM, RESOLVE]


async def test_a_worker_killed_between_the_confirm_and_the_resolve_settles_the_payment_once(
    fleet: Fleet, checkout: Checkout, sandbox: SandboxShopifyClient, store: SessionStore
) -> None:
    env = fleet.env(**CONFIRMATION_ON)
    first, _ = await asyncio.gather(
        asyncio.to_thread(fleet.worker, env), asyncio.to_thread(fleet.beat, env)
    )
    # Shopify takes the confirm slowly: the worker dies waiting for its answer, and Shopify's
    # confirmation request reaches a payment whose worker never stored that it was asked.
    await sandbox.add_fault({"kind": "delay", "seconds": 1.5, "times": 1, "mutation": CONFIRM})
    session_id, gid = await checkout.pay()

    async def confirm_in_flight() -> bool:
        return await sandbox.faults() == []

    await until(confirm_in_flight, "the slow paymentSessionConfirm taken")
    await asyncio.to_thread(kill_group, first)

    async def confirmation_taken() -> bool:
        return [d["status"] for d in await sandbox.confirmations(gid)] == [201]

    await until(confirmation_taken, "Shopify's confirmation request answered 201")
    await asyncio.to_thread(fleet.worker, env, "second")

    session = await wait_final(store, session_id, patience=30)
    assert (session.state, session.report) == (State.REPORTED, Report.RESOLVED), session.last_error
    calls = await sandbox.calls(gid=gid)
    assert [c["mutation"] for c in calls] == [CONFIRM, RESOLVE]
    assert all(c["applied"] for c in calls)
    assert len(await sandbox.confirmations(gid)) == 1
    # The request overtook the worker: no run ever stored that Shopify took the confirm.
    events = [e.event for e in await store.timeline(session_id)]
    assert "confirmation" in events
    assert "confirmation_requested" not in events


async def test_with_confirmation_off_a_payment_is_resolved_at_once(
    fleet: Fleet, checkout: Checkout, sandbox: SandboxShopifyClient, store: SessionStore
) -> None:
    await asyncio.to_thread(fleet.worker, fleet.env())

    session_id, gid = await checkout.pay()

    session = await wait_final(store, session_id)
    assert (session.report, session.confirmation_result) == (Report.RESOLVED, None)
    assert await applied(sandbox, gid) == [RESOLVE]
    assert await sandbox.confirmations(gid) == []
    assert State.CONFIRMING not in [e.state for e in await store.timeline(session_id)]


# --- test mode -----------------------------------------------------------------------------


@pytest.fixture
async def http_psp() -> AsyncIterator[RunningFake]:
    fake = await start_psp_fake("http")
    yield fake
    await fake.close()


async def psp_calls(http: aiohttp.ClientSession, fake: RunningFake) -> list[dict[str, Any]]:
    async with http.get(f"{fake.url}/_sandbox/calls") as answer:
        calls: list[dict[str, Any]] = (await answer.json())["calls"]
        return calls


async def test_test_sessions_never_reach_a_live_psp_account(
    fleet: Fleet,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    sandbox: SandboxShopifyClient,
    store: SessionStore,
    http_psp: RunningFake,
) -> None:
    live = {**connector_environment("http", http_psp.url, "psp-token")}
    live["PAYHOOK_HTTP_CONNECTOR_ACCOUNT"] = "live"
    await asyncio.to_thread(fleet.worker, fleet.env(**live))
    app_url = await serve_app(connector="http", http_connector_url=http_psp.url)
    checkout = Checkout(http, app_url, sandbox)

    # A live payment opens the book the captures draw on; a test one is sent back to checkout.
    payment, _ = await checkout.pay(test=False)
    assert (await wait_final(store, payment)).report is Report.RESOLVED
    back = await open_payment(http, app_url, sandbox, shop=SHOP, test=True)
    assert back.answer == {"redirect_url": back.body["payment_method"]["data"]["cancel_url"]}
    assert (await wait_final(store, back.id)).report is Report.REJECTED

    captures = {
        test: await send_capture_session(
            http,
            app_url=app_url,
            sandbox=sandbox,
            shop=SHOP,
            payment_id=payment,
            amount="10.00",
            currency="EUR",
            test=test,
        )
        for test in (True, False)
    }
    assert [c.status for c in captures.values()] == [201, 201]
    refused = await wait_final(store, captures[True].id)
    taken = await wait_final(store, captures[False].id)

    assert (refused.report, taken.report) == (Report.REJECTED, Report.RESOLVED)
    [reject] = await sandbox.calls(gid=captures[True].gid)
    assert reject["variables"]["reason"]["merchantMessage"].startswith("Test mode:")
    # The PSP heard of the live capture only, with its flag.
    assert [(c["operation"], c["idempotency_key"]) for c in await psp_calls(http, http_psp)] == [
        ("capture", captures[False].id)
    ]
