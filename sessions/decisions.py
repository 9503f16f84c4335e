"""The decisions made outside a worker's run: a buyer's PSP telling the outcome, Shopify's
confirmation request, a replay and an operator's release. Pure functions of (the session as
read, what happened, now) → the `Change` to write, or why nothing is written; the caller only
reads, writes (`sessions.writes`, the one write path) and answers. The worker's own decisions
are `workers.lifecycle.decide`; both name an `Event`, and `sessions.states` is the law for both.

Each change is guarded by what it rests on (`when`, `expect`): a write that lands after the
session moved on is refused, and the caller reads again and decides again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sessions.change import Change, LedgerVerdict
from sessions.models import CONFIRM_MUTATION, Outcome, PendingReason, Session
from sessions.states import Event, State, recovery_point

_BEFORE_ANY_OUTCOME = frozenset({State.RECEIVED, State.SETTLING})
_NO_OUTCOME = frozenset({""})
_ANY_OUTCOME = frozenset(outcome.value for outcome in Outcome)
NOT_CONFIRMED = "Shopify did not confirm the payment (its inventory or 3-D Secure checks)."
DECLINED_BY_BUYER = "The buyer's payment was declined."


@dataclass(frozen=True)
class Recorded:
    """What was asked is already stored: nothing to write, and the answer is a success."""


@dataclass(frozen=True)
class Refused:
    """Nothing may be written: `code` and `message` say why."""

    code: str
    message: str


@dataclass(frozen=True)
class PspWord:
    """A buyer's PSP telling a payment session's outcome."""

    outcome: Outcome
    reference: str
    authorization_expires_at: datetime | None = None
    message: str | None = None
    pending_reason: PendingReason | None = None


def psp_word(
    session: Session, told: PspWord, now: float, *, lease_seconds: float, pending_seconds: float
) -> Change | Recorded | Refused:
    """The PSP's word on a payment: its first outcome, or the final word on a pending one.

    A final word stands wherever the payment is while its stored outcome is still pending:
    Shopify may not have taken "pending" yet (its report failing, or in flight), and the
    buyer has paid all the same. A pending word only ever comes first.
    """
    outcome = told.outcome
    if session.outcome is outcome:
        return Recorded()
    if session.outcome is not None and (
        outcome is Outcome.PENDING or session.outcome is not Outcome.PENDING
    ):
        return Refused("already_final", f"payment session {session.id} is already {session.state}")
    fields: dict[str, object | None] = {
        "outcome": outcome,
        "psp_reference": told.reference,
        "phase_attempts": 0,
        "phase_since": now,
        "not_before": None,
        # A report in flight was of the outcome this one replaces.
        "inflight": None,
        "failed_at": None,
    }
    if outcome is Outcome.PENDING:
        # Counted from Shopify's payment request, which is before both the PSP's word and
        # the mutation: inside Shopify's limit from whichever it counts.
        fields["pending_expires_at"] = session.created_at + pending_seconds
        fields["pending_reason"] = told.pending_reason
    if outcome is Outcome.APPROVED:
        fields["authorization_expires_at"] = told.authorization_expires_at
    if outcome is Outcome.DECLINED:
        fields["merchant_message"] = told.message or DECLINED_BY_BUYER
    why = f": {told.pending_reason}" if outcome is Outcome.PENDING and told.pending_reason else ""
    first = session.outcome is None
    return Change.of(
        Event.PSP_SETTLED if first else Event.PSP_FINAL,
        at=now,
        due_at=now + lease_seconds,
        detail=f"{outcome} {told.reference} (PSP callback{why})",
        fields=fields,
        expect=_BEFORE_ANY_OUTCOME if outcome is Outcome.PENDING else None,
        when={"outcome": _NO_OUTCOME if first else frozenset({Outcome.PENDING.value})},
        # A worker reporting "pending" meanwhile must not write over the verdict: its
        # token is superseded, and the task queued with the change reports the verdict.
        supersede=True,
    )


def _may_have_been_asked(session: Session) -> dict[str, frozenset[str]] | None:
    """The evidence that a `paymentSessionConfirm` may have gone out for the session, as the
    write's conditions; None when none could have."""
    if session.state is State.CONFIRMING:
        return {}
    if session.sent_mutation == CONFIRM_MUTATION and session.state in (
        State.SETTLED,
        State.FAILED,
    ):
        return {"sent_mutation": frozenset({CONFIRM_MUTATION})}
    if session.state is State.SETTLED and session.inflight is State.SETTLED:
        # A run is reporting it (or died doing so): with the outcome approved and nothing
        # confirmed, what it sends is `paymentSessionConfirm`.
        return {"inflight": frozenset({State.SETTLED.value})}
    return None


