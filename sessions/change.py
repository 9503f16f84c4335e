"""What one state change of a session is: the event that happened (which names the new state,
`sessions.states.TRANSITIONS`), its timeline entry, the fields, the guards and the ledger
verdict it carries. Plain data, so the decisions that make changes import no Redis;
`sessions.writes` writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sessions.models import Op, TimelineEvent
from sessions.states import Event, State, sources_of, target_of, timeline_name


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
    happened: Event
    event: TimelineEvent
    due_at: float | None
    fields: Mapping[str, object | None] = field(default_factory=dict)
    # Narrows the states the change may start from; always within `sources_of(happened)`.
    expect: frozenset[State] | None = None
    ledger: LedgerVerdict | None = None
    # Field → the values it may hold for the change to apply ("" for absent).
    when: Mapping[str, frozenset[str]] = field(default_factory=dict)
    supersede: bool = False

    @classmethod
    def of(
        cls,
        happened: Event,
        *,
        at: float,
        due_at: float | None,
        detail: str | None = None,
        attempt: int | None = None,
        error: str | None = None,
        fields: Mapping[str, object | None] | None = None,
        expect: frozenset[State] | None = None,
        ledger: LedgerVerdict | None = None,
        when: Mapping[str, frozenset[str]] | None = None,
        supersede: bool = False,
    ) -> Change:
        """The change `happened` makes, with its timeline entry."""
        entry = TimelineEvent(
            at=at,
            event=timeline_name(happened),
            state=target_of(happened),
            attempt=attempt,
            error=error,
            detail=detail,
        )
        return cls(
            happened,
            entry,
            due_at,
            fields or {},
            expect=expect,
            ledger=ledger,
            when=when or {},
            supersede=supersede,
        )

    def __post_init__(self) -> None:
        if self.event.state is not target_of(self.happened):
            raise ValueError(f"{self.happened} leads to {target_of(self.happened)}")

    @property
    def state(self) -> State:
        return target_of(self.happened)

    def sources(self) -> frozenset[State]:
        allowed = sources_of(self.happened)
        if self.expect is None:
            return allowed
        illegal = sorted(self.expect - allowed)
        if illegal:
            raise ValueError(f"{self.happened} cannot happen in {illegal}")
        return self.expect


def field_value(value: object) -> str:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, StrEnum):
        return value.value
    return str(value)
