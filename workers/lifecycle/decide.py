"""The one place that decides a run: (session, what just happened, policy, now) → the next
move. `next_move` is the one question the executor (`workers.lifecycle.runner`) asks; its
answer is either a `Decision` to store (the event that happened, the fields and timeline entry
that record it, when the session is next due, and the step the run takes) or one `Action` to
perform. Pure functions, no I/O.

Every decision names its `Event`; `sessions.states.TRANSITIONS` says where it takes the
session, and the store refuses it from any state the table does not list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessions.change import Change, LedgerOperation, LedgerVerdict
from sessions.models import Kind, Outcome, Report, Session
from sessions.states import Event, State, check, recovery_point
from workers.connectors.base import (
    Approved,
    DeclineCode,
    Declined,
    NotFound,
    Pending,
    Result,
    StatusResult,
    TryAgain,
)
from workers.retry_policy import RetryPolicy
from workers.shopify.mutations import CONFIRM_PAYMENT


@dataclass(frozen=True)
class Policy:
    psp: RetryPolicy
    shopify: RetryPolicy
    lease_seconds: float
    max_deliveries: int = 200
    # How long a payment Shopify was asked to confirm waits for its confirmation request.
    confirmation_window_seconds: float = 3600.0


# What the worker does once a decision is stored.
@dataclass(frozen=True)
class Done:
    state: State | None


@dataclass(frozen=True)
class RetryLater:
    delay: float
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str


@dataclass(frozen=True)
class Skipped:
    """The delivery did nothing: the session was busy elsewhere, early, finished or moved."""

    reason: str


@dataclass(frozen=True)
class ReportNext:
    """The outcome is stored; tell Shopify in the same run."""


Step = Done | RetryLater | DeadLetter | Skipped | ReportNext


# What Shopify said to a mutation.
@dataclass(frozen=True)
class Accepted:
    # A payment's resolve, reject or pending: where Shopify said to send the buyer next.
    redirect_url: str | None = None


@dataclass(frozen=True)
class Unavailable:
    error: str
    retry_after: float | None = None
    # The failure's class (`errors.ShopifyUnavailable.cause`), for metrics only.
    cause: str = "transport"


@dataclass(frozen=True)
class Refused:
    error: str
    invalid_state: bool = False
    # Shopify's userError code, when it gave one.
    code: str | None = None


ReportResult = Accepted | Unavailable | Refused


# What just happened in a run: the executor's answer to the last question.
@dataclass(frozen=True)
class Began:
    """The session was just claimed."""


@dataclass(frozen=True)
class TokenRead:
    """The shop's token was read, before any PSP call: an outcome can be reported."""


@dataclass(frozen=True)
class TokenMissing:
    reason: str
    # The shop uninstalled the app: it will never have a token again.
    gone: bool


@dataclass(frozen=True)
class StatusAnswered:
    result: StatusResult


@dataclass(frozen=True)
class PspAnswered:
    result: Result
    asked: AskPsp


@dataclass(frozen=True)
class Stored:
    """A decision whose step is `ReportNext` is stored."""


@dataclass(frozen=True)
class ShopifyAnswered:
    mutation: str
    said: ReportResult


Happened = (
    Began | TokenRead | TokenMissing | StatusAnswered | PspAnswered | Stored | ShopifyAnswered
)


# What the executor is asked to do next, when it is not to store a decision.
@dataclass(frozen=True)
class ReadToken:
    """Read the shop's token before any PSP call (`Services.gateway.reporting_token`)."""


@dataclass(frozen=True)
class AskStatus:
    """Ask the PSP what became of an earlier request that may have been applied."""


@dataclass(frozen=True)
class AskPsp:
    """Prepare the session's operation (the ledger reservation) and send it."""

    # What a status lookup just said, for the timeline; `cleared`: it found no earlier
    # request of the session applied.
    status: str | None = None
    cleared: bool = False


@dataclass(frozen=True)
class TellShopify:
    """Tell Shopify the stored outcome."""


Action = ReadToken | AskStatus | AskPsp | TellShopify


@dataclass(frozen=True)
class Decision:
    change: Change
    step: Step
    # The session as it is once `change` is stored.
    session: Session


