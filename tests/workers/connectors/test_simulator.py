"""The simulator's authorization shows what it did to the payment, as a PSP's read does:
`payhook reconcile` compares a payment's ledger book with it."""

from __future__ import annotations

from decimal import Decimal

import fakeredis

from sessions.models import Op
from tests.factories import new_id
from workers.connectors.base import Authorization, Operation
from workers.connectors.simulator import Magic, SimulatorConnector, magic_amount


def operation(payment_id: str, amount: str | None) -> Operation:
    money = None if amount is None else Decimal(amount)
    return Operation(new_id(), payment_id, money, "EUR", test=True)


async def test_its_authorization_shows_what_was_captured_refunded_and_voided(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    simulator = SimulatorConnector(redis)
    payment = f"pay_{new_id()}"
    fresh = await simulator.authorization(operation(payment, None))
    assert isinstance(fresh, Authorization)
    assert (fresh.captured, fresh.refunded, fresh.voided) == (0, 0, False)

    first = operation(payment, "10.00")
    await simulator.settle(Op.CAPTURE, first)
    await simulator.settle(Op.CAPTURE, first)  # a repeat moves nothing
    await simulator.settle(Op.CAPTURE, operation(payment, "2.50"))
    await simulator.settle(
        Op.CAPTURE, operation(payment, magic_amount(Magic.DECLINE, 1))
    )  # declined: nothing captured
    await simulator.settle(Op.REFUND, operation(payment, "4.00"))
    other = await simulator.authorization(operation(f"pay_{new_id()}", None))
    shown = await simulator.authorization(operation(payment, None))

    assert isinstance(shown, Authorization)
    assert (shown.currency, shown.captured, shown.refunded) == ("EUR", Decimal("12.50"), 4)
    assert not shown.voided
    assert isinstance(other, Authorization)
    assert other.captured == 0
    await simulator.settle(Op.VOID, operation(payment, None))
    voided = await simulator.authorization(operation(payment, None))
    assert isinstance(voided, Authorization)
    assert voided.voided
