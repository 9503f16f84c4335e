"""Playing Shopify: the session sender, the admin client, and a sandbox on a real port."""

from __future__ import annotations

import re
import string
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from gql import Client, GraphQLRequest
from gql.transport.aiohttp import AIOHTTPTransport

from sandbox.client import SandboxAdminError, SandboxShopifyClient
from sandbox.shopify import start_shopify_sandbox
from sandbox.shopify_side import build_capture_body, send_capture_session
from tests.sandbox.helpers import AUTH, SHOP, gid, resolve_doc

Received = list[tuple[dict[str, str], dict[str, Any]]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def admin(shopify: TestServer, session: aiohttp.ClientSession) -> SandboxShopifyClient:
    return SandboxShopifyClient(str(shopify.make_url("/")), session)


async def _fake_payhook(aiohttp_server: Any, statuses: list[int]) -> tuple[str, Received]:
    """An app that answers `statuses` in turn (the last one forever) and keeps what it got."""
    received: Received = []

    async def capture_sessions(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.json()))
        return web.Response(status=statuses[min(len(received), len(statuses)) - 1])

    app = web.Application()
    app.router.add_post("/capture_sessions", capture_sessions)
    server = await aiohttp_server(app)
    return str(server.make_url("/")), received


async def test_capture_session_is_registered_delivered_and_retried(
    aiohttp_server: Any, admin: SandboxShopifyClient, session: aiohttp.ClientSession
) -> None:
    app_url, received = await _fake_payhook(aiohttp_server, [503, 201])

    sent = await send_capture_session(
        session,
        app_url=app_url,
        sandbox=admin,
        shop=SHOP,
        payment_id="pay_1",
        amount="12.50",
        currency="CAD",
        retry_delays=(0.01, 0.01),
    )

    assert (sent.status, sent.attempts) == (201, 2)
    assert [body for _, body in received] == [sent.body, sent.body]
    headers = [h for h, _ in received]
    assert {h["Shopify-Shop-Domain"] for h in headers} == {SHOP}
    assert {h["Shopify-Api-Version"] for h in headers} == {"2025-10"}
    assert {h["Content-Type"] for h in headers} == {"application/json"}
    assert len({h["Shopify-Request-Id"] for h in headers}) == 2
    assert await admin.session_state(sent.gid) == {
        "gid": sent.gid,
        "kind": "capture",
        "state": None,
        "mutation": None,
        "reason": None,
        "authorizationExpiresAt": None,
        "pendingExpiresAt": None,
    }


async def test_sender_gives_up_with_the_last_status(
    aiohttp_server: Any, admin: SandboxShopifyClient, session: aiohttp.ClientSession
) -> None:
    app_url, received = await _fake_payhook(aiohttp_server, [500])

    sent = await send_capture_session(
        session,
        app_url=app_url,
        sandbox=admin,
        shop=SHOP,
        payment_id="pay_1",
        amount="1.00",
        currency="USD",
        session_id="fixed-id",
        retry_delays=(0.01, 0.01, 0.01),
    )

    assert (sent.status, sent.attempts, len(received)) == (500, 4, 4)
    assert sent.gid == "gid://shopify/CaptureSession/fixed-id"


async def test_sender_raises_when_the_app_is_unreachable(
    admin: SandboxShopifyClient, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.ClientConnectionError):
        await send_capture_session(
            session,
            app_url="http://127.0.0.1:1",
            sandbox=admin,
            shop=SHOP,
            payment_id="pay_1",
            amount="1.00",
            currency="USD",
            retry_delays=(0.01,),
        )


def test_capture_body_has_the_documented_fields() -> None:
    body = build_capture_body(payment_id="pay_9", amount="123.00", currency="CAD")

    assert len(body["id"]) == 24
    assert set(body["id"]) <= set(string.ascii_letters + string.digits + "-_")
    assert body["gid"] == f"gid://shopify/CaptureSession/{body['id']}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["proposed_at"])
    assert datetime.fromisoformat(body["proposed_at"]).tzinfo is not None
    assert {k: body[k] for k in ("payment_id", "amount", "currency", "merchant_locale")} == {
        "payment_id": "pay_9",
        "amount": "123.00",
        "currency": "CAD",
        "merchant_locale": "en",
    }
    assert body["test"] is True


async def test_admin_client_round_trip(admin: SandboxShopifyClient) -> None:
    target = gid("refund", "r1")

    assert await admin.session_state(target) is None
    await admin.register([target])
    armed = await admin.add_fault({"kind": "delay", "seconds": 0.5, "times": 2})
    listed = await admin.faults()
    await admin.clear_faults()

    assert (await admin.session_state(target) or {})["kind"] == "refund"
    assert armed == {"kind": "delay", "seconds": 0.5, "times": 2}
    assert listed == [{**armed, "remaining": 2}]
    assert await admin.faults() == []
    with pytest.raises(SandboxAdminError, match="status") as refused:
        await admin.add_fault({"kind": "status", "status": 418, "times": 1})
    assert refused.value.status == 400
    await admin.reset()
    assert await admin.session_state(target) is None
    assert await admin.calls() == []


async def test_started_sandbox_serves_on_a_free_port(session: aiohttp.ClientSession) -> None:
    running = await start_shopify_sandbox("127.0.0.1", 0, strict_sessions=False)
    try:
        assert running.port > 0
        assert running.graphql_url_template == (
            f"{running.url}/{{shop}}/payments_apps/api/{{version}}/graphql.json"
        )
        transport = AIOHTTPTransport(url=running.graphql_url(SHOP), headers=AUTH)
        async with Client(transport=transport) as gql_session:
            request = GraphQLRequest(resolve_doc("void"), variable_values={"id": gid("void")})
            data = await gql_session.execute(request)
        admin = SandboxShopifyClient(running.url, session)
        recorded = await admin.calls(gid=gid("void"))
    finally:
        await running.close()

    assert data["voidSessionResolve"]["userErrors"] == []
    assert [(c["mutation"], c["applied"]) for c in recorded] == [("voidSessionResolve", True)]
    with pytest.raises(aiohttp.ClientConnectionError):
        await session.get(running.url + "/_sandbox/calls")