@dataclass(frozen=True)
class Run:
    """What a run's decisions rest on besides the session, the same for the whole run."""

    policy: Policy
    # What the session does to its payment's book, if anything.
    ledger: LedgerOperation | None
    connector: str
    # The connector's account moves real money.
    live: bool


def next_move(session: Session, happened: Happened, run: Run, now: float) -> Decision | Action:
    """The one question a run asks, after each thing that happened: store this decision, or
    do this next."""
    policy, ledger = run.policy, run.ledger
    if isinstance(happened, Began):
        opened = opening(session, policy, now)
        if opened is not None:
            return opened
        # A run that moves money reads the shop's token before the PSP call, and reports
        # with it: a `payhook shops remove` landing while the PSP works stops the next
        # session's call, not the report of money that already moved.
        return ReadToken() if settles(session) else TellShopify()
    if isinstance(happened, TokenMissing):
        if happened.gone:
            return shop_gone(session, happened.reason, now, ledger=ledger)
        return unreportable(session, happened.reason, policy, now, ledger=ledger)
    if isinstance(happened, TokenRead):
        if refuses_test(session, live=run.live):
            # Before any PSP call, a status lookup included: nothing of a test session ever
            # reaches a live account.
            return test_refused(session, run.connector, policy, now, ledger=ledger)
        return AskStatus() if psp_uncertain(session) else AskPsp()
    if isinstance(happened, StatusAnswered):
        if isinstance(happened.result, NotFound):
            # No earlier request was applied: it is safe to send, under the same key.
            return AskPsp(status=type(happened.result).__name__, cleared=True)
        status = type(happened.result).__name__
        return after_psp(session, happened.result, policy, now, ledger=ledger, status_detail=status)
    if isinstance(happened, PspAnswered):
        asked = happened.asked
        return after_psp(
            session,
            happened.result,
            policy,
            now,
            ledger=ledger,
            status_detail=asked.status,
            cleared=asked.cleared,
        )
    if isinstance(happened, Stored):
        return TellShopify()
    return after_report(session, happened.mutation, happened.said, policy, now)


PENDING_EXPIRED = "The payment stayed pending at the payment provider past its deadline."
# `paymentSessionPending`'s answer for a window already closed (`PaymentSessionPendingUserError`).
PENDING_WINDOW_PAST = "EXPIRED_PENDING_EXPIRES_AT"
NO_CONFIRMATION = (
    "no confirmation request from Shopify within {window:g}s of paymentSessionConfirm "
    "(check the extension's confirmation_callback_url); a replay waits for it again"
)
TEST_ON_LIVE = "Test mode: this {kind} was not sent to the payment provider, whose account is live."
MONEY_HELD = (
    "money held: the provider may have applied the operation; check it there, then "
    "`payhook replay` (it was applied) or `payhook sessions release` (it was not)"
)
RESERVATION_RETURNED = "reservation returned: the provider applied none of the attempts"
_REPORTS = {"Resolve": Report.RESOLVED, "Reject": Report.REJECTED, "Pending": Report.PENDING}


def _decide(
    session: Session,
    now: float,
    happened: Event,
    *,
    step: Step,
    due_at: float | None,
    fields: dict[str, Any],
    ledger: LedgerVerdict | None = None,
    attempt: int | None = None,
    error: str | None = None,
    detail: str | None = None,
) -> Decision:
    state = check(session.state, happened)
    fields = {"inflight": None, **fields}
    # A step that goes on to tell Shopify leaves the mark that a report may be sent from
    # here (the run itself has sent none yet): a run that dies after Shopify took the
    # mutation, before its answer is stored, is then known by it (`earlier_attempts_of`).
    mark = State.SETTLED if isinstance(step, ReportNext) else fields["inflight"]
    change = Change.of(
        happened,
        at=now,
        due_at=due_at,
        attempt=attempt,
        error=error,
        detail=detail,
        fields={**fields, "inflight": mark},
        expect=frozenset({session.state}),
        ledger=ledger,
    )
    after = session.model_copy(update={"state": state, "updated_at": now, **fields})
    return Decision(change, step, after)


def _interrupted(session: Session) -> str:
    return " (after an interrupted attempt)" if session.inflight is not None else ""


