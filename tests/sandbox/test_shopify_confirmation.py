"""The sandbox Shopify's `paymentSessionConfirm`: its schema, its rules, and the confirmation
request it then sends the app, to a real HTTP server standing in for the app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport
from graphql import print_type

from sandbox.shopify_schema import build_schema
from sandbox.state import SANDBOX_STATE
from tests.sandbox.conftest import ServerFactory
from tests.sandbox.helpers import (
    AUTH,
    GRAPHQL_PATH,
    PAYMENT_REJECT,
    PAYMENT_RESOLVE,
    SHOP,
    add_fault,
    gid,
    mutate,
)
from workers.shopify.mutations import confirm_payment

CONFIRM = confirm_payment("gid://shopify/PaymentSession/x").document
NOT_CONFIRMED = {"code": "CONFIRMATION_REJECTED", "merchantMessage": "not confirmed"}

# As the reference schema (2025-10 and 2026-04) has them.
REFERENCE = {
    "PaymentSessionConfirmPayload": """type PaymentSessionConfirmPayload {
  paymentSession: PaymentSession
  userErrors: [PaymentSessionConfirmUserError!]!
}""",
    "PaymentSessionConfirmUserError": "type PaymentSessionConfirmUserError implements "
    """DisplayableError {
  code: PaymentSessionConfirmUserErrorCode
  field: [String!]
  message: String!
}""",
    "PaymentSessionConfirmUserErrorCode": """enum PaymentSessionConfirmUserErrorCode {
  CONFIRMATION_NOT_SUPPORTED
  INVALID_STATE_TRANSITION
  PAYMENT_SESSION_NOT_FOUND
}""",
    "DisplayableError": """interface DisplayableError {
  field: [String!]
  message: String!
}""",
}


class App:
    """The payments app's confirmation_callback_url: records each request, answers from a
    script (then 201)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.json()))
        status = self.answers.pop(0) if self.answers else 201
        return web.json_response({}, status=status)

    async def until_received(self, count: int) -> None:
        for _ in range(200):
            if len(self.received) >= count:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"{len(self.received)} confirmation requests, not {count}")


Start = Callable[..., Awaitable[App]]


@pytest.fixture
def app_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Start:
    async def start(answers: list[int] | None = None) -> App:
        app = App(answers)
        web_app = web.Application()
        web_app.router.add_post("/payment_confirmations", app.handle)
        server = await aiohttp_server(web_app)
        app.url = str(server.make_url("/payment_confirmations"))
        return app

    return start


async def register(http: TestClient[Any, Any], target: str, url: str | None) -> None:
    body: dict[str, Any] = {"gids": [target]}
    if url is not None:
        body["confirmation_callback_url"] = url
    response = await http.post("/_sandbox/sessions", json=body)
    assert response.status == 200, await response.text()


async def deliveries(http: TestClient[Any, Any], target: str) -> list[dict[str, Any]]:
    response = await http.get("/_sandbox/confirmations", params={"gid": target})
    sent: list[dict[str, Any]] = (await response.json())["confirmations"]
    return sent


def test_payment_session_confirm_is_served_as_the_reference_has_it() -> None:
    schema = build_schema()
    for name, sdl in REFERENCE.items():
        assert print_type(schema.get_type(name)) == sdl  # type: ignore[arg-type]
    field = schema.mutation_type.fields["paymentSessionConfirm"]  # type: ignore[union-attr]
    assert str(field.type) == "PaymentSessionConfirmPayload"
    assert {name: str(arg.type) for name, arg in field.args.items()} == {"id": "ID!"}
    assert "PaymentSessionStateConfirming" in {
        t.name
        for t in schema.get_type("PaymentSessionStates").types  # type: ignore[union-attr]
    }


async def test_a_confirmed_payment_gets_its_confirmation_request_then_is_resolved(
    http: TestClient[Any, Any], gql_session: AsyncClientSession, app_server: Start
) -> None:
    app = await app_server()
    target = gid("payment")
    await register(http, target, app.url)

    payload = await mutate(gql_session, CONFIRM, id=target)

    assert payload["userErrors"] == []
    assert payload["paymentSession"]["state"]["__typename"] == "PaymentSessionStateConfirming"
    await app.until_received(1)
    [(headers, body)] = app.received
    assert body == {"gid": target, "confirmation_result": True}
    assert headers["Shopify-Shop-Domain"] == SHOP
    assert headers["Shopify-Api-Version"] == "2025-10"
    resolved = await mutate(gql_session, PAYMENT_RESOLVE, id=target)
    assert resolved["userErrors"] == []
    assert resolved["paymentSession"]["state"]["__typename"] == "PaymentSessionStateResolved"


