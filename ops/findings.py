"""What `payhook reconcile` decides for one session: does what Shopify was told match what
the PSP did? A pure function of the session, the PSP's status and the reservation the
session holds, so every case is a row in a table test.

| code | what payhook says | what the PSP says |
|---|---|---|
| `not_at_psp` | approved (settled, reported resolved, failed reporting) | not found, declined |
| `rejected_but_at_psp` | declined (settled, or reported rejected) | approved |
| `not_reported_but_at_psp` | failed before the PSP's answer was stored | approved |
| `amount_differs` | approved, amount A | approved, amount B |
| `reservation_not_settled` | reported or settled, yet its reservation is still held | - |
| `reservation_orphaned` | no such session, yet a reservation is held for it | - |
| `book_differs` | the payment's book: captured, refunded, voided | its authorization's totals |

A status the PSP could not give (`TryAgain`) or an operation not final there (`Pending`) is
not a mismatch: the check says `unknown` and why. A book is judged by `check_book`: what
the PSP shows captured (or refunded) must lie between the book's total and that total plus
what the book holds reserved (an operation the PSP applied whose outcome is not stored yet);
voided must agree, a held void counting either way. A PSP whose reads show no totals (the
`http` contract has none) leaves the book not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from errors import MoneyError
from readouts.held import Held
from sessions.ledger import Book
from sessions.models import Op, Outcome, Session
from sessions.money import format_amount, to_minor
from sessions.states import State
from workers.connectors.base import (
    Approved,
    Authorization,
    Declined,
    NotFound,
    Pending,
    StatusResult,
    TryAgain,
)
from workers.connectors.lines import from_minor

# A session that holds its reservation in these states should have settled it in the same
# write that stored its outcome.
_DONE = frozenset({State.SETTLED, State.REPORTED})


@dataclass(frozen=True)
class Finding:
    """One mismatch, in the words an operator reads (`detail`) and the fields a tool reads."""

    code: str
    session_id: str
    detail: str
    kind: str | None = None
    shop: str | None = None
    payment_id: str | None = None
    told: str | None = None
    psp: str | None = None
    amount: Decimal | None = None
    psp_amount: Decimal | None = None
    currency: str | None = None

    def as_json(self) -> dict[str, Any]:
        fields = {
            "code": self.code,
            "session_id": self.session_id,
            "kind": self.kind,
            "shop": self.shop,
            "payment_id": self.payment_id,
            "told": self.told,
            "psp": self.psp,
            "amount": None if self.amount is None else str(self.amount),
            "psp_amount": None if self.psp_amount is None else str(self.psp_amount),
            "currency": self.currency,
            "detail": self.detail,
        }
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Check:
    """What one session's (or payment book's) check found: mismatches, or why the PSP's side
    is unknown, and whether amounts could be compared (None: there was no amount to
    compare)."""

    findings: tuple[Finding, ...] = ()
    unknown: str | None = None
    amount_compared: bool | None = None
    # A payment's book against the PSP's totals; None: this check was not of a book.
    book_compared: bool | None = None


def told(session: Session) -> str:
    """What payhook stored or told Shopify, in one phrase."""
    if session.state is State.REPORTED and session.report is not None:
        return f"reported {session.report.value}"
    if session.outcome is not None:
        return f"{session.state.value} {session.outcome.value}"
    return session.state.value


def check(
    session: Session | None, session_id: str, status: StatusResult | None, held: Held | None
) -> Check:
    """Compare one session with the PSP's `status` (None: not asked) and its `held`
    reservation (None: it holds none)."""
    findings: list[Finding] = []
    if held is not None and session is None:
        findings.append(_reservation("reservation_orphaned", session_id, held, "no session"))
    elif held is not None and session is not None and session.state in _DONE:
        findings.append(_reservation("reservation_not_settled", session_id, held, told(session)))
    if session is None or status is None:
        return Check(tuple(findings))
    if isinstance(status, Pending):
        return Check(tuple(findings), unknown="not final at the PSP (pending)")
    if not isinstance(status, Approved | Declined | NotFound):
        return Check(tuple(findings), unknown=status.reason)
    compared, mismatch = _compare(session, status)
    if mismatch is not None:
        findings.append(mismatch)
    return Check(tuple(findings), amount_compared=compared)


def _compare(
    session: Session, status: Approved | Declined | NotFound
) -> tuple[bool | None, Finding | None]:
    psp = "approved" if isinstance(status, Approved) else "declined"
    if isinstance(status, NotFound):
        psp = "not found"
    said = told(session)
    if session.outcome is Outcome.APPROVED and not isinstance(status, Approved):
        what = f"{said}, but the PSP has {'no such operation' if psp == 'not found' else psp}"
        return None, _finding("not_at_psp", session, what, psp)
    if not isinstance(status, Approved):
        return None, None
    if session.outcome is Outcome.DECLINED:
        return None, _finding("rejected_but_at_psp", session, f"{said}, but the PSP did it", psp)
    if session.outcome is None:
        what = f"{said} before the PSP's answer was stored, but the PSP did it"
        return None, _finding("not_reported_but_at_psp", session, what, psp)
    if session.amount is None:
        return None, None
    if status.amount is None:
        return False, None
    if status.amount == session.amount:
        return True, None
    what = f"{said} {session.amount_text} {session.currency}, the PSP moved {status.amount}"
    return True, _finding("amount_differs", session, what, psp, status.amount)


def _finding(
    code: str, session: Session, detail: str, psp: str, psp_amount: Decimal | None = None
) -> Finding:
    return Finding(
        code=code,
        session_id=session.id,
        detail=detail,
        kind=session.kind.value,
        shop=session.shop,
        payment_id=session.payment_id,
        told=told(session),
        psp=psp,
        amount=session.amount,
        psp_amount=psp_amount,
        currency=session.currency,
    )


def _reservation(code: str, session_id: str, held: Held, session_said: str) -> Finding:
    return Finding(
        code=code,
        session_id=session_id,
        detail=f"{held.describe()} still held; the session: {session_said}",
        kind=held.op.value,
        payment_id=held.payment_id,
        told=session_said,
        currency=held.currency or None,
    )


def check_book(session: Session, book: Book, psp: Authorization | NotFound | TryAgain) -> Check:
    """Compare the ledger book of `session`'s payment with what the PSP shows of it."""
    if isinstance(psp, TryAgain):
        return Check(unknown=f"payment {session.payment_id}: {psp.reason}")
    if isinstance(psp, NotFound):
        return Check(book_compared=False)
    currency = book.currency
    if psp.currency != currency:
        said = f"the book is in {currency}, the PSP's authorization in {psp.currency}"
        return Check((_book_finding(session, book, said),), book_compared=True)
    try:
        captured, refunded = to_minor(psp.captured, currency), to_minor(psp.refunded, currency)
    except MoneyError as exc:
        return Check(unknown=f"payment {session.payment_id}: {exc}")
    held_void = book.void_reserved()
    agree = (
        book.captured <= captured <= book.captured + book.reserved(Op.CAPTURE)
        and book.refunded <= refunded <= book.refunded + book.reserved(Op.REFUND)
        and (psp.voided or not book.voided)
        and (book.voided or held_void or not psp.voided)
    )
    if agree:
        return Check(book_compared=True)
    shown = _totals(captured, refunded, psp.voided, currency)
    said = f"the book: {_totals(book.captured, book.refunded, book.voided, currency)}"
    held = _held_text(book, currency)
    detail = f"{said}{held}; the PSP: {shown}"
    return Check((_book_finding(session, book, detail),), book_compared=True)


def _totals(captured: int, refunded: int, voided: bool, currency: str) -> str:
    money = (format_amount(from_minor(m, currency), currency) for m in (captured, refunded))
    return "captured {}, refunded {}, {}".format(*money, "voided" if voided else "not voided")


def _held_text(book: Book, currency: str) -> str:
    held = [
        f"{op.value} {format_amount(from_minor(book.reserved(op), currency), currency)}"
        for op in (Op.CAPTURE, Op.REFUND)
        if book.reserved(op)
    ]
    if book.void_reserved():
        held.append("void")
    return f" (reserved: {', '.join(held)})" if held else ""


def _book_finding(session: Session, book: Book, detail: str) -> Finding:
    return Finding(
        code="book_differs",
        session_id=session.id,
        detail=detail,
        kind=session.kind.value,
        shop=session.shop,
        payment_id=session.payment_id,
        currency=book.currency,
    )