def confirmation(
    session: Session, confirmed: bool, now: float, *, lease_seconds: float
) -> Change | Recorded | Refused:
    """Shopify's confirmation request: taken only for an approved payment Shopify may have
    been asked to confirm; it supersedes the run that asked, and the queued task reports."""
    if session.confirmation_result is not None:
        if session.confirmation_result is confirmed:
            return Recorded()
        was = "confirmed" if session.confirmation_result else "not confirmed"
        return Refused("confirmation_conflict", f"payment session {session.id} was already {was}")
    evidence = _may_have_been_asked(session)
    if session.outcome is not Outcome.APPROVED or evidence is None:
        return Refused(
            "not_confirming",
            f"payhook has not asked Shopify to confirm payment session {session.id}",
        )
    fields: dict[str, object | None] = {
        "confirmation_result": confirmed,
        "not_before": None,
        "failed_at": None,
        # The run that sent the confirm request is superseded; the queued task reports.
        "inflight": None,
        "last_error": None,
        # Reporting the result is a phase of its own.
        "phase_attempts": 0,
        "phase_since": now,
    }
    if not confirmed:
        fields["reject_code"] = "CONFIRMATION_REJECTED"
        fields["merchant_message"] = NOT_CONFIRMED
    said = "confirmed" if confirmed else "did not confirm"
    return Change.of(
        Event.CONFIRMATION,
        at=now,
        due_at=now + lease_seconds,
        detail=f"Shopify {said} the payment (confirmation request)",
        fields=fields,
        expect=frozenset({session.state}),
        when={
            "outcome": frozenset({Outcome.APPROVED.value}),
            "confirmation_result": frozenset({""}),
            **evidence,
        },
        supersede=True,
    )


def replay(session: Session, now: float, *, actor: str, lease_seconds: float) -> Change | Refused:
    """A failed session back at its recovery point (`recovery_point`): to the PSP when no
    outcome is stored, to the report when one is. The phase's attempt count, its deadline
    clock and the delivery counter start over; the replay count is the write's guard, so
    two replays of one read resume it once."""
    if session.state is not State.FAILED:
        return Refused("not_failed", f"not failed (it is {session.state})")
    has_outcome = session.outcome is not None
    resume = recovery_point(has_outcome)
    replays = session.replays
    return Change.of(
        Event.REPLAYED_SETTLED if resume is State.SETTLED else Event.REPLAYED,
        at=now,
        due_at=now + lease_seconds,
        detail=f"by {actor}; last error: {session.last_error}",
        fields={
            "phase_attempts": 0,
            "phase_since": now,
            "deliveries": 0,
            "replays": replays + 1,
            "failed_at": None,
            "not_before": None,
            "inflight": None,
        },
        expect=frozenset({State.FAILED}),
        when={
            "replays": frozenset({"", "0"}) if replays == 0 else frozenset({str(replays)}),
            "outcome": _ANY_OUTCOME if has_outcome else _NO_OUTCOME,
        },
    )


def release(session: Session, detail: str, now: float) -> Change:
    """An operator gives back the money a failed session holds (`payhook sessions release`);
    the session stays failed and out of the due set.

    The PSP-uncertain mark stays: what the provider showed (or the operator checked) is a
    moment's view, and a provider without idempotency keys can apply a request late. A
    replay therefore asks the provider's status before it sends anything.
    """
    return Change.of(
        Event.RESERVATION_RELEASED,
        at=now,
        due_at=None,
        detail=detail,
        expect=frozenset({State.FAILED}),
        ledger=LedgerVerdict(session.payment_id, approved=False, final=False),
    )
