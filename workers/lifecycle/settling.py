"""The decisions before a session's outcome is stored: ask the PSP or not, what its answer
means, how long to wait for it, and where the money stands when it cannot be had. Pure
functions of (session, what happened, policy, now); `workers.lifecycle.decide` asks them.
"""

from __future__ import annotations

from typing import Any

from sessions.change import LedgerOperation
from sessions.models import Outcome, Session
from sessions.states import Event, State, recovery_point
from workers.connectors.base import (
    Approved,
    DeclineCode,
    Declined,
    Pending,
    Result,
    TryAgain,
)
from workers.lifecycle.moves import (
    Decision,
    Policy,
    ReportNext,
    RetryLater,
    dead_letter,
    decision,
    interrupted,
)

TEST_ON_LIVE = "Test mode: this {kind} was not sent to the payment provider, whose account is live."


MONEY_HELD = (
    "money held: the provider may have applied the operation; check it there, then "
    "`payhook replay` (it was applied) or `payhook sessions release` (it was not)"
)


RESERVATION_RETURNED = "reservation returned: the provider applied none of the attempts"


ABANDONED = "The buyer did not complete the payment on the payment provider's page."


def buyer_window(session: Session, window_seconds: float, now: float) -> Result:
    """A payment session's only answer without the PSP's word: the buyer still has time on
    the PSP's page (wait for them), or their window closed (declined: they can pay again at
    checkout)."""
    waited = now - session.created_at
    if waited < window_seconds:
        return TryAgain("waiting for the buyer", retry_after=window_seconds - waited)
    return Declined(DeclineCode.PROCESSING_ERROR, ABANDONED)


def settles(session: Session) -> bool:
    """True when the PSP must still be asked (no outcome stored yet)."""
    return recovery_point(session.outcome is not None) is State.RECEIVED


def refuses_test(session: Session, *, live: bool) -> bool:
    """Shopify's test-mode session, and a PSP account that moves real money: never sent."""
    return session.test and live


def test_refused(
    session: Session, connector: str, policy: Policy, now: float, *, ledger: LedgerOperation | None
) -> Decision:
    """A test-mode session on a live PSP account is declined without any PSP call, and
    Shopify is told why; any reservation it holds is given back."""
    return decision(
        session,
        now,
        Event.TEST_REFUSED,
        step=ReportNext(),
        due_at=now + policy.lease_seconds,
        fields={
            "outcome": Outcome.DECLINED,
            "reject_code": DeclineCode.PROCESSING_ERROR.value,
            "merchant_message": TEST_ON_LIVE.format(kind=session.kind.value),
            "last_error": None,
            "psp_uncertain": None,
            "not_before": None,
            "phase_attempts": 0,
            "phase_since": now,
        },
        ledger=None if ledger is None else ledger.verdict(approved=False),
        detail=f"test session: the {connector} connector's account is live; the PSP not asked",
    )


def psp_uncertain(session: Session) -> bool:
    """The last request to the PSP may have been applied: ask for its status before sending.

    Either its answer was lost (ambiguous), or the worker that sent it stopped mid-call.
    """
    return session.psp_uncertain or session.inflight in (State.RECEIVED, State.SETTLING)


def after_psp(
    session: Session,
    result: Result,
    policy: Policy,
    now: float,
    *,
    ledger: LedgerOperation | None,
    status_detail: str | None = None,
    cleared: bool = False,
) -> Decision:
    """`cleared`: a status lookup just found that no earlier request of the session was
    applied, so only `result` says whether money may have moved."""
    attempt = session.psp_attempts + 1
    if isinstance(result, Pending):
        # Accepted but not final: poll the status on the PSP ladder, as for a lost answer.
        result = TryAgain(
            f"pending at the PSP ({result.psp_reference})",
            retry_after=result.retry_after,
            ambiguous=True,
        )
    note = (f"; status: {status_detail}" if status_detail else "") + interrupted(session)
    if isinstance(result, TryAgain):
        return _psp_retry(session, result, policy, now, attempt, note, ledger, cleared=cleared)
    fields: dict[str, Any] = {
        "psp_attempts": attempt,
        "last_error": None,
        "psp_uncertain": None,
        "not_before": None,
        # The reporting phase starts now, with its own attempt count and deadline.
        "phase_attempts": 0,
        "phase_since": now,
    }
    if isinstance(result, Approved):
        fields.update(outcome=Outcome.APPROVED, psp_reference=result.psp_reference)
        detail = f"approved {result.psp_reference}"
    else:
        assert isinstance(result, Declined)
        fields.update(
            outcome=Outcome.DECLINED,
            reject_code=result.code.value,
            merchant_message=result.message,
        )
        detail = f"declined {result.code.value}: {result.message}"
    verdict = None if ledger is None else ledger.verdict(approved=isinstance(result, Approved))
    return decision(
        session,
        now,
        Event.PSP_SETTLED,
        step=ReportNext(),
        due_at=now + policy.lease_seconds,
        fields=fields,
        ledger=verdict,
        attempt=attempt,
        detail=detail + note,
    )


def _phase_attempt(session: Session, now: float) -> tuple[int, float]:
    """(attempt number within the phase, when the phase began) for the attempt just made."""
    if session.state is State.RECEIVED or session.phase_since is None:
        return 1, now
    return session.phase_attempts + 1, session.phase_since


