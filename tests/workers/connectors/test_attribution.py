"""Whose operation is it? Two sessions moving the same amount on one provider order.

Aplazame, Ledyer and Purchase captures (and Purchase returns and voids) carry no mark that
their reads show, so operations on one order run one at a time; Ledyer refunds carry the
session in their note. Each test interleaves sessions against the sandbox fakes (real HTTP
servers) and checks what a merchant would: what the provider applied, and which of its
operations each session reports as its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from config import Settings
from sandbox.psp import aplazame, ledyer, purchase
from sessions.models import Op
from tests.workers.connectors.conftest import (
    DELAY,
    TOKEN,
    Fake,
    Serve,
    operation,
    settled,
)
from workers.connectors.base import Approved, Declined, NotFound, Operation, TryAgain
from workers.connectors.order_lock import order_lock_key


@dataclass(frozen=True)
class Case:
    """One provider and one kind of operation, set up so that two sessions can each move
    `amount` on the same order."""

    name: str
    app: Callable[..., web.Application]
    seed: Callable[[web.Application], Any]
    order_id: str
    currency: str
    kind: Op
    amount: str
    # The provider's ids of the operations of `kind` on the order, oldest first.
    ids: Callable[[web.Application], list[str]]
    # What the fake calls the operation in its call log and fault rules.
    logged_as: str
    # A capture to make first (refunds need something captured).
    captured: str | None = None

    def op(self, **overrides: Any) -> Operation:
        fields: dict[str, Any] = {"payment_id": self.order_id, "currency": self.currency}
        amount = overrides.pop("amount", self.amount)
        return operation(amount=None if amount is None else Decimal(amount), **fields, **overrides)


def _aplazame_ids(app: web.Application) -> list[str]:
    return [str(c["id"]) for c in app[aplazame.APLAZAME_ORDERS]["ord-1"].captures]


def _ledyer(kind: Op, captured: str | None = None) -> Case:
    """An order of three 50.00 SEK lines."""
    lines = [
        {"reference": f"box-{n}", "description": "Box", "totalAmount": 5_000, "vat": 2500}
        for n in range(3)
    ]

    def ids(app: web.Application) -> list[str]:
        order = app[ledyer.LEDYER_ORDERS]["or_1"]
        return [c.ledger_id for c in (order.captured if kind is Op.CAPTURE else order.refunded)]

    def seed(app: web.Application) -> Any:
        return ledyer.seed_order(app, {"id": "or_1", "currency": "SEK", "lines": lines})

    app = ledyer.create_ledyer_app
    return Case("ledyer", app, seed, "or_1", "SEK", kind, "50.00", ids, kind, captured)


def _purchase(kind: Op, captured: str | None = None) -> Case:
    """A purchase of three 30.00 EUR items; refunds are returns."""
    items = [{"reference": f"box-{n}", "amount": 3_000} for n in range(3)]

    def ids(app: web.Application) -> list[str]:
        record = app[purchase.PURCHASES]["pu-1"]
        return [m.id for m in (record.captures if kind is Op.CAPTURE else record.returns)]

    def seed(app: web.Application) -> Any:
        return purchase.seed_purchase(app, {"id": "pu-1", "items": items})

    logged_as = "capture" if kind is Op.CAPTURE else "return"
    app = purchase.create_purchase_app
    return Case("purchase", app, seed, "pu-1", "EUR", kind, "30.00", ids, logged_as, captured)


CASES = [
    Case(
        "aplazame",
        aplazame.create_aplazame_app,
        lambda app: aplazame.seed_order(app, {"id": "ord-1", "total": 60_020}),
        "ord-1",
        "EUR",
        Op.CAPTURE,
        "100.50",
        _aplazame_ids,
        "capture",
    ),
    _ledyer(Op.CAPTURE),
    _ledyer(Op.REFUND, captured="150.00"),
    _purchase(Op.CAPTURE),
    _purchase(Op.REFUND, captured="90.00"),
]
IDS = [f"{case.name} {case.kind}" for case in CASES]


async def _ready(serve: Serve, case: Case) -> tuple[Fake, Operation, Operation]:
    """The fake with its order, and two sessions, S2 and S3, for the same amount on it."""
    fake = await serve(case.name, case.app(token=TOKEN))
    case.seed(fake.app)
    if case.captured is not None:
        assert isinstance(
            await fake.connector.settle(Op.CAPTURE, case.op(amount=case.captured)), Approved
        )
    return fake, case.op(), case.op()


async def _unsure(fake: Fake, case: Case, op: Operation, fault: dict[str, Any]) -> None:
    """`op` is sent, and `fault` leaves its outcome unknown."""
    fake.state.arm({**fault, "operation": case.logged_as})
    answer = await fake.connector.settle(case.kind, op)
    assert isinstance(answer, TryAgain)
    assert answer.ambiguous


_UNAPPLIED = {"kind": "status", "status": 503}  # refused before anything was applied
_LOST = {"kind": "lost", "status": 502}  # applied, then the answer is lost


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_a_failed_attempt_is_never_credited_with_another_sessions_operation(
    serve: Serve, case: Case
) -> None:
    fake, s2, s3 = await _ready(serve, case)
    # S2's request fails without being applied; S3 then asks for the same amount.
    await _unsure(fake, case, s2, _UNAPPLIED)
    await fake.connector.settle(case.kind, s3)
    first, second = (
        await settled(fake.connector, case.kind, s2),
        await settled(fake.connector, case.kind, s3),
    )
    assert isinstance(first, Approved)
    assert isinstance(second, Approved)
    # Two sessions reported done: two operations at the provider, one each.
    assert sorted([first.psp_reference, second.psp_reference]) == sorted(case.ids(fake.app))
    assert first.psp_reference != second.psp_reference


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_an_applied_operation_whose_answer_was_lost_is_found_as_its_own(
    serve: Serve, case: Case
) -> None:
    fake, s2, s3 = await _ready(serve, case)
    await _unsure(fake, case, s2, _LOST)
    [lost] = case.ids(fake.app)
    await fake.connector.settle(case.kind, s3)
    assert await settled(fake.connector, case.kind, s2) == Approved(lost)
    third = await settled(fake.connector, case.kind, s3)
    assert isinstance(third, Approved)
    assert case.ids(fake.app) == [lost, third.psp_reference]


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_two_sessions_racing_on_one_order_each_get_their_own_operation(
    serve: Serve, case: Case
) -> None:
    fake, s2, s3 = await _ready(serve, case)
    fake.state.latency = 0.1
    answers = await asyncio.gather(
        *(settled(fake.connector, case.kind, s, tries=200, pause=0.05) for s in (s2, s3))
    )
    assert all(isinstance(answer, Approved) for answer in answers)
    references = [a.psp_reference for a in answers if isinstance(a, Approved)]
    assert sorted(references) == sorted(case.ids(fake.app))
    assert len(set(references)) == 2


LOCKED = [case for case in CASES if not (case.name == "ledyer" and case.kind is Op.REFUND)]
LOCKED_IDS = [f"{case.name} {case.kind}" for case in LOCKED]


@pytest.mark.parametrize("case", LOCKED, ids=LOCKED_IDS)
async def test_while_an_outcome_is_unknown_the_order_is_busy_for_other_sessions(
    serve: Serve, case: Case
) -> None:
    fake, s2, s3 = await _ready(serve, case)
    await _unsure(fake, case, s2, _LOST)
    calls = len(fake.state.calls)
    busy = await fake.connector.settle(case.kind, s3)
    assert isinstance(busy, TryAgain)
    assert "order busy" in busy.reason
    assert not busy.ambiguous  # nothing was sent, so nothing can have happened
    assert len(fake.state.calls) == calls  # the provider was not asked, not even read
    assert isinstance(await fake.connector.status(case.kind, s3), NotFound)


@pytest.mark.parametrize("case", LOCKED, ids=LOCKED_IDS)
async def test_a_failed_read_back_keeps_the_order_locked_until_one_succeeds(
    serve: Serve, case: Case
) -> None:
    fake, s2, s3 = await _ready(serve, case)
    await _unsure(fake, case, s2, _LOST)
    [lost] = case.ids(fake.app)
    fake.state.arm({"kind": "status", "status": 500, "operation": "read"})
    assert isinstance(await fake.connector.status(case.kind, s2), TryAgain)
    assert "order busy" in (await fake.connector.settle(case.kind, s3)).reason
    assert await fake.connector.status(case.kind, s2) == Approved(lost)
    assert isinstance(await settled(fake.connector, case.kind, s3), Approved)
    assert case.ids(fake.app)[0] == lost
    assert len(case.ids(fake.app)) == 2


@pytest.mark.parametrize("case", LOCKED, ids=LOCKED_IDS)
async def test_another_worker_resumes_a_session_whose_worker_died_holding_the_lock(
    serve: Serve, case: Case
) -> None:
    fake, s2, s3 = await _ready(serve, case)
    # The first worker's request times out, and the worker is gone before it learns more.
    await _unsure(fake, case, s2, {"kind": "delay", "seconds": DELAY, "apply": True})
    [lost] = case.ids(fake.app)
    other = fake.another_worker()
    assert "order busy" in (await other.settle(case.kind, s3)).reason
    # The same session, redelivered to the other worker, re-enters its own lock.
    assert await settled(other, case.kind, s2) == Approved(lost)
    assert isinstance(await settled(other, case.kind, s3), Approved)
    assert len(case.ids(fake.app)) == 2


@pytest.mark.parametrize("case", LOCKED, ids=LOCKED_IDS)
async def test_after_a_lapsed_lock_another_sessions_operation_is_never_claimed(
    serve: Serve, case: Case
) -> None:
    fake, s2, s3 = await _ready(serve, case)
    await _unsure(fake, case, s2, _UNAPPLIED)
    # S2 gave up with its outcome unknown and its lock ran out; S3 then moved the same
    # amount on the order.
    await fake.redis.delete(order_lock_key(case.name, case.order_id))
    third = await settled(fake.connector, case.kind, s3)
    assert isinstance(third, Approved)
    # S2 comes back; its first look fails, which must not make the next one trusted.
    fake.state.arm({"kind": "status", "status": 500, "operation": "read"})
    assert isinstance(await fake.connector.status(case.kind, s2), TryAgain)
    answer = await settled(fake.connector, case.kind, s2, tries=3)
    assert isinstance(answer, TryAgain)
    assert answer.ambiguous
    assert "cannot tell" in answer.reason
    assert case.ids(fake.app) == [third.psp_reference]


async def test_the_order_lock_outlasts_the_psp_retry_round(serve: Serve) -> None:
    case = CASES[0]
    fake, _, _ = await _ready(serve, case)
    await _unsure(fake, case, case.op(), _LOST)
    left = await fake.redis.pttl(order_lock_key(case.name, case.order_id)) / 1000
    settings = Settings()
    assert left > settings.psp_retry_deadline_seconds + max(settings.psp_retry_ladder)


VOIDS = [case for case in LOCKED if case.name in ("ledyer", "purchase") and case.kind is Op.CAPTURE]


@pytest.mark.parametrize("case", VOIDS, ids=[case.name for case in VOIDS])
async def test_a_void_whose_answer_was_lost_holds_the_order_until_it_is_found(
    serve: Serve, case: Case
) -> None:
    fake, _, _ = await _ready(serve, case)
    void = case.op(amount=None)
    logged_as = "return" if case.name == "purchase" else "void"  # Purchase voids by a return
    fake.state.arm({"kind": "lost", "status": 502, "operation": logged_as})
    lost = await fake.connector.settle(Op.VOID, void)
    assert isinstance(lost, TryAgain)
    assert lost.ambiguous
    assert "order busy" in (await fake.connector.settle(Op.CAPTURE, case.op())).reason
    assert isinstance(await fake.connector.status(Op.VOID, void), Approved)
    assert fake.applied(logged_as) == 1
    # Released: the next capture is the provider's to refuse, not ours to hold back.
    assert isinstance(await fake.connector.settle(Op.CAPTURE, case.op()), Declined)
