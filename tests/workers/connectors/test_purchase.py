"""The Purchase connector, through gql, against the Purchase GraphQL fake."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sandbox.psp.purchase import PURCHASES, create_purchase_app, seed_purchase
from sandbox.psp.purchases import PurchaseRecord
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

# 100.00 EUR: a jacket at 70.00 and a scarf at 30.00.
ITEMS = [{"reference": "jacket", "amount": 7_000}, {"reference": "scarf", "amount": 3_000}]


@pytest.fixture
async def fake(serve: Serve) -> Fake:
    fake = await serve("purchase", create_purchase_app(token=TOKEN))
    seed_purchase(fake.app, {"id": "pu-1", "items": ITEMS})
    return fake


def purchase(fake: Fake) -> PurchaseRecord:
    return fake.app[PURCHASES]["pu-1"]


def op_for(amount: str | None, **overrides: Any) -> Any:
    value = None if amount is None else Decimal(amount)
    return operation(payment_id="pu-1", amount=value, **overrides)


@pytest.mark.parametrize(
    ("amount", "mutation", "charged"),
    [
        ("100.00", "newPurchaseCaptureAll", {"jacket": 7_000, "scarf": 3_000}),
        ("30.00", "newPurchaseCaptureWithItemReferences", {"scarf": 3_000}),
        ("80.00", "newPurchaseCapture", {"jacket": 7_000, "scarf": 1_000}),
    ],
    ids=["all", "by item references", "restated prices"],
)
async def test_the_capture_mutation_fits_the_amount(
    fake: Fake, amount: str, mutation: str, charged: dict[str, int]
) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, op_for(amount))
    [capture] = purchase(fake).captures
    assert answer == Approved(capture.id)
    assert capture.items == charged
    [call] = fake.calls("capture")
    assert call.applied


async def test_every_mutation_carries_the_session_id_as_idempotency_key(fake: Fake) -> None:
    op = op_for("100.00")
    await fake.connector.settle(Op.CAPTURE, op)
    from sandbox.psp.purchase import PURCHASE_KEYS

    assert list(fake.app[PURCHASE_KEYS]) == [op.session_id]


async def test_a_declined_capture_is_a_decline(fake: Fake) -> None:
    fake.state.arm({"kind": "decline", "code": "CAPTURE_DECLINED", "message": "Risk check"})
    answer = await fake.connector.settle(Op.CAPTURE, op_for("100.00"))
    assert answer == Declined(DeclineCode.PROCESSING_ERROR, "Risk check")
    assert purchase(fake).captures == []


async def test_an_expired_purchase_is_an_expired_authorization(fake: Fake) -> None:
    seed_purchase(fake.app, {"id": "pu-1", "items": ITEMS, "status": "EXPIRED"})
    answer = await fake.connector.settle(Op.CAPTURE, op_for("100.00"))
    assert isinstance(answer, Declined)
    assert answer.code is DeclineCode.AUTHORIZATION_EXPIRED


async def test_transient_failures_then_one_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "status", "status": 502, "times": 2, "operation": "capture"})
    op = op_for("100.00")
    for _ in range(2):
        assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    assert len(purchase(fake).captures) == 1


async def test_a_timeout_is_ambiguous_and_status_finds_the_capture(fake: Fake) -> None:
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": True, "operation": "capture"})
    op = op_for("100.00")
    lost = await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(lost, TryAgain)
    assert lost.ambiguous
    assert await fake.connector.status(Op.CAPTURE, op) == Approved(purchase(fake).captures[0].id)
    assert len(fake.calls("capture")) == 1


async def test_a_resend_under_the_same_key_moves_money_once(fake: Fake) -> None:
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": False, "operation": "capture"})
    op = op_for("30.00")
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    # Not applied yet when we look: the journaled mutation goes again, same key.
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    await fake.state.wait(DELAY)  # let the slow first request land
    assert len(purchase(fake).captures) == 1
    assert len(fake.calls("capture")) == 2


async def test_status_of_a_capture_never_sent_is_not_found(fake: Fake) -> None:
    assert await fake.connector.status(Op.CAPTURE, op_for("100.00")) == NotFound()


async def test_a_full_refund_of_a_fully_captured_purchase_is_return_all(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, op_for("100.00"))
    answer = await fake.connector.settle(Op.REFUND, op_for("100.00"))
    [returned] = purchase(fake).returns
    assert answer == Approved(returned.id)
    assert purchase(fake).status == "CLOSED"


async def test_a_partial_refund_returns_captured_items_at_restated_prices(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, op_for("100.00"))
    assert isinstance(await fake.connector.settle(Op.REFUND, op_for("75.00")), Approved)
    [returned] = purchase(fake).returns
    assert returned.items == {"jacket": 7_000, "scarf": 500}
    assert purchase(fake).status == "CAPTURED"


async def test_a_void_returns_everything_before_any_capture(fake: Fake) -> None:
    assert isinstance(await fake.connector.settle(Op.VOID, op_for(None)), Approved)
    assert purchase(fake).status == "CLOSED"


async def test_a_void_after_a_capture_is_declined(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, op_for("30.00"))
    answer = await fake.connector.settle(Op.VOID, op_for(None))
    assert isinstance(answer, Declined)
    assert "refund" in answer.message


async def test_authorization_reads_the_purchase(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, op_for("30.00"))
    known = await fake.connector.authorization(op_for("1.00"))
    assert isinstance(known, Authorization)
    assert (known.authorized, known.captured, known.voided) == (
        Decimal("100.00"),
        Decimal("30.00"),
        False,
    )
    assert await fake.connector.authorization(operation(payment_id="pu-x")) == NotFound()


async def test_a_wrong_token_is_retried_not_declined(serve: Serve) -> None:
    fake = await serve("purchase", create_purchase_app(token="another"))
    seed_purchase(fake.app, {"id": "pu-1", "items": ITEMS})
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op_for("100.00")), TryAgain)


async def test_an_expired_purchase_still_returns_what_was_captured(fake: Fake) -> None:
    await fake.connector.settle(Op.CAPTURE, op_for("30.00"))
    purchase(fake).status = "EXPIRED"
    assert isinstance(await fake.connector.settle(Op.REFUND, op_for("30.00")), Approved)