def opening(session: Session, policy: Policy, now: float) -> Decision | None:
    """What a fresh claim decides before any call: poison, or a pending window that closed."""
    if session.deliveries > policy.max_deliveries:
        error = f"poison: {session.deliveries} deliveries without finishing"
        return dead_letter(session, now, error)
    if session.state is State.CONFIRMING:
        # Claimable only once its window closed (`not_before`): Shopify's confirmation
        # request, which would have moved it on, never came. Nothing is known to resolve
        # or reject it with, so an operator looks.
        window = policy.confirmation_window_seconds
        return dead_letter(session, now, NO_CONFIRMATION.format(window=window))
    if session.state is State.PENDING:
        # Shopify was told the payment is pending until `pending_expires_at`; the PSP never
        # said more. A pending payment must end in a decision: it is declined.
        return _pending_expired(
            session, policy, now, {}, "pending window closed without the provider's final word"
        )
    return None


def _pending_expired(
    session: Session, policy: Policy, now: float, fields: dict[str, Any], detail: str, **event: Any
) -> Decision:
    """The payment's pending window closed without the PSP's final word: it is declined,
    and the rejection reported in the same run."""
    return _decide(
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
    return _decide(
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


def awaits_confirmation(session: Session, *, confirmation: bool) -> bool:
    """An approved payment that Shopify must confirm before it is resolved, and whose
    confirmation request has not come. Once a `paymentSessionConfirm` went out, the answer
    is awaited whatever the setting says now."""
    if session.kind is not Kind.PAYMENT or session.outcome is not Outcome.APPROVED:
        return False
    if session.confirmation_result is not None:
        return False
    return confirmation or session.sent_mutation == CONFIRM_PAYMENT


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
    note = (f"; status: {status_detail}" if status_detail else "") + _interrupted(session)
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
    return _decide(
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
    return _decide(
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
    return _decide(
        session,
        now,
        Event.TOKEN_WAIT,
        step=RetryLater(delay, error),
        due_at=now + delay + policy.lease_seconds,
        fields={**fields, "not_before": now + delay},
        error=error,
        detail=f"next attempt in {delay:.2f}s",
    )


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
        return _pending_expired(
            session,
            policy,
            now,
            {**fields, "last_error": result.error},
            f"{mutation} refused {PENDING_WINDOW_PAST}: the pending window closed before "
            "Shopify took it",
            attempt=attempt,
            error=result.error,
        )
    if (isinstance(result, Accepted) or mine) and mutation == CONFIRM_PAYMENT:
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
        return _decide(
            session,
            now,
            Event.REPORTED_PENDING if final is State.PENDING else Event.REPORTED,
            step=Done(final),
            due_at=session.pending_expires_at if final is State.PENDING else None,
            fields={**fields, "report": report, "last_error": None, "not_before": None},
            attempt=attempt,
            detail=detail + _interrupted(session),
        )
    if isinstance(result, Unavailable):
        if policy.shopify.exhausted(phase_attempt, now - phase_since):
            return dead_letter(session, now, result.error, attempt=attempt, fields=fields)
        delay = policy.shopify.delay(phase_attempt, retry_after=result.retry_after)
        return _decide(
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
    detail = CONFIRM_PAYMENT + (" (already applied by an earlier attempt)" if mine else "")
    return _decide(
        session,
        now,
        Event.CONFIRMATION_REQUESTED,
        step=Done(State.CONFIRMING),
        due_at=closes,
        fields={**fields, "last_error": None, "not_before": closes},
        attempt=attempt,
        detail=detail + _interrupted(session),
    )


def dead_letter(
    session: Session,
    now: float,
    error: str,
    *,
    attempt: int | None = None,
    fields: dict[str, Any] | None = None,
    ledger: LedgerVerdict | None = None,
    detail: str | None = None,
) -> Decision:
    return _decide(
        session,
        now,
        Event.FAILED,
        step=DeadLetter(error),
        due_at=None,
        fields={**(fields or {}), "last_error": error, "failed_at": now, "not_before": None},
        ledger=ledger,
        attempt=attempt,
        error=error,
        detail=detail,
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
