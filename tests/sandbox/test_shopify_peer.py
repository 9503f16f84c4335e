"""The sandbox Shopify's GraphQL endpoint: session rules, auth, documents, call log, reset."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gql import GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError

from tests.sandbox.conftest import ServerFactory
from tests.sandbox.helpers import (
    AUTH,
    GRAPHQL_PATH,
    PAYMENT_PENDING,
    PAYMENT_REJECT,
    PAYMENT_RESOLVE,
    SHOP,
    add_fault,
    calls,
    gid,
    graphql,
    moment,
    mutate,
    register,
    reject_doc,
    resolve_doc,
    session_state,
)

KINDS = ["capture", "refund", "void"]
REASON = {"code": "PROCESSING_ERROR", "merchantMessage": "Declined by the PSP."}


async def _send(session: AsyncClientSession, kind: str, action: str, target: str) -> dict[str, Any]:
    if action == "resolve":
        return await mutate(session, resolve_doc(kind), id=target)
    return await mutate(session, reject_doc(kind), id=target, reason=REASON)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("first", "second", "refusal"),
    [
        ("resolve", "resolve", None),
        ("reject", "reject", None),
        ("resolve", "reject", "INVALID_STATE"),
        ("reject", "resolve", "INVALID_STATE"),
    ],
)
async def test_first_mutation_name_wins(
    kind: str,
    first: str,
    second: str,
    refusal: str | None,
    http: TestClient[Any, Any],
    gql_session: AsyncClientSession,
) -> None:
    target = gid(kind)
    await register(http, target)

    first_payload = await _send(gql_session, kind, first, target)
    second_payload = await _send(gql_session, kind, second, target)

    assert first_payload["userErrors"] == []
    if refusal is None:
        assert second_payload == first_payload
    else:
        assert second_payload[f"{kind}Session"] is None
        codes = [error["code"] for error in second_payload["userErrors"]]
        assert codes == [f"{kind.upper()}_SESSION_{refusal}"]
    state = await session_state(http, target)
    assert state["state"] == ("resolved" if first == "resolve" else "rejected")
    assert state["mutation"] == f"{kind}Session{first.capitalize()}"


async def test_repeated_reject_keeps_the_first_reason(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    target = gid("capture")
    await register(http, target)
    expired = {"code": "AUTHORIZATION_EXPIRED", "merchantMessage": "Authorization expired."}

    await mutate(gql_session, reject_doc("capture"), id=target, reason=expired)
    again = await mutate(gql_session, reject_doc("capture"), id=target, reason=REASON)

    assert again["userErrors"] == []
    assert again["captureSession"]["state"] == {
        "__typename": "CaptureSessionStateRejected",
        "code": "REJECTED",
        "reason": "AUTHORIZATION_EXPIRED",
        "merchantMessage": "Authorization expired.",
    }
    assert (await session_state(http, target))["reason"] == expired


async def test_unregistered_gid_is_not_found_in_strict_mode(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    payload = await mutate(gql_session, resolve_doc("capture"), id=gid("capture", "never-sent"))

    assert payload["captureSession"] is None
    assert payload["userErrors"][0]["code"] == "CAPTURE_SESSION_NOT_FOUND"
    assert (await http.get("/_sandbox/sessions/" + gid("capture", "never-sent"))).status == 404


async def test_lenient_mode_registers_unknown_gids(
    shopify_factory: ServerFactory, aiohttp_client: Any
) -> None:
    http = await aiohttp_client(await shopify_factory(strict_sessions=False))

    status, body = await graphql(http, resolve_doc("refund"), {"id": gid("refund", "adhoc")})

    assert status == 200
    assert body["data"]["refundSessionResolve"]["userErrors"] == []
    assert (await session_state(http, gid("refund", "adhoc")))["state"] == "resolved"


async def test_gid_of_another_kind_is_not_found(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    refund = gid("refund")
    await register(http, refund)

    payload = await mutate(gql_session, resolve_doc("capture"), id=refund)

    assert payload["userErrors"][0]["code"] == "CAPTURE_SESSION_NOT_FOUND"
    assert (await session_state(http, refund))["state"] is None


async def test_payment_pending_then_resolved_then_reject_refused(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    payment = gid("payment", "pay1")
    await register(http, payment)

    pending = await mutate(
        gql_session,
        PAYMENT_PENDING,
        id=payment,
        pendingExpiresAt=moment(86400),
        reason="PARTNER_ACTION_REQUIRED",
    )
    resolved = await mutate(
        gql_session, PAYMENT_RESOLVE, id=payment, authorizationExpiresAt="2025-01-03T00:00:00Z"
    )
    rejected = await mutate(gql_session, PAYMENT_REJECT, id=payment, reason=REASON)

    assert pending["paymentSession"]["state"]["pendingReason"] == "PARTNER_ACTION_REQUIRED"
    # The buyer goes next to the sandbox's own checkout page for this payment.
    thank_you = str(http.make_url("/_sandbox/checkout/pay1/thank_you"))
    assert pending["paymentSession"]["nextAction"] == {
        "action": "REDIRECT",
        "context": {"redirectUrl": thank_you},
    }
    assert resolved["paymentSession"]["nextAction"]["context"]["redirectUrl"] == thank_you
    assert resolved["paymentSession"]["state"]["code"] == "RESOLVED"
    assert resolved["paymentSession"]["authorizationExpiresAt"] == "2025-01-03T00:00:00Z"
    # Payment userErrors carry no code, only field and message.
    assert rejected == {
        "paymentSession": None,
        "userErrors": [{"field": ["id"], "message": "Payment session has already been resolved."}],
    }


async def test_a_rejected_payment_sends_the_buyer_to_a_checkout_page_that_knows_it(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    payment = gid("payment", "pay2")
    await register(http, payment)
    rejected = await mutate(gql_session, PAYMENT_REJECT, id=payment, reason=REASON)
    url = rejected["paymentSession"]["nextAction"]["context"]["redirectUrl"]
    assert url == str(http.make_url("/_sandbox/checkout/pay2/declined"))

    page = await http.get("/_sandbox/checkout/pay2/declined")
    assert page.status == 200
    assert "Your payment was not completed" in await page.text()
    assert "rejected" in await page.text()
    assert (await http.get("/_sandbox/checkout/pay2/elsewhere")).status == 404
    arrivals = (await (await http.get("/_sandbox/buyer")).json())["arrivals"]
    assert [(a["session_id"], a["page"], a["state"]) for a in arrivals] == [
        ("pay2", "declined", "rejected")
    ]


@pytest.mark.parametrize(
    ("tokens", "headers", "status"),
    [
        pytest.param({}, {}, 401, id="no-header"),
        pytest.param({}, {"X-Shopify-Access-Token": ""}, 401, id="empty-token"),
        pytest.param({SHOP: "right"}, {"X-Shopify-Access-Token": "wrong"}, 401, id="wrong-token"),
        pytest.param({SHOP: "right"}, {"X-Shopify-Access-Token": "right"}, 200, id="configured"),
        pytest.param({}, AUTH, 200, id="any-token-for-unconfigured-shop"),
    ],
)
async def test_access_token(
    tokens: dict[str, str],
    headers: dict[str, str],
    status: int,
    shopify_factory: ServerFactory,
    aiohttp_client: Any,
) -> None:
    http = await aiohttp_client(await shopify_factory(tokens=tokens, strict_sessions=False))

    got, body = await graphql(http, resolve_doc("void"), {"id": gid("void")}, headers=headers)

    assert got == status
    if status == 401:
        assert body == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }
        assert (await http.get("/_sandbox/sessions/" + gid("void"))).status == 404


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param("mutation {", "Syntax Error", id="syntax"),
        pytest.param(
            'mutation { captureSessionResolve(id: "x") { nope } }',
            "Cannot query field 'nope'",
            id="unknown-field",
        ),
        pytest.param(
            'mutation { captureSessionReject(id: "x", reason: {code: DECLINED}) '
            "{ userErrors { code } } }",
            "CaptureSessionStatusReasonRejectionCode",
            id="bad-enum",
        ),
        pytest.param(
            'mutation { refundSessionReject(id: "x") { userErrors { code } } }',
            "reason",
            id="missing-argument",
        ),
        pytest.param(
            'mutation { paymentSessionResolve(id: "x") { userErrors { code } } }',
            "Cannot query field 'code' on type 'UserError'",
            id="payment-errors-have-no-code",
        ),
    ],
)
async def test_invalid_documents_get_graphql_errors(
    document: str, message: str, http: TestClient[Any, Any]
) -> None:
    status, body = await graphql(http, document)

    assert status == 200
    assert "data" not in body
    assert message in body["errors"][0]["message"]
    assert [call["applied"] for call in await calls(http)] == [False]


async def test_gql_raises_on_invalid_documents(gql_session: AsyncClientSession) -> None:
    with pytest.raises(TransportQueryError, match="Cannot query field"):
        await gql_session.execute(GraphQLRequest("mutation { voidSessionResolve(id: 1) { x } }"))


async def test_invalid_date_time_is_refused_and_nothing_changes(
    http: TestClient[Any, Any],
) -> None:
    payment = gid("payment", "pay2")
    await register(http, payment)
    variables = {"id": payment, "pendingExpiresAt": "tomorrow", "reason": "BUYER_ACTION_REQUIRED"}

    status, body = await graphql(http, PAYMENT_PENDING, variables)

    assert status == 200
    assert "pendingExpiresAt" in body["errors"][0]["message"]
    assert (await session_state(http, payment))["state"] is None


@pytest.mark.parametrize(
    "raw", ["not json", '{"variables": {}}', '{"query": "{ sandbox }", "variables": [1]}']
)
async def test_unusable_body_is_bad_request(raw: str, http: TestClient[Any, Any]) -> None:
    response = await http.post(GRAPHQL_PATH, data=raw, headers=AUTH)

    assert response.status == 400
    assert (await calls(http))[0]["status"] == 400


async def test_answers_report_query_cost(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    await register(http, gid("capture"))
    request = GraphQLRequest(resolve_doc("capture"), variable_values={"id": gid("capture")})

    result = await gql_session.execute(request, get_execution_result=True)

    assert result.extensions is not None
    cost = result.extensions["cost"]
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (10, 10)
    throttle = cost["throttleStatus"]
    assert throttle["currentlyAvailable"] < throttle["maximumAvailable"]
    assert throttle["restoreRate"] > 0


async def test_calls_are_recorded_and_filterable(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    first, second = gid("capture", "a"), gid("capture", "b")
    await register(http, first, second)
    await _send(gql_session, "capture", "resolve", first)
    await _send(gql_session, "capture", "reject", first)
    await _send(gql_session, "capture", "resolve", second)

    everything = await calls(http)
    refused = await calls(http, mutation="captureSessionReject")
    only_second = await calls(http, gid=second, mutation="captureSessionResolve")

    assert [call["seq"] for call in everything] == [1, 2, 3]
    assert [call["gid"] for call in everything] == [first, first, second]
    assert {call["shop"] for call in everything} == {SHOP}
    assert [(c["applied"], c["user_error_codes"]) for c in refused] == [
        (False, ["CAPTURE_SESSION_INVALID_STATE"])
    ]
    assert refused[0]["variables"] == {"id": first, "reason": REASON}
    assert [call["seq"] for call in only_second] == [3]
    assert len(await calls(http, gid=first)) == 2


async def test_reset_forgets_sessions_calls_and_faults(
    http: TestClient[Any, Any], gql_session: AsyncClientSession
) -> None:
    target = gid("void")
    await register(http, target)
    await _send(gql_session, "void", "resolve", target)
    await add_fault(http, {"kind": "status", "status": 503, "times": 5})

    assert (await http.post("/_sandbox/reset")).status == 200

    assert await calls(http) == []
    assert (await http.get("/_sandbox/faults")).status == 200
    assert (await (await http.get("/_sandbox/faults")).json())["faults"] == []
    # Still strict: the forgotten session is now unknown to mutations too.
    payload = await _send(gql_session, "void", "resolve", target)
    assert payload["userErrors"][0]["code"] == "VOID_SESSION_NOT_FOUND"


@pytest.mark.parametrize(
    "body", [{"gids": ["gid://shopify/Order/1"]}, {"gids": "nope"}, {"gid": []}]
)
async def test_registering_a_bad_gid_is_refused(
    body: dict[str, Any], http: TestClient[Any, Any]
) -> None:
    response = await http.post("/_sandbox/sessions", json=body)

    assert response.status == 400
    assert "error" in await response.json()
