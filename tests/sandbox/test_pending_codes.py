"""`paymentSessionPending`'s refusals, each with its `PaymentSessionPendingUserErrorCode`:
the ones the sandbox's rules give (a window past or too far ahead, a payment that moved on,
an unknown one), and every code through a `user_error` fault."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sandbox.ledger import PENDING_LIMIT_SECONDS
from tests.sandbox.helpers import (
    PAYMENT_RESOLVE,
    add_fault,
    calls,
    gid,
    graphql,
    moment,
    register,
    session_state,
)

PENDING = """
mutation PaymentSessionPending(
  $id: ID!, $pendingExpiresAt: DateTime!, $reason: PaymentSessionStatePendingReason!
) {
  paymentSessionPending(id: $id, pendingExpiresAt: $pendingExpiresAt, reason: $reason) {
    paymentSession { id state { ... on PaymentSessionStatePending { code reason } } }
    userErrors { field message code }
  }
}"""

CODES = [
    "EXPIRED_PENDING_EXPIRES_AT",
    "NOT_FOUND",
    "OUT_OF_RANGE_PENDING_EXPIRES_AT",
    "PENDING_INVALID_STATE",
    "UNSUPPORTED_PAYMENT_METHOD",
]


async def pend(
    http: TestClient[Any, Any], target: str, closes: str, reason: str = "BUYER_ACTION_REQUIRED"
) -> dict[str, Any]:
    variables = {"id": target, "pendingExpiresAt": closes, "reason": reason}
    status, answer = await graphql(http, PENDING, variables)
    assert status == 200, answer
    assert "errors" not in answer, answer
    payload: dict[str, Any] = answer["data"]["paymentSessionPending"]
    return payload


def codes(payload: dict[str, Any]) -> list[str | None]:
    return [error.get("code") for error in payload["userErrors"]]


@pytest.mark.parametrize(
    ("seconds", "code"),
    [
        pytest.param(-60, "EXPIRED_PENDING_EXPIRES_AT", id="past"),
        pytest.param(0, "EXPIRED_PENDING_EXPIRES_AT", id="now"),
        pytest.param(PENDING_LIMIT_SECONDS + 60, "OUT_OF_RANGE_PENDING_EXPIRES_AT", id="3d+1m"),
        pytest.param(7 * 86400, "OUT_OF_RANGE_PENDING_EXPIRES_AT", id="a-week"),
    ],
)
async def test_a_window_past_or_beyond_three_days_is_refused_and_changes_nothing(
    http: TestClient[Any, Any], seconds: float, code: str
) -> None:
    target = gid("payment", "window")
    await register(http, target)

    refused = await pend(http, target, moment(seconds))

    assert refused["paymentSession"] is None
    assert codes(refused) == [code]
    assert refused["userErrors"][0]["field"] == ["pendingExpiresAt"]
    assert (await session_state(http, target))["state"] is None
    [call] = await calls(http, gid=target)
    assert (call["applied"], call["user_error_codes"]) == (False, [code])


@pytest.mark.parametrize("seconds", [60, 2 * 86400 + 23 * 3600, PENDING_LIMIT_SECONDS - 60])
async def test_a_window_inside_three_days_is_taken(
    http: TestClient[Any, Any], seconds: float
) -> None:
    target = gid("payment", "inside")
    await register(http, target)

    taken = await pend(http, target, moment(seconds), "MERCHANT_ACTION_REQUIRED")

    assert taken["userErrors"] == []
    assert taken["paymentSession"]["state"] == {
        "code": "PENDING",
        "reason": "MERCHANT_ACTION_REQUIRED",
    }


async def test_pending_after_a_resolve_is_pending_invalid_state(
    http: TestClient[Any, Any],
) -> None:
    target = gid("payment", "moved-on")
    await register(http, target)
    status, _ = await graphql(http, PAYMENT_RESOLVE, {"id": target})
    assert status == 200

    refused = await pend(http, target, moment(3600))

    assert codes(refused) == ["PENDING_INVALID_STATE"]
    assert (await session_state(http, target))["state"] == "resolved"


async def test_pending_for_an_unknown_payment_is_not_found(http: TestClient[Any, Any]) -> None:
    refused = await pend(http, gid("payment", "never-registered"), moment(3600))
    assert codes(refused) == ["NOT_FOUND"]


async def test_a_repeated_pending_answers_as_the_first_whatever_its_new_window(
    http: TestClient[Any, Any],
) -> None:
    # Performed once, the same answer after: the repeat's own (now expired) window is ignored.
    target = gid("payment", "repeat")
    await register(http, target)
    first = await pend(http, target, moment(3600))
    again = await pend(http, target, moment(-3600))
    assert again == first
    assert again["userErrors"] == []


@pytest.mark.parametrize("code", CODES)
async def test_a_user_error_fault_answers_each_pending_code_and_applies_nothing(
    http: TestClient[Any, Any], code: str
) -> None:
    target = gid("payment", "faulted")
    await register(http, target)
    await add_fault(
        http,
        {
            "kind": "user_error",
            "mutation": "paymentSessionPending",
            "code": code,
            "message": "Refused.",
            "field": ["id"],
            "times": 1,
        },
    )

    refused = await pend(http, target, moment(3600))
    taken = await pend(http, target, moment(3600))

    assert refused == {
        "paymentSession": None,
        "userErrors": [{"field": ["id"], "message": "Refused.", "code": code}],
    }
    assert taken["userErrors"] == []
    first, second = await calls(http, gid=target)
    assert (first["applied"], first["user_error_codes"], first["fault"]) == (
        False,
        [code],
        "user_error",
    )
    assert second["applied"] is True


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        pytest.param(
            {"mutation": "paymentSessionPending", "code": "CAPTURE_SESSION_NOT_FOUND"},
            "paymentSessionPending answers one of EXPIRED_PENDING_EXPIRES_AT, NOT_FOUND",
            id="another-mutations-code",
        ),
        pytest.param(
            {"mutation": "paymentSessionResolve", "code": "NOT_FOUND"},
            "paymentSessionResolve's userErrors have no code",
            id="a-code-where-there-are-none",
        ),
        pytest.param({"code": "NOT_FOUND"}, "names the mutation", id="no-mutation"),
    ],
)
async def test_a_user_error_fault_must_be_one_the_mutation_can_answer(
    http: TestClient[Any, Any], rule: dict[str, Any], problem: str
) -> None:
    answer = await http.post("/_sandbox/faults", json={"kind": "user_error", "times": 1, **rule})
    assert answer.status == 400
    assert problem in (await answer.json())["error"]
    assert (await (await http.get("/_sandbox/faults")).json())["faults"] == []


async def test_a_user_error_fault_on_a_capture_carries_its_code(
    http: TestClient[Any, Any],
) -> None:
    target = gid("capture", "faulted")
    await register(http, target)
    await add_fault(
        http,
        {
            "kind": "user_error",
            "mutation": "captureSessionResolve",
            "code": "CAPTURE_SESSION_NOT_FOUND",
            "times": 1,
        },
    )
    document = """
    mutation($id: ID!) { captureSessionResolve(id: $id) {
      captureSession { id } userErrors { field message code } } }"""

    status, answer = await graphql(http, document, {"id": target})

    assert status == 200
    assert answer["data"]["captureSessionResolve"] == {
        "captureSession": None,
        "userErrors": [
            {
                "field": None,
                "message": "Refused by a sandbox fault rule.",
                "code": "CAPTURE_SESSION_NOT_FOUND",
            }
        ],
    }
    assert (await session_state(http, target))["state"] is None
