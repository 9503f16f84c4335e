"""The session state machine, as pure data and functions.

```
received ──▶ settling ──▶ settled(approved|declined|pending) ──▶ reported(resolved|rejected)
    │            │  ▲ retry     ▲         │ pending reported
    │            │              └─────── pending ◀┘ (payment sessions: awaiting the PSP)
    └────────────┴──────────────────────────┴──▶ failed ──(replay)──▶ received | settled
```

A payment session goes from `received` straight to `settled` when the buyer's PSP reports
the outcome (there is no call of ours to make), and through `pending` when Shopify has been
told the payment is pending.

`settled` is the recovery point that protects the buyer: once the PSP's answer is stored,
no path leads back to `settling`, so a failed or repeated Shopify call can never capture twice.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    RECEIVED = "received"
    SETTLING = "settling"
    SETTLED = "settled"
    PENDING = "pending"
    REPORTED = "reported"
    FAILED = "failed"


_ALLOWED: dict[State, frozenset[State]] = {
    State.RECEIVED: frozenset({State.SETTLING, State.SETTLED, State.FAILED}),
    State.SETTLING: frozenset({State.SETTLING, State.SETTLED, State.FAILED}),
    State.SETTLED: frozenset({State.REPORTED, State.PENDING, State.FAILED}),
    State.PENDING: frozenset({State.SETTLED, State.FAILED}),
    State.REPORTED: frozenset(),
    # A replay resumes at the recovery point: back to `settled` when the PSP outcome is
    # known, otherwise back to `received`.
    State.FAILED: frozenset({State.RECEIVED, State.SETTLED}),
}

TERMINAL: frozenset[State] = frozenset({State.REPORTED})


class IllegalTransition(ValueError):
    def __init__(self, current: State, target: State) -> None:
        super().__init__(f"a session cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_move(current: State, target: State) -> bool:
    return target in _ALLOWED[current]


def sources_of(target: State) -> frozenset[State]:
    """Every state from which `target` may be entered (used as a compare-and-set guard)."""
    return frozenset(state for state, targets in _ALLOWED.items() if target in targets)


def check_move(current: State, target: State) -> State:
    if not can_move(current, target):
        raise IllegalTransition(current, target)
    return target
