"""What one state change of a session is: the new state (its event's), the fields, the guards
and the ledger verdict it carries. Plain data, so the decisions that make changes import no
Redis; `sessions.writes` writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sessions.ledger import Op
from sessions.models import TimelineEvent
from sessions.states import State, can_move, sources_of


@dataclass(frozen=True)
class LedgerVerdict:
    """Settle the session's reservation on `payment_id`'s book: commit or give it back."""

    payment_id: str
    approved: bool
    # False: give the reservation back for now (nothing happened at the PSP) and let a
    # replay of the session reserve again; True: the session's reservation is settled.
    final: bool = True
    # The session's own operation and its amount in minor units (1 for a void, as a
    # reservation counts it): an approved one is counted from these, once, when the
    # session holds no reservation to commit (a failover lost it).
    op: Op | None = None
    amount: int = 0


@dataclass(frozen=True)
class LedgerOperation:
    """What a session does to a payment's book; the verdicts that settle it."""

    payment_id: str
    op: Op
    amount: int

    def verdict(self, *, approved: bool, final: bool = True) -> LedgerVerdict:
        return LedgerVerdict(self.payment_id, approved, final, self.op, self.amount)


@dataclass(frozen=True)
class Change:
    event: TimelineEvent
    due_at: float | None
    fields: Mapping[str, object | None] = field(default_factory=dict)
    # Narrows the states the change may start from; always within `sources_of(new state)`.
    expect: frozenset[State] | None = None
    ledger: LedgerVerdict | None = None
    # Field → the values it may hold for the change to apply ("" for absent).
    when: Mapping[str, frozenset[str]] = field(default_factory=dict)
    supersede: bool = False

    @property
    def state(self) -> State:
        return self.event.state

    def sources(self) -> frozenset[State]:
        allowed = sources_of(self.state)
        if self.expect is None:
            return allowed
        illegal = [s for s in self.expect if not can_move(s, self.state)]
        if illegal:
            raise ValueError(f"no transition from {illegal} to {self.state}")
        return self.expect


def field_value(value: object) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, StrEnum):
        return value.value
    return str(value)
