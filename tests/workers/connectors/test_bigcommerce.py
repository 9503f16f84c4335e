"""The BigCommerce connector against the payment-actions fake: asynchronous capture and
void (pending, then polled to final), refunds through a refund quote."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox.psp.bigcommerce import BC_ORDERS, create_bigcommerce_app, seed_order
from sandbox.psp.bigcommerce_orders import BcOrder
from sessions.models import Op
from tests.workers.connectors.conftest import DELAY, TOKEN, Fake, Serve, operation
from workers.connectors.base import (
    Approved,
    Authorization,
    Declined,
    NotFound,
    Pending,
    TryAgain,
)


@pytest.fixture
async def fake(serve: Serve) -> Fake:
    fake = await serve("bigcommerce", create_bigcommerce_app(token=TOKEN))
    seed_order(fake.app, {"id": 100, "total": "12.50"})
    return fake


def order(fake: Fake) -> BcOrder:
    return fake.app[BC_ORDERS]["100"]


def op_for(amount: str | None, **overrides: Any) -> Any:
    value = None if amount is None else Decimal(amount)
    return operation(payment_id="100", amount=value, **overrides)


async def test_a_capture_is_pending_then_polled_to_captured(fake: Fake) -> None:
    op = op_for("12.50")
    assert await fake.connector.settle(Op.CAPTURE, op) == Pending("100:capture")
    assert order(fake).payment_status == "capture pending"
    assert await fake.connector.status(Op.CAPTURE, op) == Pending("100:capture")
    assert await fake.connector.status(Op.CAPTURE, op) == Approved("100:capture")
    assert order(fake).payment_status == "captured"
    assert fake.applied("capture") == 1


async def test_a_capture_that_fails_asynchronously_is_declined_when_polled(fake: Fake) -> None:
    seed_order(fake.app, {"id": 100, "total": "12.51", "settle_after_reads": 0})
    op = op_for("12.51")
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Pending)
    answer = await fake.connector.status(Op.CAPTURE, op)
    assert isinstance(answer, Declined)


async def test_a_partial_capture_is_declined_before_sending(fake: Fake) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, op_for("10.00"))
    assert isinstance(answer, Declined)
    assert "whole orders only" in answer.message
    assert fake.calls("capture") == []


async def test_bigcommerces_refusal_is_a_decline(fake: Fake) -> None:
    fake.state.arm({"kind": "decline", "operation": "capture", "message": "Gateway refused"})
    answer = await fake.connector.settle(Op.CAPTURE, op_for("12.50"))
    assert isinstance(answer, Declined)
    assert answer.message == "Gateway refused"


async def test_transient_failures_then_one_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "status", "status": 503, "times": 2, "operation": "capture"})
    op = op_for("12.50")
    for _ in range(2):
        assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Pending)
    assert fake.applied("capture") == 1


async def test_a_timeout_is_resolved_by_status_without_a_second_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": True, "operation": "capture"})
    op = op_for("12.50")
    lost = await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(lost, TryAgain)
    assert lost.ambiguous
    assert isinstance(await fake.connector.status(Op.CAPTURE, op), Pending)
    assert isinstance(await fake.connector.status(Op.CAPTURE, op), Approved)
    assert len(fake.calls("capture")) == 1


async def test_capturing_again_reads_the_state_instead_of_sending(fake: Fake) -> None:
    op = op_for("12.50")
    await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(
        await fake.connector.settle(Op.CAPTURE, op), Pending
    )  # still pending, not resent
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    assert len(fake.calls("capture")) == 1


async def test_a_void_is_pending_then_void(fake: Fake) -> None:
    op = op_for(None)
    assert await fake.connector.settle(Op.VOID, op) == Pending("100:void")
    assert await fake.connector.status(Op.VOID, op) == Pending("100:void")
    assert await fake.connector.status(Op.VOID, op) == Approved("100:void")
    assert order(fake).payment_status == "void"


async def test_a_void_after_a_capture_is_declined(fake: Fake) -> None:
    seed_order(fake.app, {"id": 100, "total": "12.50", "settle_after_reads": 0})
    await fake.connector.settle(Op.CAPTURE, op_for("12.50"))
    answer = await fake.connector.settle(Op.VOID, op_for(None))
    assert isinstance(answer, Declined)


async def captured(fake: Fake) -> None:
    seed_order(fake.app, {"id": 100, "total": "12.50", "settle_after_reads": 0})
    await fake.connector.settle(Op.CAPTURE, op_for("12.50"))
    assert order(fake).payment_status == "captured"


async def test_a_refund_goes_through_a_quote_then_the_refund(fake: Fake) -> None:
    await captured(fake)
    op = op_for("5.00")
    answer = await fake.connector.settle(Op.REFUND, op)
    [refund] = order(fake).refunds
    assert answer == Approved(f"100:refund:{refund['id']}")
    assert [c.operation for c in fake.state.calls if c.method == "POST"][-2:] == [
        "quote",
        "refund",
    ]
    assert refund["payments"][0]["offline"] is False
    assert op.session_id in refund["items"][0]["reason"]
    assert order(fake).payment_status == "partially refunded"


async def test_a_declined_refund_carries_the_gateways_message(fake: Fake) -> None:
    await captured(fake)
    answer = await fake.connector.settle(Op.REFUND, op_for("5.51"))
    assert isinstance(answer, Declined)
    assert answer.message == "The card issuer declined the refund."


async def test_a_refund_timeout_is_resolved_by_status_from_the_refund_reason(fake: Fake) -> None:
    await captured(fake)
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": True, "operation": "refund"})
    op = op_for("5.00")
    lost = await fake.connector.settle(Op.REFUND, op)
    assert isinstance(lost, TryAgain)
    assert lost.ambiguous
    assert isinstance(await fake.connector.status(Op.REFUND, op), Approved)
    # And a retry of the refund itself finds it too, instead of refunding twice.
    assert isinstance(await fake.connector.settle(Op.REFUND, op), Approved)
    assert len(order(fake).refunds) == 1


async def test_status_of_a_refund_never_sent_is_not_found(fake: Fake) -> None:
    await captured(fake)
    assert await fake.connector.status(Op.REFUND, op_for("5.00")) == NotFound()


async def test_authorization_reads_the_transactions(fake: Fake) -> None:
    await captured(fake)
    known = await fake.connector.authorization(op_for("1.00"))
    assert isinstance(known, Authorization)
    assert (known.authorized, known.captured, known.currency) == (
        Decimal("12.50"),
        Decimal("12.50"),
        "EUR",
    )
    assert await fake.connector.authorization(operation(payment_id="999")) == NotFound()


async def test_a_session_whose_id_is_part_of_another_finds_only_its_own_refund(
    fake: Fake,
) -> None:
    await captured(fake)
    longer = op_for("5.00", session_id="rf-100")
    shorter = op_for("5.00", session_id="rf-10")  # a substring of the other's id
    first = await fake.connector.settle(Op.REFUND, longer)
    assert isinstance(first, Approved)
    assert await fake.connector.status(Op.REFUND, shorter) == NotFound()
    second = await fake.connector.settle(Op.REFUND, shorter)
    assert isinstance(second, Approved)
    assert second != first
    assert [r["reason"] for r in order(fake).refunds] == [
        "Shopify refund rf-100",
        "Shopify refund rf-10",
    ]
