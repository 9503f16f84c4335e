"""The per-payment ledger as a pure model: what may still be captured, refunded or voided.

Every operation first *reserves* its amount, then the PSP is called, then the reservation is
*committed* (approved) or *released* (declined). Reservations count against what is left,
so two captures racing for the last of an authorization cannot both pass, whatever order
their PSP calls finish in. Amounts are integers in minor units (cents, yen, fils), the same
arithmetic the Redis script does.

`sessions.ledger_store` runs exactly these rules atomically in Redis; the property tests hold
the two to the same behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from sessions.models import Op
from sessions.money import format_amount, minor_units


class Refusal(StrEnum):
    UNKNOWN_PAYMENT = "unknown_payment"
    CURRENCY = "currency"
    SALE_ALREADY_CAPTURED = "sale_already_captured"
    VOIDED = "voided"
    EXPIRED = "expired"
    EXCEEDS = "exceeds"
    CAPTURED = "captured"


@dataclass(frozen=True)
class Reservation:
    op: Op
    amount: int  # minor units; 0 for a void


@dataclass(frozen=True)
class Book:
    """One payment's money, in minor units of `currency`."""

    currency: str
    authorized: int
    sale: bool = False
    captured: int = 0
    refunded: int = 0
    voided: bool = False
    expires_at: float | None = None
    reservations: dict[str, Reservation] = field(default_factory=dict)
    settled: frozenset[str] = frozenset()  # sessions already committed or released

    def reserved(self, op: Op) -> int:
        return sum(r.amount for r in self.reservations.values() if r.op is op)

    def void_reserved(self) -> bool:
        return any(r.op is Op.VOID for r in self.reservations.values())

    def available(self, op: Op) -> int:
        if op is Op.CAPTURE:
            return self.authorized - self.captured - self.reserved(Op.CAPTURE)
        if op is Op.REFUND:
            return self.captured - self.refunded - self.reserved(Op.REFUND)
        return 0


@dataclass(frozen=True)
class Refused:
    reason: Refusal
    available: int = 0
    # The book's currency, for the merchant's message (not part of the verdict).
    book_currency: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Reserved:
    """The reservation is held (or was already): what the PSP call needs from the book."""

    provider_payment_id: str
    currency: str


def refusal_for(
    book: Book, op: Op, amount: int, currency: str | None, now: float
) -> Refused | None:
    """Why `op` of `amount` cannot be reserved on `book` now; None when it can."""
    if currency is not None and currency != book.currency:
        return Refused(Refusal.CURRENCY)
    if op is Op.CAPTURE:
        if book.sale:
            return Refused(Refusal.SALE_ALREADY_CAPTURED)
        if book.voided or book.void_reserved():
            return Refused(Refusal.VOIDED)
        if book.expires_at is not None and now >= book.expires_at:
            return Refused(Refusal.EXPIRED)
        if amount > book.available(Op.CAPTURE):
            return Refused(Refusal.EXCEEDS, book.available(Op.CAPTURE))
    elif op is Op.REFUND:
        if amount > book.available(Op.REFUND):
            return Refused(Refusal.EXCEEDS, book.available(Op.REFUND))
    else:
        if book.voided or book.void_reserved():
            return Refused(Refusal.VOIDED)
        if book.sale or book.captured > 0 or book.reserved(Op.CAPTURE) > 0:
            return Refused(Refusal.CAPTURED)
    return None


def reserve(
    book: Book, session_id: str, op: Op, amount: int, currency: str | None, now: float
) -> tuple[Book, Refused | None]:
    """Reserve for `session_id`; idempotent: the same session reserving again is a no-op."""
    if session_id in book.reservations:
        return book, None
    if session_id in book.settled:
        return book, None
    refused = refusal_for(book, op, amount, currency, now)
    if refused is not None:
        return book, refused
    reservations = {**book.reservations, session_id: Reservation(op, amount)}
    return replace(book, reservations=reservations), None


def commit(book: Book, session_id: str) -> Book:
    """The PSP approved: the reserved amount becomes captured, refunded or voided."""
    held = book.reservations.get(session_id)
    if held is None:
        return book
    rest = {k: v for k, v in book.reservations.items() if k != session_id}
    settled = book.settled | {session_id}
    if held.op is Op.CAPTURE:
        return replace(
            book, captured=book.captured + held.amount, reservations=rest, settled=settled
        )
    if held.op is Op.REFUND:
        return replace(
            book, refunded=book.refunded + held.amount, reservations=rest, settled=settled
        )
    return replace(book, voided=True, reservations=rest, settled=settled)


def release(book: Book, session_id: str) -> Book:
    """The PSP declined: the reservation is returned."""
    if session_id not in book.reservations:
        return book
    rest = {k: v for k, v in book.reservations.items() if k != session_id}
    return replace(book, reservations=rest, settled=book.settled | {session_id})


def merchant_message(
    refused: Refused,
    op: Op,
    amount: Decimal | None,
    currency: str,
    book_currency: str | None = None,
) -> str:
    """What the merchant reads in Shopify's admin: exactly why, with the numbers."""
    asked = f"{format_amount(amount, currency)} {currency}" if amount is not None else ""
    reason = refused.reason
    if reason is Refusal.UNKNOWN_PAYMENT:
        return f"{op} refused: the payment is unknown to the payment provider"
    if reason is Refusal.CURRENCY:
        return f"{op} in {currency} refused: the payment is in {book_currency}"
    if reason is Refusal.SALE_ALREADY_CAPTURED:
        return "capture refused: the payment was a sale and is already captured"
    if reason is Refusal.VOIDED:
        return f"{op} refused: the authorization has been voided"
    if reason is Refusal.EXPIRED:
        return "capture refused: the authorization has expired"
    if reason is Refusal.CAPTURED:
        return "void refused: part of the authorization is already captured"
    left = Decimal(refused.available).scaleb(-minor_units(currency))
    still = "still authorized" if op is Op.CAPTURE else "captured and not yet refunded"
    return f"{op} {asked} exceeds the {format_amount(left, currency)} {currency} {still}"
