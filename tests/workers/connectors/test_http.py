"""The generic `http` connector against a PSP speaking DESIGN.md's contract."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox.psp.http import HTTP_BOOKS, create_http_psp_app
from sessions.models import Op
from tests.workers.connectors.conftest import DELAY, TOKEN, Fake, Serve, operation
from workers.connectors.base import (
    Approved,
    DeclineCode,
    Declined,
    NotFound,
    TryAgain,
)


@pytest.fixture
async def fake(serve: Serve) -> Fake:
    return await serve("http", create_http_psp_app(token=TOKEN))


@pytest.mark.parametrize("test", [True, False])
async def test_a_capture_is_approved_with_the_psp_reference(fake: Fake, test: bool) -> None:
    op = operation(amount=Decimal("10.00"), test=test)
    assert await fake.connector.settle(Op.CAPTURE, op) == Approved("psp_capture_1")
    [book] = fake.app[HTTP_BOOKS]
    # Shopify's test-mode flag travels with the operation, as the body's `test`.
    assert book == {
        "operation": "capture",
        "key": op.session_id,
        "amount": "10.00",
        "currency": "EUR",
        "test": test,
    }
    [call] = fake.calls("capture")
    assert call.idempotency_key == op.session_id


@pytest.mark.parametrize(
    ("amount", "code"),
    [("10.51", DeclineCode.PROCESSING_ERROR), ("10.52", DeclineCode.AUTHORIZATION_EXPIRED)],
)
async def test_a_decline_carries_the_code_and_the_psps_message(
    fake: Fake, amount: str, code: DeclineCode
) -> None:
    answer = await fake.connector.settle(Op.CAPTURE, operation(amount=Decimal(amount)))
    assert isinstance(answer, Declined)
    assert answer.code is code
    assert answer.message
    assert fake.applied("capture") == 0


async def test_transient_failures_are_retried_then_approved_once(fake: Fake) -> None:
    fake.state.arm({"kind": "status", "status": 503, "times": 2})
    op = operation()
    first = await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(first, TryAgain)
    assert not first.ambiguous
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), Approved)
    assert fake.applied("capture") == 1


async def test_429_passes_retry_after_on(fake: Fake) -> None:
    fake.state.arm({"kind": "status", "status": 429, "retry_after": 7})
    answer = await fake.connector.settle(Op.CAPTURE, operation())
    assert answer == TryAgain("http capture: HTTP 429", retry_after=7.0)


async def test_a_timeout_is_ambiguous_and_status_resolves_it_without_a_second_capture(
    fake: Fake,
) -> None:
    fake.state.arm({"kind": "delay", "seconds": DELAY, "apply": True})
    op = operation()
    lost = await fake.connector.settle(Op.CAPTURE, op)
    assert isinstance(lost, TryAgain)
    assert lost.ambiguous
    known = await fake.connector.status(Op.CAPTURE, op)
    assert known == Approved("psp_capture_1", amount=Decimal("100.00"))
    assert fake.applied("capture") == 1


async def test_a_lost_answer_then_a_retry_moves_money_once(fake: Fake) -> None:
    fake.state.arm({"kind": "lost", "status": 502})
    op = operation()
    assert isinstance(await fake.connector.settle(Op.CAPTURE, op), TryAgain)
    # The same key again: the PSP answers 409, already done, which is an approval.
    assert await fake.connector.settle(Op.CAPTURE, op) == Approved("psp_capture_1")
    assert fake.applied("capture") == 1
    assert [c.status for c in fake.calls("capture")] == [201, 409]


async def test_the_same_key_twice_is_one_money_movement(fake: Fake) -> None:
    op = operation()
    assert await fake.connector.settle(Op.CAPTURE, op) == await fake.connector.settle(
        Op.CAPTURE, op
    )
    assert fake.applied("capture") == 1
    assert [c.replayed for c in fake.calls("capture")] == [False, True]


async def test_refund_and_void_are_separate_operations_under_their_own_paths(fake: Fake) -> None:
    refund = await fake.connector.settle(Op.REFUND, operation(amount=Decimal("5.00")))
    void = await fake.connector.settle(Op.VOID, operation(amount=None))
    assert refund == Approved("psp_refund_1")
    assert void == Approved("psp_void_2")
    assert [b["operation"] for b in fake.app[HTTP_BOOKS]] == ["refund", "void"]
    assert fake.app[HTTP_BOOKS][1]["amount"] is None


async def test_the_contract_has_no_authorization_lookup(fake: Fake) -> None:
    assert await fake.connector.authorization(operation()) == NotFound()


async def test_a_void_whose_currency_is_unknown_sends_null_not_an_empty_code(fake: Fake) -> None:
    assert await fake.connector.settle(Op.VOID, operation(amount=None, currency="")) == Approved(
        "psp_void_1"
    )
    [void] = fake.app[HTTP_BOOKS]
    assert (void["amount"], void["currency"]) == (None, None)


async def test_status_reads_and_never_applies_an_operation_the_psp_never_saw(fake: Fake) -> None:
    op = operation()
    assert await fake.connector.status(Op.CAPTURE, op) == NotFound()
    assert fake.applied("capture") == 0
    assert [c.method for c in fake.calls("capture")] == ["GET"]


async def test_status_shows_the_amount_the_psp_moved_under_the_key(fake: Fake) -> None:
    op = operation(amount=Decimal("9.00"))
    await fake.connector.settle(Op.REFUND, op)
    # Asked with another amount, the read still tells what the PSP did under the key.
    asked = operation(session_id=op.session_id, amount=Decimal("10.00"))
    known = await fake.connector.status(Op.REFUND, asked)
    assert known == Approved("psp_refund_1", amount=Decimal("9.00"))
    assert await fake.connector.status(Op.CAPTURE, asked) == NotFound()


async def test_status_of_a_declined_key_is_the_decline(fake: Fake) -> None:
    op = operation(amount=Decimal("10.51"))
    await fake.connector.settle(Op.CAPTURE, op)
    known = await fake.connector.status(Op.CAPTURE, op)
    assert isinstance(known, Declined)
    assert known.code is DeclineCode.PROCESSING_ERROR


async def test_status_while_the_psp_is_down_is_try_again_not_ambiguous(fake: Fake) -> None:
    fake.state.arm({"kind": "status", "status": 503, "operation": "capture"})
    known = await fake.connector.status(Op.CAPTURE, operation())
    assert isinstance(known, TryAgain)
    assert not known.ambiguous
