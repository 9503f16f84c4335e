"""The one place that decides a run: (session, what just happened, policy, now) → the next
move. `next_move` is the one question the executor (`workers.lifecycle.runner`) asks; its
answer is either a `Decision` to store (the event that happened, the fields and timeline entry
that record it, when the session is next due, and the step the run takes) or one `Action` to
perform. Pure functions, no I/O: the PSP phase's in `workers.lifecycle.settling`, the
report's in `workers.lifecycle.reporting`, their vocabulary in `workers.lifecycle.moves`.

Every decision names its `Event`; `sessions.states.TRANSITIONS` says where it takes the
session, and the store refuses it from any state the table does not list.
"""

from __future__ import annotations

from sessions.models import Session
from sessions.states import State
from workers.connectors.base import NotFound
from workers.lifecycle.moves import (
    Action,
    AskPsp,
    AskStatus,
    Began,
    Decision,
    Happened,
    Policy,
    PspAnswered,
    ReadToken,
    Run,
    StatusAnswered,
    Stored,
    TellShopify,
    TokenMissing,
    TokenRead,
    dead_letter,
)
from workers.lifecycle.reporting import after_report, pending_expired
from workers.lifecycle.settling import (
    after_psp,
    psp_uncertain,
    refuses_test,
    settles,
    shop_gone,
    test_refused,
    unreportable,
)


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
        status = type(happened.result).__name__
        if isinstance(happened.result, NotFound):
            # No earlier request was applied: it is safe to send, under the same key.
            return AskPsp(status=status, cleared=True)
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


NO_CONFIRMATION = (
    "no confirmation request from Shopify within {window:g}s of paymentSessionConfirm "
    "(check the extension's confirmation_callback_url); a replay waits for it again"
)


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
        return pending_expired(
            session, policy, now, {}, "pending window closed without the provider's final word"
        )
    return None
