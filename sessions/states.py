"""The session state machine, as pure data and functions: the authority for every transition.

```
received ──▶ settling ──▶ settled(approved|declined|pending) ──▶ reported(resolved|rejected)
    │            │  ▲ retry   ▲  │ ▲ retry         │ pending reported
    │            │            │  └─┘               ▼
    │            │            ├──────────────── pending (payment sessions: awaiting the PSP,
    │            │            │                          or its expiry)
    │            │            └──────────────── confirming (payment sessions: Shopify asked
    │            │                                          to confirm, its answer awaited)
    └────────────┴──────────────────────────┴──▶ failed ──(replay)──▶ received | settled
```

A payment session goes from `received` straight to `settled` when the buyer's PSP reports
the outcome (there is no call of ours to make), and through `pending` when Shopify has been
told the payment is pending; a pending payment ends in `settled` when the PSP's word comes
or its pending window closes. With payment confirmation on, an approved payment goes through
`confirming` once Shopify took `paymentSessionConfirm`, and back to `settled` when Shopify's
confirmation request says whether to confirm (or `failed` when none came in its window).

`settled` is the recovery point that protects the buyer: once the PSP's answer is stored,
no path leads back to `settling`, so a failed or repeated Shopify call can never capture twice.
Every store write names its target state and is refused unless the session's current state
may move there (`sources_of`).
"""

from __future__ import annotations

from enum import StrEnum

from errors import IllegalTransition


class State(StrEnum):
    RECEIVED = "received"
    SETTLING = "settling"
    SETTLED = "settled"
    PENDING = "pending"
    CONFIRMING = "confirming"
    REPORTED = "reported"
    FAILED = "failed"


_ALLOWED: dict[State, frozenset[State]] = {
    State.RECEIVED: frozenset({State.SETTLING, State.SETTLED, State.FAILED}),
    State.SETTLING: frozenset({State.SETTLING, State.SETTLED, State.FAILED}),
    # settled → settled: a report attempt that Shopify did not take; the outcome stays.
    State.SETTLED: frozenset(
        {State.SETTLED, State.REPORTED, State.PENDING, State.CONFIRMING, State.FAILED}
    ),
    State.PENDING: frozenset({State.SETTLED, State.FAILED}),
    # Shopify's confirmation request (or its window closing) ends the wait.
    State.CONFIRMING: frozenset({State.SETTLED, State.FAILED}),
    State.REPORTED: frozenset(),
    # A replay resumes at the recovery point: back to `settled` when the PSP outcome is
    # known, otherwise back to `received`. failed → failed: an operator's action on a failed
    # session that does not resume it (giving back the money it held).
    State.FAILED: frozenset({State.FAILED, State.RECEIVED, State.SETTLED}),
}

TERMINAL: frozenset[State] = frozenset({State.REPORTED})
# States a worker has something to do in (a pending payment only once its window closes).
WORKABLE: frozenset[State] = frozenset({State.RECEIVED, State.SETTLING, State.SETTLED})


def can_move(current: State, target: State) -> bool:
    return target in _ALLOWED[current]


def sources_of(target: State) -> frozenset[State]:
    """Every state from which `target` may be entered (used as a compare-and-set guard)."""
    return frozenset(state for state, targets in _ALLOWED.items() if target in targets)


def check_move(current: State, target: State) -> State:
    if not can_move(current, target):
        raise IllegalTransition(current, target)
    return target


def recovery_point(has_outcome: bool) -> State:
    """Where work on a session resumes: a stored PSP outcome is never asked for again.

    Used by the worker (which phase a claimed session is in) and by replay (where a failed
    session goes back to).
    """
    return State.SETTLED if has_outcome else State.RECEIVED
