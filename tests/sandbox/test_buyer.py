"""The simulator PSP's buyer page in the sandbox: it calls payhook back signed as
`webhook.signing` says, and without a secret it calls nobody."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.factories import CALLBACK_SECRET
from tests.sandbox.conftest import ServerFactory
from webhook.signing import signed_at, simulator_reference


async def receiver(aiohttp_server: Any) -> tuple[TestServer, list[tuple[bytes, bytes]]]:
    """A stand-in for payhook's callback route that records (signature, body)."""
    received: list[tuple[bytes, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        received.append((request.headers["X-Payhook-Signature"].encode(), await request.read()))
        return web.json_response({"status": "accepted"})

    app = web.Application()
    app.router.add_post("/psp/simulator/payments/{session_id}", record)
    return await aiohttp_server(app), received


async def decide(
    aiohttp_client: Any, server: TestServer, sandbox: TestServer, session_id: str
) -> int:
    """The buyer presses Approve on the sandbox's page for `session_id`."""
    callback = str(server.make_url(f"/psp/simulator/payments/{session_id}"))
    page: TestClient[Any, Any] = await aiohttp_client(sandbox)
    answer = await page.post(
        f"/pay/{session_id}/decide", data={"outcome": "approved", "callback": callback}
    )
    return answer.status


async def test_the_callback_is_signed_for_its_session_and_the_moment(
    aiohttp_server: Any, aiohttp_client: Any, shopify_factory: ServerFactory
) -> None:
    server, received = await receiver(aiohttp_server)
    sandbox = await shopify_factory(callback_secret=CALLBACK_SECRET)
    assert await decide(aiohttp_client, server, sandbox, "pay-7") == 200
    [(signature, raw)] = received
    signed = signed_at(signature, CALLBACK_SECRET, "pay-7", raw)
    assert signed is not None
    assert abs(signed - time.time()) < 5
    assert signed_at(signature, CALLBACK_SECRET, "pay-8", raw) is None
    assert json.loads(raw)["reference"] == simulator_reference("pay-7")


async def test_without_a_secret_the_buyer_page_calls_nobody_back(
    aiohttp_server: Any, aiohttp_client: Any, shopify_factory: ServerFactory
) -> None:
    server, received = await receiver(aiohttp_server)
    sandbox = await shopify_factory()
    assert await decide(aiohttp_client, server, sandbox, "pay-7") == 503
    assert received == []


async def test_a_57_amount_left_pending_is_held_for_the_merchant(
    aiohttp_server: Any, aiohttp_client: Any, shopify_factory: ServerFactory
) -> None:
    server, received = await receiver(aiohttp_server)
    sandbox = await shopify_factory(callback_secret=CALLBACK_SECRET)
    page: TestClient[Any, Any] = await aiohttp_client(sandbox)
    cases = [
        ("10.57", "EUR", "merchant_action_required"),
        ("1057", "JPY", "merchant_action_required"),
        ("10.58", "EUR", None),
        ("10.5", "EUR", None),  # 1050 cents
        ("not money", "EUR", None),
        ("10.57", "XYZ", None),
        ("1e999999999", "EUR", None),
        ("NaN", "EUR", None),
    ]
    for index, (amount, currency, _) in enumerate(cases):
        session_id = f"pend-{index}"
        callback = str(server.make_url(f"/psp/simulator/payments/{session_id}"))
        form = {"outcome": "pending", "callback": callback, "amount": amount, "currency": currency}
        assert (await page.post(f"/pay/{session_id}/decide", data=form)).status == 200
    reasons = [json.loads(raw).get("pending_reason") for _, raw in received]
    assert reasons == [reason for _, _, reason in cases]

    # The page itself carries the amount into its form, and `auto` reads it from the URL.
    callback = str(server.make_url("/psp/simulator/payments/pend-auto"))
    shown = await page.get("/pay/pend-auto", params={"amount": "3.57", "currency": "USD"})
    assert 'name="amount" value="3.57"' in await shown.text()
    await page.post("/_sandbox/buyer", json={"auto": "pending"})
    query = {"amount": "3.57", "currency": "USD", "callback": callback}
    assert (await page.get("/pay/pend-auto", params=query)).status == 200
    assert json.loads(received[-1][1])["pending_reason"] == "merchant_action_required"
    # Only a payment left pending: an approval on a 57 amount is an approval.
    await page.post("/_sandbox/buyer", json={"auto": "approved"})
    assert (await page.get("/pay/pend-auto", params=query)).status == 200
    assert "pending_reason" not in json.loads(received[-1][1])


async def test_after_telling_payhook_the_page_sends_the_buyer_to_the_return_url(
    aiohttp_server: Any, aiohttp_client: Any, shopify_factory: ServerFactory
) -> None:
    server, received = await receiver(aiohttp_server)
    sandbox = await shopify_factory(callback_secret=CALLBACK_SECRET)
    page: TestClient[Any, Any] = await aiohttp_client(sandbox)
    callback = str(server.make_url("/psp/simulator/payments/pay-7"))
    back = str(server.make_url("/payments/pay-7/return"))
    form = await page.get("/pay/pay-7", params={"callback": callback, "return_url": back})
    assert 'name="return_url"' in await form.text()
    answer = await page.post(
        "/pay/pay-7/decide",
        data={"outcome": "cancelled", "callback": callback, "return_url": back},
        allow_redirects=False,
    )
    assert (answer.status, answer.headers["Location"]) == (303, back)
    # A cancel reaches payhook as the PSP reports one: a decline, saying why.
    [(_, raw)] = received
    assert json.loads(raw)["outcome"] == "declined"
    assert json.loads(raw)["message"] == "The buyer cancelled the payment on the payment page."


async def test_the_page_sends_the_buyer_back_only_to_this_machine(
    aiohttp_server: Any, aiohttp_client: Any, shopify_factory: ServerFactory
) -> None:
    server, received = await receiver(aiohttp_server)
    sandbox = await shopify_factory(callback_secret=CALLBACK_SECRET)
    page: TestClient[Any, Any] = await aiohttp_client(sandbox)
    answer = await page.post(
        "/pay/pay-7/decide",
        data={
            "outcome": "approved",
            "callback": str(server.make_url("/psp/simulator/payments/pay-7")),
            "return_url": "https://elsewhere.example/steal",
        },
        allow_redirects=False,
    )
    assert answer.status == 400
    assert received == []