async def test_an_answer_that_is_not_2xx_is_retried_until_the_app_takes_it(
    http: TestClient[Any, Any], gql_session: AsyncClientSession, app_server: Start
) -> None:
    app = await app_server([500, 503])
    target = gid("payment")
    await register(http, target, app.url)

    await mutate(gql_session, CONFIRM, id=target)

    await app.until_received(3)
    for _ in range(100):
        [sent] = await deliveries(http, target)
        if sent["status"] is not None:
            break
        await asyncio.sleep(0.02)
    assert (sent["status"], sent["attempts"]) == (201, 3)
    # The same request each time: one confirmation, delivered until taken.
    assert {body["confirmation_result"] for _, body in app.received} == {True}
    assert len({headers["Shopify-Request-Id"] for headers, _ in app.received}) == 3


async def test_retries_are_bounded_when_the_app_never_takes_it(
    shopify: TestServer,
    http: TestClient[Any, Any],
    gql_session: AsyncClientSession,
    app_server: Start,
) -> None:
    shopify.app[SANDBOX_STATE].confirmations.retry_delays = (0.01, 0.01)
    app = await app_server([500] * 10)
    target = gid("payment")
    await register(http, target, app.url)

    await mutate(gql_session, CONFIRM, id=target)

    await app.until_received(3)
    await asyncio.sleep(0.2)
    assert len(app.received) == 3
    [sent] = await deliveries(http, target)
    assert (sent["status"], sent["attempts"]) == (500, 3)


async def test_do_not_confirm_says_so_and_only_a_reject_can_follow(
    http: TestClient[Any, Any], gql_session: AsyncClientSession, app_server: Start
) -> None:
    app = await app_server()
    target = gid("payment")
    await register(http, target, app.url)
    await add_fault(http, {"kind": "do_not_confirm", "times": 1})

    assert (await mutate(gql_session, CONFIRM, id=target))["userErrors"] == []

    await app.until_received(1)
    assert app.received[0][1] == {"gid": target, "confirmation_result": False}
    refused = await mutate(gql_session, PAYMENT_RESOLVE, id=target)
    assert refused["paymentSession"] is None
    assert refused["userErrors"]
    rejected = await mutate(gql_session, PAYMENT_REJECT, id=target, reason=NOT_CONFIRMED)
    assert rejected["paymentSession"]["state"]["reason"] == "CONFIRMATION_REJECTED"


async def test_a_repeated_confirm_answers_the_same_and_sends_no_second_request(
    http: TestClient[Any, Any], gql_session: AsyncClientSession, app_server: Start
) -> None:
    app = await app_server()
    target = gid("payment")
    await register(http, target, app.url)

    first = await mutate(gql_session, CONFIRM, id=target)
    again = await mutate(gql_session, CONFIRM, id=target)

    assert again == first
    await app.until_received(1)
    await asyncio.sleep(0.2)
    assert len(app.received) == 1
    assert len(await deliveries(http, target)) == 1


async def test_an_app_without_a_confirmation_callback_url_is_not_supported(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    target = gid("payment")
    await register(http, target, None)

    payload = await mutate(gql_session, CONFIRM, id=target)

    assert payload["paymentSession"] is None
    assert [e["code"] for e in payload["userErrors"]] == ["CONFIRMATION_NOT_SUPPORTED"]
    assert await deliveries(http, target) == []
    assert (await mutate(gql_session, PAYMENT_RESOLVE, id=target))["userErrors"] == []


async def test_the_apps_default_confirmation_callback_url_serves_every_session(
    shopify_factory: ServerFactory, aiohttp_client: Any, app_server: Start
) -> None:
    app = await app_server()
    shopify = await shopify_factory(confirmation_callback_url=app.url)
    http = await aiohttp_client(shopify)
    target = gid("payment")
    await register(http, target, None)
    transport = AIOHTTPTransport(url=str(shopify.make_url(GRAPHQL_PATH)), headers=AUTH)
    async with Client(transport=transport) as session:
        data = await session.execute(GraphQLRequest(CONFIRM, variable_values={"id": target}))
    assert data["paymentSessionConfirm"]["userErrors"] == []
    await app.until_received(1)


@pytest.mark.parametrize(
    ("before", "code"),
    [("resolve", "INVALID_STATE_TRANSITION"), (None, "PAYMENT_SESSION_NOT_FOUND")],
)
async def test_confirm_refusals_carry_the_confirm_codes(
    http: TestClient[Any, Any],
    gql_session: AsyncClientSession,
    app_server: Start,
    before: str | None,
    code: str,
) -> None:
    app = await app_server()
    target = gid("payment")
    if before is not None:
        await register(http, target, app.url)
        await mutate(gql_session, PAYMENT_RESOLVE, id=target)

    payload = await mutate(gql_session, CONFIRM, id=target)

    assert [e["code"] for e in payload["userErrors"]] == [code]
    assert app.received == []


async def test_a_confirmation_callback_url_off_this_machine_is_refused(
    http: TestClient[Any, Any],
) -> None:
    response = await http.post(
        "/_sandbox/sessions",
        json={"gids": [gid("payment")], "confirmation_callback_url": "https://example.com/c"},
    )
    assert response.status == 400
