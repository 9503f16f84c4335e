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
no path leads back to `settling`, so a failed or repeated Shopify call can never capture twice,
and no second `psp_settled` can be written over a stored outcome.

Every write names the `Event` that happened, never a state: `TRANSITIONS` says where the event
takes the session, and the write (`sessions.writes`) is refused unless the session's current
state is one the event may happen in (`sources_of`).
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


class Event(StrEnum):
    """What happened to a session. Each event moves a session along the rows of
    `TRANSITIONS` that name it, and always to the same state."""

    # The PSP's first outcome: a worker's call answered, or a buyer's PSP told us.
    PSP_SETTLED = "psp_settled"
    # A test-mode session on a live account: declined without asking the PSP.
    TEST_REFUSED = "test_refused"
    PSP_RETRY = "psp_retry"
    # The shop's token cannot be read: the PSP is not asked until it can.
    TOKEN_WAIT = "token_wait"  # noqa: S105 (an event name)
    # The PSP's final word on a payment whose stored outcome is pending (its callback).
    PSP_FINAL = "psp_final"
    PENDING_EXPIRED = "pending_expired"
    REPORTED = "reported"
    # Shopify took `paymentSessionPending`: the payment waits for the PSP's final word.
    REPORTED_PENDING = "reported_pending"
    REPORT_RETRY = "report_retry"
    CONFIRMATION_REQUESTED = "confirmation_requested"
    # Shopify's confirmation request said whether to confirm.
    CONFIRMATION = "confirmation"
    FAILED = "failed"
    # A replay: back to the PSP (no outcome stored) or to the report (one is).
    REPLAYED = "replayed"
    REPLAYED_SETTLED = "replayed_settled"
    # An operator gave back the money a failed session held; it stays failed.
    RESERVATION_RELEASED = "reservation_released"


_BEFORE_OUTCOME = (State.RECEIVED, State.SETTLING)
_REPORTING = (State.SETTLED, State.FAILED)
_UNFINISHED = (State.RECEIVED, State.SETTLING, State.SETTLED, State.PENDING, State.CONFIRMING)

# The law: (where a session is, what happened) → where it goes. A pair not listed is refused
# by every write (`sessions.writes`), whoever asks: a worker, a PSP's callback, Shopify's
# confirmation request, a replay or an operator.
TRANSITIONS: dict[tuple[State, Event], State] = {
    **{(s, Event.PSP_SETTLED): State.SETTLED for s in _BEFORE_OUTCOME},
    **{(s, Event.TEST_REFUSED): State.SETTLED for s in _BEFORE_OUTCOME},
    **{(s, Event.PSP_RETRY): State.SETTLING for s in _BEFORE_OUTCOME},
    **{(s, Event.TOKEN_WAIT): State.SETTLING for s in _BEFORE_OUTCOME},
    # A buyer's PSP may speak after the session failed (its report given up, its shop's
    # token unreadable for too long): the money moved, so Shopify must still hear it.
    (State.FAILED, Event.PSP_SETTLED): State.SETTLED,
    # A pending payment's final word stands wherever it is: Shopify may not have taken
    # "pending" yet (settled), have taken it (pending), or the report may have failed.
    **{(s, Event.PSP_FINAL): State.SETTLED for s in (State.SETTLED, State.PENDING, State.FAILED)},
    # Its window closed: at a claim (pending), or while "pending" waited to be told (settled).
    **{(s, Event.PENDING_EXPIRED): State.SETTLED for s in (State.PENDING, State.SETTLED)},
    (State.SETTLED, Event.REPORTED): State.REPORTED,
    (State.SETTLED, Event.REPORTED_PENDING): State.PENDING,
    # A report attempt Shopify did not take: the outcome stays.
    (State.SETTLED, Event.REPORT_RETRY): State.SETTLED,
    (State.SETTLED, Event.CONFIRMATION_REQUESTED): State.CONFIRMING,
    # Shopify's answer to `paymentSessionConfirm`, also when it overtakes the run that asked
    # (settled) or comes after that run gave up (failed).
    **{
        (s, Event.CONFIRMATION): State.SETTLED
        for s in (State.CONFIRMING, State.SETTLED, State.FAILED)
    },
    **{(s, Event.FAILED): State.FAILED for s in _UNFINISHED},
    # A replay resumes at the recovery point (`recovery_point`).
    (State.FAILED, Event.REPLAYED): State.RECEIVED,
    (State.FAILED, Event.REPLAYED_SETTLED): State.SETTLED,
    (State.FAILED, Event.RESERVATION_RELEASED): State.FAILED,
}

# Each event leads to one state, from whichever state it may happen in.
_TARGETS: dict[Event, State] = {event: target for (_, event), target in TRANSITIONS.items()}
assert all(TRANSITIONS[key] is _TARGETS[key[1]] for key in TRANSITIONS), "one target per event"
assert set(_TARGETS) == set(Event), "every event has a row"

# The timeline's names, where two events are one thing to a reader of the audit trail.
_TIMELINE_NAMES = {
    Event.PSP_FINAL: "psp_settled",
    Event.REPORTED_PENDING: "reported",
    Event.REPLAYED_SETTLED: "replayed",
}


def target_of(event: Event) -> State:
    return _TARGETS[event]


def timeline_name(event: Event) -> str:
    return _TIMELINE_NAMES.get(event, event.value)


# Every state each event may happen in: every write's compare-and-set guard, read once.
_SOURCES: dict[Event, frozenset[State]] = {
    event: frozenset(state for state, happened in TRANSITIONS if happened is event)
    for event in Event
}


def sources_of(event: Event) -> frozenset[State]:
    """Every state `event` may happen in (the write's compare-and-set guard)."""
    return _SOURCES[event]


def check(current: State, event: Event) -> State:
    """Where `event` takes a session that is `current`; `IllegalTransition` if nowhere."""
    target = TRANSITIONS.get((current, event))
    if target is None:
        raise IllegalTransition(current, target_of(event), event)
    return target


def recovery_point(has_outcome: bool) -> State:
    """Where work on a session resumes: a stored PSP outcome is never asked for again.

    Used by the worker (which phase a claimed session is in) and by replay (where a failed
    session goes back to).
    """
    return State.SETTLED if has_outcome else State.RECEIVED
