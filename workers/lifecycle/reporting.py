"""The decisions once a session's outcome is stored: what Shopify's answer to the report
means, the confirmation a payment may wait for, and a pending payment whose window closed.
Pure functions of (session, what happened, policy, now); `workers.lifecycle.decide` asks them.
"""

from __future__ import annotations

from typing import Any

from sessions.models import CONFIRM_MUTATION, Kind, Outcome, Report, Session
from sessions.states import Event, State
from workers.lifecycle.moves import (
    Accepted,
    Decision,
    Done,
    Policy,
    Refused,
    ReportNext,
    ReportResult,
    RetryLater,
    Unavailable,
    dead_letter,
    decision,
    interrupted,
)

PENDING_EXPIRED = "The payment stayed pending at the payment provider past its deadline."


# `paymentSessionPending`'s answer for a window already closed (`PaymentSessionPendingUserError`).
PENDING_WINDOW_PAST = "EXPIRED_PENDING_EXPIRES_AT"


_REPORTS = {"Resolve": Report.RESOLVED, "Reject": Report.REJECTED, "Pending": Report.PENDING}


def pending_expired(
    session: Session, policy: Policy, now: float, fields: dict[str, Any], detail: str, **event: Any
) -> Decision:
    """The payment's pending window closed without the PSP's final word: it is declined,
    and the rejection reported in the same run."""
    return decision(
        session,
        now,
        Event.PENDING_EXPIRED,
        step=ReportNext(),
        due_at=now + policy.lease_seconds,
        fields={
            **fields,
            "outcome": Outcome.DECLINED,
            "reject_code": "PROCESSING_ERROR",
            "merchant_message": PENDING_EXPIRED,
            "phase_attempts": 0,
            "phase_since": now,
            "not_before": None,
        },
        detail=detail,
        **event,
    )


def awaits_confirmation(session: Session, *, confirmation: bool) -> bool:
    """An approved payment that Shopify must confirm before it is resolved, and whose
    confirmation request has not come. Once a `paymentSessionConfirm` went out, the answer
    is awaited whatever the setting says now."""
    if session.kind is not Kind.PAYMENT or session.outcome is not Outcome.APPROVED:
        return False
    if session.confirmation_result is not None:
        return False
    return confirmation or session.sent_mutation == CONFIRM_MUTATION


def earlier_attempts_of(session: Session, mutation: str) -> int:
    """How often this same mutation was sent before (an interrupted run counts: it may have)."""
    counted = session.sent_mutation_attempts if session.sent_mutation == mutation else 0
    return counted + (1 if session.inflight is State.SETTLED else 0)


def after_report(
    session: Session, mutation: str, result: ReportResult, policy: Policy, now: float
) -> Decision:
    earlier = earlier_attempts_of(session, mutation)
    attempt = session.report_attempts + 1
    phase_attempt = session.phase_attempts + 1
    phase_since = session.phase_since if session.phase_since is not None else now
    fields: dict[str, Any] = {
        "report_attempts": attempt,
        "sent_mutation": mutation,
        "sent_mutation_attempts": earlier + 1,
        "phase_attempts": phase_attempt,
        "phase_since": phase_since,
    }
    mine = isinstance(result, Refused) and result.invalid_state and earlier > 0
    if isinstance(result, Refused) and result.code == PENDING_WINDOW_PAST:
        # Shopify was never told "pending", and now cannot be: the window it would have
        # been told closed while the report waited (Shopify down, a replay days later).
        return pending_expired(
            session,
            policy,
            now,
            {**fields, "last_error": result.error},
            f"{mutation} refused {PENDING_WINDOW_PAST}: the pending window closed before "
            "Shopify took it",
            attempt=attempt,
            error=result.error,
        )
    if (isinstance(result, Accepted) or mine) and mutation == CONFIRM_MUTATION:
        return _confirming(session, policy, now, fields, attempt, mine)
    if isinstance(result, Accepted) or mine:
        report = _REPORTS[mutation.removeprefix(f"{session.kind.value}Session")]
        # Shopify knowing a payment is pending is not the end: the session waits for the
        # PSP's final word, due again when its pending window closes.
        final = State.PENDING if report is Report.PENDING else State.REPORTED
        detail = mutation + (" (already applied by an earlier attempt)" if mine else "")
        if isinstance(result, Accepted) and result.redirect_url is not None:
            # Stored with the report it came with: a buyer back from the PSP is sent there.
            fields["redirect_url"] = result.redirect_url
        return decision(
            session,
            now,
            Event.REPORTED_PENDING if final is State.PENDING else Event.REPORTED,
            step=Done(final),
            due_at=session.pending_expires_at if final is State.PENDING else None,
            fields={**fields, "report": report, "last_error": None, "not_before": None},
            attempt=attempt,
            detail=detail + interrupted(session),
        )
    if isinstance(result, Unavailable):
        if policy.shopify.exhausted(phase_attempt, now - phase_since):
            return dead_letter(session, now, result.error, attempt=attempt, fields=fields)
        delay = policy.shopify.delay(phase_attempt, retry_after=result.retry_after)
        return decision(
            session,
            now,
            Event.REPORT_RETRY,
            step=RetryLater(delay, result.error),
            due_at=now + delay + policy.lease_seconds,
            fields={**fields, "last_error": result.error, "not_before": now + delay},
            attempt=attempt,
            error=result.error,
            detail=f"next attempt in {delay:.2f}s",
        )
    return dead_letter(session, now, result.error, attempt=attempt, fields=fields)


def _confirming(
    session: Session,
    policy: Policy,
    now: float,
    fields: dict[str, Any],
    attempt: int,
    mine: bool,
) -> Decision:
    """Shopify took `paymentSessionConfirm`: the payment waits for its confirmation request
    (`webhook.confirmations`), at most the confirmation window; no delivery takes it
    before then."""
    closes = now + policy.confirmation_window_seconds
    detail = CONFIRM_MUTATION + (" (already applied by an earlier attempt)" if mine else "")
    return decision(
        session,
        now,
        Event.CONFIRMATION_REQUESTED,
        step=Done(State.CONFIRMING),
        due_at=closes,
        fields={**fields, "last_error": None, "not_before": closes},
        attempt=attempt,
        detail=detail + interrupted(session),
    )
