"""The Ledyer connector against the Ledyer order-management fake."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox.psp.ledyer import LEDYER_ORDERS, create_ledyer_app, seed_order
from sandbox.psp.ledyer_orders import LedyerOrder
from sessions.models import Op
from tests.workers.connectors.conftest import DELAY, TOKEN, Fake, Serve, operation
from workers.connectors.base import (
    Approved,
    Authorization,
    DeclineCode,
    Declined,
    NotFound,
    TryAgain,
)

# 150.00 SEK: a phone at 120.00 and shipping at 30.00, both at 25% VAT.
LINES = [
    {"reference": "phone", "description": "Phone", "totalAmount": 12_000, "vat": 2500},
    {"reference": "shipping", "description": "Shipping", "totalAmount": 3_000, "vat": 2500},
]


@pytest.fixture
async def fake(serve: Serve) -> Fake:
    fake = await serve("ledyer", create_ledyer_app(token=TOKEN))
    seed_order(fake.app, {"id": "or_1", "currency": "SEK", "lines": LINES})
    return fake


def order(fake: Fake, order_id: str = "or_1") -> LedyerOrder:
    return fake.app[LEDYER_ORDERS][order_id]


def capture_of(amount: str, **overrides: Any) -> Any:
    fields: dict[str, Any] = {"payment_id": "or_1", "currency": "SEK", **overrides}
    return operation(amount=Decimal(amount), **fields)


async def test_a_capture_of_everything_is_a_full_capture_of_the_remaining_lines(
    fake: Fake,
) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("150.00"))
    assert isinstance(answer, Approved)
    assert answer.psp_reference == order(fake).captured[0].ledger_id
    [call] = fake.calls("capture")
    assert call.path == "/v1/orders/or_1/capture"
    assert call.amount == 15_000
    assert order(fake).status() == ["fullyCaptured"]


async def test_a_capture_of_some_lines_is_a_partial_capture_of_exactly_those(fake: Fake) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("120.00"))
    assert isinstance(answer, Approved)
    assert fake.calls("capture")[0].path == "/v1/orders/or_1/partialcapture"
    assert [line.reference for line in order(fake).uncaptured] == ["shipping"]


async def test_an_amount_no_set_of_lines_makes_is_declined_before_anything_is_sent(
    fake: Fake,
) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("100.00"))
    assert isinstance(answer, Declined)
    assert "order lines" in answer.message
    assert fake.calls("capture") == []


async def test_ledyers_refusal_is_a_decline_with_its_message(fake: Fake) -> None:
    fake.state.arm({"kind": "decline", "message": "Credit limit exceeded"})
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("150.00"))
    assert answer == Declined(DeclineCode.PROCESSING_ERROR, "Credit limit exceeded")
    assert fake.applied("capture") == 0


@pytest.mark.parametrize(
    ("flag", "code"),
    [("expired", DeclineCode.AUTHORIZATION_EXPIRED), ("cancelled", DeclineCode.PROCESSING_ERROR)],
)
async def test_an_expired_or_cancelled_order_is_declined_from_its_status(
    fake: Fake, flag: str, code: DeclineCode
) -> None:
    seed_order(fake.app, {"id": "or_1", "currency": "SEK", "lines": LINES, flag: True})
    answer = await fake.connector.settle(Op.CAPTURE, capture_of("150.00"))
    assert isinstance(answer, Declined)
    assert answer.code is code


async def test_transient_failures_then_one_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "status", "status": 503, "times": 2, "operation": "capture"})
    op = capture_of("150.00")
    for _ in range(2):
        answer = await fake.connector.settle(Op.CAPTURE, op)
        assert isinstance(answer, TryAgain)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    assert fake.applied("capture") == 1
    # Every attempt sent the journaled request under the same key.
    assert {c.idempotency_key for c in fake.calls("capture")} == {op.session_id}


async def test_a_read_failure_is_retryable_and_sends_nothing(fake: Fake) -> None:
    fake.state.arm({"kind": "status", "status": 500, "operation": "read"})
    assert isinstance(await fake.connector.settle(Op.CAPTURE, capture_of("150.00")), TryAgain)
    assert fake.calls("capture") == []


async def test_a_timeout_is_ambiguous_and_status_finds_the_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": True, "operation": "capture"})
    op = capture_of("150.00")
    lost = await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(lost, TryAgain)
    assert lost.ambiguous
    found = await fake.connector.status(Op.CAPTURE, op)
    assert found == Approved(order(fake).captured[0].ledger_id)
    assert len(fake.calls("capture")) == 1
    assert fake.applied("capture") == 1


async def test_a_retry_after_a_lost_answer_finds_the_capture_instead_of_sending(
    fake: Fake,
) -> None:
    fake.state.arm({"kind": "lost", "status": 502, "operation": "capture"})
    op = capture_of("120.00")
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    assert len(fake.calls("capture")) == 1
    assert fake.applied("capture") == 1


async def test_a_resend_while_the_first_is_in_flight_replays_under_the_same_key(
    fake: Fake,
) -> None:
    # The first request is slow and lands after we gave up; the retry finds nothing yet,
    # resends the same request under the same key, and Ledyer answers it once.
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": False, "operation": "capture"})
    op = capture_of("150.00")
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    calls = fake.calls("capture")
    assert [c.replayed for c in calls] == [False, True]
    assert fake.applied("capture") == 1


async def test_status_of_a_capture_never_sent_is_not_found(fake: Fake) -> None:
    assert await fake.connector.status(Op.CAPTURE, capture_of("150.00")) == NotFound()


async def test_a_refund_of_a_whole_capture_is_a_full_refund(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, capture_of("150.00"))
    answer = await fake.connector.settle(Op.REFUND, capture_of("150.00"))
    assert isinstance(answer, Approved)
    ledger = order(fake).captured[0].ledger_id
    assert fake.calls("refund")[0].path == f"/v1/orders/or_1/refund/{ledger}"
    assert answer.psp_reference == order(fake).refunded[0].ledger_id


async def test_a_partial_refund_is_one_line_at_the_captures_vat_rate(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, capture_of("150.00"))
    op = capture_of("12.50")
    answer = await fake.connector.settle(Op.REFUND, op)
    assert isinstance(answer, Approved)
    [refund] = order(fake).refunded
    assert refund.total == 1_250
    assert refund.note == f"Shopify refund {op.session_id}"
    [line] = refund.lines
    assert line.vat == 2500


async def test_a_refund_timeout_is_resolved_by_status(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, capture_of("150.00"))
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": True, "operation": "refund"})
    op = capture_of("30.00")
    assert isinstance(await fake.connector.settle(Op.REFUND, op), TryAgain)
    assert isinstance(await fake.connector.status(Op.REFUND, op), Approved)
    assert fake.applied("refund") == 1


async def test_a_void_cancels_the_uncaptured_sub_order(fake: Fake) -> None:
    answer = await fake.connector.settle(
        Op.VOID, operation(payment_id="or_1", amount=None, currency="SEK")
    )
    assert isinstance(answer, Approved)
    assert order(fake).status() == ["cancelled"]
    [call] = fake.calls("void")
    assert call.method == "DELETE"


async def test_authorization_reads_the_order(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, capture_of("120.00"))
    known = await fake.connector.authorization(capture_of("1.00"))
    assert isinstance(known, Authorization)
    assert (known.currency, known.authorized, known.captured) == (
        "SEK",
        Decimal("150.00"),
        Decimal("120.00"),
    )
    assert known.expires_at is not None
    assert await fake.connector.authorization(operation(payment_id="or_none")) == NotFound()


async def test_the_provider_id_mapping_is_what_is_sent(fake: Fake) -> None:
    op = capture_of("150.00", payment_id="shopify-pay-9", provider_payment_id="or_1")
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    assert fake.calls("capture")[0].path == "/v1/orders/or_1/capture"


async def test_an_expired_order_still_refunds_what_was_captured(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, capture_of("120.00"))
    order(fake).expired = True
    assert isinstance(await fake.connector.settle(Op.REFUND, capture_of("120.00")), Approved)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, capture_of("30.00")), Declined)
