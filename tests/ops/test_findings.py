"""The reconciliation decision, case by case: what payhook said against what the PSP says."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ops.findings import check, check_book
from readouts.held import Held
from sessions.ledger import Book, Reservation
from sessions.models import Kind, Op, Outcome, Report, Session
from sessions.states import State
from tests.factories import make_session
from workers.connectors.base import (
    Approved,
    Authorization,
    DeclineCode,
    Declined,
    NotFound,
    Pending,
    StatusResult,
    TryAgain,
)

APPROVED = Approved("ref", amount=Decimal("10.00"))
DECLINED = Declined(DeclineCode.PROCESSING_ERROR, "no")


def session(state: State, outcome: Outcome | None, **fields: Any) -> Session:
    report = None
    if state is State.REPORTED:
        report = Report.RESOLVED if outcome is Outcome.APPROVED else Report.REJECTED
    return make_session(state=state, outcome=outcome, report=report, **fields)


@pytest.mark.parametrize(
    ("state", "outcome", "status", "codes"),
    [
        # What Shopify was told matches the PSP.
        (State.REPORTED, Outcome.APPROVED, APPROVED, []),
        (State.SETTLED, Outcome.APPROVED, APPROVED, []),
        (State.REPORTED, Outcome.DECLINED, DECLINED, []),
        (State.REPORTED, Outcome.DECLINED, NotFound(), []),
        (State.FAILED, None, NotFound(), []),
        (State.FAILED, None, DECLINED, []),
        (State.FAILED, Outcome.APPROVED, APPROVED, []),
        # Told resolved, not at the PSP.
        (State.REPORTED, Outcome.APPROVED, NotFound(), ["not_at_psp"]),
        (State.REPORTED, Outcome.APPROVED, DECLINED, ["not_at_psp"]),
        (State.SETTLED, Outcome.APPROVED, NotFound(), ["not_at_psp"]),
        (State.FAILED, Outcome.APPROVED, NotFound(), ["not_at_psp"]),
        # At the PSP, told rejected (or never told).
        (State.REPORTED, Outcome.DECLINED, APPROVED, ["rejected_but_at_psp"]),
        (State.SETTLED, Outcome.DECLINED, APPROVED, ["rejected_but_at_psp"]),
        (State.FAILED, None, APPROVED, ["not_reported_but_at_psp"]),
        # Amounts.
        (
            State.REPORTED,
            Outcome.APPROVED,
            Approved("ref", amount=Decimal("9.00")),
            ["amount_differs"],
        ),
        (State.REPORTED, Outcome.APPROVED, Approved("ref", amount=Decimal("10.0")), []),
    ],
)
def test_what_shopify_was_told_against_the_psp(
    state: State, outcome: Outcome | None, status: StatusResult, codes: list[str]
) -> None:
    found = check(session(state, outcome), "s", status, None)
    assert [f.code for f in found.findings] == codes
    assert found.unknown is None


def test_an_amount_mismatch_names_both_amounts() -> None:
    told = session(State.REPORTED, Outcome.APPROVED, amount=Decimal("10.00"))
    [finding] = check(told, told.id, Approved("r", amount=Decimal("9.50")), None).findings
    assert (finding.amount, finding.psp_amount, finding.currency) == (
        Decimal("10.00"),
        Decimal("9.50"),
        "EUR",
    )
    assert finding.as_json()["psp_amount"] == "9.50"
    assert "10.00 EUR" in finding.detail


@pytest.mark.parametrize(
    ("status", "kind", "compared"),
    [
        (APPROVED, Kind.CAPTURE, True),
        (Approved("ref"), Kind.CAPTURE, False),  # the PSP's read shows no amount
        (Approved("ref"), Kind.VOID, None),  # a void moves no amount
        (DECLINED, Kind.CAPTURE, None),
    ],
)
def test_whether_amounts_could_be_compared(
    status: StatusResult, kind: Kind, compared: bool | None
) -> None:
    amount = None if kind is Kind.VOID else Decimal("10.00")
    outcome = Outcome.APPROVED if isinstance(status, Approved) else Outcome.DECLINED
    told = session(State.REPORTED, outcome, kind=kind, amount=amount)
    assert check(told, told.id, status, None).amount_compared is compared


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (TryAgain("PSP down"), "PSP down"),
        (Pending("ref"), "not final at the PSP (pending)"),
    ],
)
def test_a_status_the_psp_cannot_give_is_unknown_not_a_mismatch(
    status: StatusResult, why: str
) -> None:
    found = check(session(State.REPORTED, Outcome.APPROVED), "s", status, None)
    assert found.findings == ()
    assert found.unknown == why


HELD = Held("pay-1", Op.CAPTURE, 1000, "EUR")


@pytest.mark.parametrize(
    ("state", "outcome", "codes"),
    [
        (State.REPORTED, Outcome.APPROVED, ["reservation_not_settled"]),
        (State.SETTLED, Outcome.DECLINED, ["reservation_not_settled"]),
        # Money held on purpose: the PSP's answer was lost; `payhook sessions release`.
        (State.FAILED, None, []),
        (State.SETTLING, None, []),
    ],
)
def test_a_reservation_held_by_a_session_that_is_done(
    state: State, outcome: Outcome | None, codes: list[str]
) -> None:
    found = check(session(state, outcome), "s", None, HELD)
    assert [f.code for f in found.findings] == codes


def test_a_reservation_whose_session_is_gone_is_orphaned() -> None:
    [finding] = check(None, "gone", None, HELD).findings
    assert finding.code == "reservation_orphaned"
    assert finding.session_id == "gone"
    assert "capture 10.00 EUR on payment pay-1 still held" in finding.detail


def psp_totals(captured: str = "0", refunded: str = "0", *, voided: bool = False) -> Authorization:
    return Authorization(
        provider_payment_id="p",
        currency="EUR",
        authorized=Decimal("100.00"),
        captured=Decimal(captured),
        refunded=Decimal(refunded),
        voided=voided,
        expires_at=None,
    )


def book(currency: str = "EUR", **fields: Any) -> Book:
    held = {name: Reservation(op, minor) for name, (op, minor) in fields.pop("held", {}).items()}
    return Book(currency=currency, authorized=10_000, reservations=held, **fields)


@pytest.mark.parametrize(
    ("the_book", "psp", "differs"),
    [
        (book(captured=1000), psp_totals("10.00"), False),
        # Applied at the PSP, its outcome not stored yet: the reservation covers it.
        (book(captured=1000, held={"s2": (Op.CAPTURE, 500)}), psp_totals("15.00"), False),
        (book(captured=1000, held={"s2": (Op.CAPTURE, 500)}), psp_totals("10.00"), False),
        (book(held={"v": (Op.VOID, 0)}), psp_totals(voided=True), False),
        (book(held={"v": (Op.VOID, 0)}), psp_totals(), False),
        (book(captured=1000, refunded=300), psp_totals("10.00", "3.00"), False),
        # The PSP holds money the book does not know of, or lacks money the book counts.
        (book(), psp_totals("10.00"), True),
        (book(captured=1000, held={"s2": (Op.CAPTURE, 500)}), psp_totals("15.01"), True),
        (book(captured=1000), psp_totals("5.00"), True),
        (book(captured=1000), psp_totals("10.00", "1.00"), True),
        (book(captured=1000, refunded=100), psp_totals("10.00"), True),
        (book(), psp_totals(voided=True), True),
        (book(voided=True), psp_totals(), True),
    ],
)
def test_a_book_agrees_with_the_psp_only_within_what_it_holds_reserved(
    the_book: Book, psp: Authorization, differs: bool
) -> None:
    found = check_book(make_session(), the_book, psp)
    assert [f.code for f in found.findings] == (["book_differs"] if differs else [])
    assert found.book_compared is True
    assert found.unknown is None


def test_a_book_is_unknown_when_the_psp_cannot_say_and_not_compared_without_totals() -> None:
    unknown = check_book(make_session(), book(), TryAgain("timeout"))
    assert unknown.unknown is not None
    assert "timeout" in unknown.unknown
    assert unknown.findings == ()
    blind = check_book(make_session(), book(), NotFound())
    assert (blind.findings, blind.unknown, blind.book_compared) == ((), None, False)
    other = check_book(make_session(), book(currency="USD"), psp_totals())
    assert [f.code for f in other.findings] == ["book_differs"]
