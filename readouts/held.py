"""Money held by failed sessions: a reservation kept because the provider may have acted.

A capture, refund or void that failed while the provider's answer was unknown keeps its
ledger reservation, so no other session can spend money that may already have moved. It is
shown with the session (`payhook sessions show`, the admin API) until an operator releases
it (`payhook sessions release`) or a replay settles it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Op, Session
from sessions.money import format_amount, minor_units
from sessions.states import State
from sessions.store import SessionStore


@dataclass(frozen=True)
class Held:
    """A reservation a session holds on its payment's book."""

    payment_id: str
    op: Op
    minor: int
    currency: str

    def describe(self) -> str:
        if self.op is Op.VOID:
            return f"void of payment {self.payment_id}"
        amount = Decimal(self.minor).scaleb(-minor_units(self.currency))
        money = f"{format_amount(amount, self.currency)} {self.currency}"
        return f"{self.op.value} {money} on payment {self.payment_id}"


# Failed sessions are read this many at a time, each batch in two round trips.
_BATCH = 500


def _may_hold(session: Session) -> bool:
    return session.state is State.FAILED and session.kind is not Kind.PAYMENT


def _held(session: Session, reservation: tuple[Op, int] | None) -> Held | None:
    if reservation is None:
        return None
    op, minor = reservation
    return Held(session.payment_id, op, minor, session.currency or "")


async def money_held(ledger: LedgerStore, session: Session) -> Held | None:
    """The reservation a failed session still holds; None for every other session."""
    if not _may_hold(session):
        return None
    return _held(session, await ledger.held(session.payment_id, session.id))


async def holdings(
    store: SessionStore, ledger: LedgerStore, *, scan: int
) -> AsyncIterator[tuple[Session, Held]]:
    """Failed sessions that hold a reservation, oldest failure first, among the first `scan`
    failed sessions."""
    ids = await store.failed_ids(limit=scan)
    for start in range(0, len(ids), _BATCH):
        batch = await store.get_many(ids[start : start + _BATCH])
        sessions = [s for s in batch if s is not None and _may_hold(s)]
        reservations = await ledger.held_many([(s.payment_id, s.id) for s in sessions])
        for session, reservation in zip(sessions, reservations, strict=True):
            hold = _held(session, reservation)
            if hold is not None:
                yield session, hold