def _psp_retry(
    session: Session,
    result: TryAgain,
    policy: Policy,
    now: float,
    attempt: int,
    note: str,
    ledger: LedgerOperation | None,
    *,
    cleared: bool,
) -> Decision:
    error = f"{'ambiguous: ' if result.ambiguous else ''}{result.reason}"
    phase_attempt, phase_since = _phase_attempt(session, now)
    earlier_unknown = psp_uncertain(session) and not cleared
    uncertain = True if (result.ambiguous or earlier_unknown) else None
    fields: dict[str, Any] = {
        "psp_attempts": attempt,
        "phase_attempts": phase_attempt,
        "phase_since": phase_since,
        "last_error": error,
        "psp_uncertain": uncertain,
    }
    if policy.psp.exhausted(phase_attempt, now - phase_since):
        return _psp_given_up(session, now, error, fields, ledger, attempt=attempt)
    delay = policy.psp.delay(phase_attempt, retry_after=result.retry_after)
    return decision(
        session,
        now,
        Event.PSP_RETRY,
        step=RetryLater(delay, error),
        due_at=now + delay + policy.lease_seconds,
        fields={**fields, "not_before": now + delay},
        attempt=attempt,
        error=error,
        detail=f"next attempt in {delay:.2f}s{note}",
    )


def _psp_given_up(
    session: Session,
    now: float,
    error: str,
    fields: dict[str, Any],
    ledger: LedgerOperation | None,
    *,
    attempt: int | None = None,
) -> Decision:
    """The PSP phase ran out: a dead letter, with the session's reservation where it must be."""
    if ledger is None:
        return dead_letter(session, now, error, attempt=attempt, fields=fields)
    if fields.get("psp_uncertain"):
        # The PSP may have moved the money: the reservation stays, so nothing else can
        # spend it, until an operator has checked (`payhook sessions release`) or a
        # replay finds the operation at the PSP.
        return dead_letter(session, now, error, attempt=attempt, fields=fields, detail=MONEY_HELD)
    # Every attempt was refused before it was applied: give the money back, so a void
    # or another capture is not blocked by a session that did nothing.
    return dead_letter(
        session,
        now,
        error,
        attempt=attempt,
        fields=fields,
        ledger=ledger.verdict(approved=False, final=False),
        detail=RESERVATION_RETURNED,
    )


UNREPORTABLE = "{reason}: PSP not asked, since Shopify could not be told the outcome"


def unreportable(
    session: Session, reason: str, policy: Policy, now: float, *, ledger: LedgerOperation | None
) -> Decision:
    """The shop's token cannot be read now (removed, or no configured key decrypts it), so
    no outcome could be reported: the PSP is not asked. The session waits on the PSP ladder,
    which an operator may use to put the token back, then fails; money a PSP call cannot have
    moved is given back (`payhook replay` once the token is readable)."""
    error = UNREPORTABLE.format(reason=reason)
    phase_attempt, phase_since = _phase_attempt(session, now)
    # An earlier, interrupted or unanswered PSP request stays what it was: unknown.
    uncertain = True if psp_uncertain(session) else None
    fields: dict[str, Any] = {
        "phase_attempts": phase_attempt,
        "phase_since": phase_since,
        "last_error": error,
        "psp_uncertain": uncertain,
    }
    if policy.psp.exhausted(phase_attempt, now - phase_since):
        return _psp_given_up(session, now, error, fields, ledger)
    delay = policy.psp.delay(phase_attempt)
    return decision(
        session,
        now,
        Event.TOKEN_WAIT,
        step=RetryLater(delay, error),
        due_at=now + delay + policy.lease_seconds,
        fields={**fields, "not_before": now + delay},
        error=error,
        detail=f"next attempt in {delay:.2f}s",
    )


NOTHING_HELD = "no PSP request was made for it: nothing held"


def shop_gone(
    session: Session, reason: str, now: float, *, ledger: LedgerOperation | None
) -> Decision:
    """The shop uninstalled the app: no outcome of its sessions can ever be reported, so the
    session fails now, wherever it stands, as a dead letter with `reason`.

    Before an outcome, the money is treated as when the PSP ladder runs out: a reservation
    is given back when no PSP request of the session can have been applied, and kept (money
    held, for an operator to check at the provider) when one may have been, including while
    a worker is in the middle of one. After an outcome, the outcome and what it did to the
    ledger stand (the PSP did it); only the report is given up.
    """
    if session.outcome is not None or session.state not in (State.RECEIVED, State.SETTLING):
        detail = (
            f"the PSP's outcome ({session.outcome}) stands; Shopify was not told"
            if session.outcome is not None
            else None
        )
        return dead_letter(session, now, reason, detail=detail)
    uncertain = psp_uncertain(session)
    fields: dict[str, Any] = {"psp_uncertain": True if uncertain else None}
    if ledger is None:
        return dead_letter(session, now, reason, fields=fields)
    if uncertain:
        return dead_letter(session, now, reason, fields=fields, detail=MONEY_HELD)
    return dead_letter(
        session,
        now,
        reason,
        fields=fields,
        ledger=ledger.verdict(approved=False, final=False),
        detail=NOTHING_HELD if session.psp_attempts == 0 else RESERVATION_RETURNED,
    )
