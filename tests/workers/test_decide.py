"""The decision table: each row is a situation a payments engineer relies on being decided
one way. Pure functions: no Redis, no network, a fixed clock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sessions.change import LedgerOperation, LedgerVerdict
from sessions.models import Kind, Op, Outcome, Report
from sessions.states import State
from tests.factories import make_session
from workers.connectors.base import Approved, DeclineCode, Declined, Pending, TryAgain
from workers.lifecycle import decide, moves, reporting, settling
from workers.lifecycle.moves import (
    Accepted,
    DeadLetter,
    Done,
    Policy,
    Refused,
    ReportNext,
    RetryLater,
    Unavailable,
)
from workers.retry_policy import RetryPolicy

NOW = 1_000_000.0
POLICY = Policy(
    psp=RetryPolicy((2.0,), max_attempts=3),
    shopify=RetryPolicy((5.0,), max_attempts=3),
    lease_seconds=30.0,
    max_deliveries=10,
)

ROOT = Path(__file__).resolve().parents[2]


def session(**fields: Any) -> Any:
    return make_session(**{"created_at": NOW - 10, "updated_at": NOW - 10, **fields})


PSP_ROWS = [
    # (situation, session fields, PSP result, state, step, fields expected)
    (
        "approved",
        {},
        Approved("ref-1"),
        State.SETTLED,
        ReportNext,
        {"outcome": Outcome.APPROVED, "psp_reference": "ref-1", "phase_attempts": 0},
    ),
    (
        "declined",
        {},
        Declined(DeclineCode.AUTHORIZATION_EXPIRED, "expired"),
        State.SETTLED,
        ReportNext,
        {"outcome": Outcome.DECLINED, "reject_code": "AUTHORIZATION_EXPIRED"},
    ),
    (
        "unavailable: retry in backoff",
        {},
        TryAgain("503"),
        State.SETTLING,
        RetryLater,
        {"psp_uncertain": None, "phase_attempts": 1},
    ),
    (
        "ambiguous: ask the status next time",
        {},
        TryAgain("timeout", ambiguous=True),
        State.SETTLING,
        RetryLater,
        {"psp_uncertain": True},
    ),
    (
        "pending at the PSP is polled like an ambiguous answer",
        {},
        Pending("ref-2"),
        State.SETTLING,
        RetryLater,
        {"psp_uncertain": True},
    ),
    (
        "ladder exhausted: dead letter, uncertainty kept for the operator",
        {"state": State.SETTLING, "phase_attempts": 2, "phase_since": NOW - 60},
        TryAgain("timeout", ambiguous=True),
        State.FAILED,
        DeadLetter,
        {"psp_uncertain": True, "failed_at": NOW},
    ),
    (
        "an interrupted run is uncertain even after a plain failure",
        {"inflight": State.SETTLING, "state": State.SETTLING, "phase_since": NOW - 5},
        TryAgain("503"),
        State.SETTLING,
        RetryLater,
        {"psp_uncertain": True},
    ),
]


CAPTURE_OP = LedgerOperation("pay-1", Op.CAPTURE, 1000)


@pytest.mark.parametrize(
    ("situation", "fields", "result", "state", "step", "expected"),
    PSP_ROWS,
    ids=[row[0] for row in PSP_ROWS],
)
def test_after_the_psp(
    situation: str,
    fields: dict[str, Any],
    result: Any,
    state: State,
    step: type,
    expected: dict[str, Any],
) -> None:
    decision = settling.after_psp(session(**fields), result, POLICY, NOW, ledger=CAPTURE_OP)
    assert decision.session.state is state
    assert isinstance(decision.step, step)
    for name, value in expected.items():
        assert getattr(decision.session, name) == value, name
    assert decision.session.inflight is None
    # Stored: a step that reports next marks that a report may be sent from here.
    marked = State.SETTLED if isinstance(decision.step, ReportNext) else None
    assert decision.change.fields["inflight"] == marked
    if isinstance(decision.step, RetryLater):
        assert decision.session.not_before == NOW + decision.step.delay
        assert decision.change.due_at == NOW + decision.step.delay + POLICY.lease_seconds


@pytest.mark.parametrize(
    ("result", "approved"),
    [(Approved("r"), True), (Declined(DeclineCode.PROCESSING_ERROR, "no"), False)],
)
def test_a_final_psp_answer_settles_the_ledger_in_the_same_write(
    result: Any, approved: bool
) -> None:
    decision = settling.after_psp(session(), result, POLICY, NOW, ledger=CAPTURE_OP)
    assert decision.change.ledger == LedgerVerdict("pay-1", approved, True, Op.CAPTURE, 1000)
    assert (
        settling.after_psp(session(), TryAgain("x"), POLICY, NOW, ledger=CAPTURE_OP).change.ledger
        is None
    )


RESOLVE, REJECT, PENDING = "captureSessionResolve", "captureSessionReject", "paymentSessionPending"
CONFIRM = "paymentSessionConfirm"
SETTLED = {"state": State.SETTLED, "outcome": Outcome.APPROVED, "phase_since": NOW - 5}

REPORT_ROWS = [
    ("accepted", {}, RESOLVE, Accepted(), State.REPORTED, Done),
    ("unavailable", {}, RESOLVE, Unavailable("HTTP 503", 1.0), State.SETTLED, RetryLater),
    (
        "unavailable past the cap",
        {"phase_attempts": 2},
        RESOLVE,
        Unavailable("HTTP 503"),
        State.FAILED,
        DeadLetter,
    ),
    (
        "INVALID_STATE on our first attempt: someone else decided",
        {},
        RESOLVE,
        Refused("INVALID_STATE", invalid_state=True),
        State.FAILED,
        DeadLetter,
    ),
    (
        "INVALID_STATE after our own earlier attempt of this mutation: done",
        {"sent_mutation": RESOLVE, "sent_mutation_attempts": 1, "report_attempts": 1},
        RESOLVE,
        Refused("INVALID_STATE", invalid_state=True),
        State.REPORTED,
        Done,
    ),
    (
        "INVALID_STATE after an interrupted run (it may have sent it): done",
        {"inflight": State.SETTLED},
        RESOLVE,
        Refused("INVALID_STATE", invalid_state=True),
        State.REPORTED,
        Done,
    ),
    (
        "INVALID_STATE after a different earlier mutation (pending): not ours",
        {"sent_mutation": PENDING, "sent_mutation_attempts": 1, "report_attempts": 1},
        "paymentSessionResolve",
        Refused("INVALID_STATE", invalid_state=True),
        State.FAILED,
        DeadLetter,
    ),
    ("another refusal", {}, REJECT, Refused("NOT_FOUND"), State.FAILED, DeadLetter),
    ("confirm taken: wait for the request", {}, CONFIRM, Accepted(), State.CONFIRMING, Done),
    (
        "confirm unavailable",
        {},
        CONFIRM,
        Unavailable("HTTP 503", 1.0),
        State.SETTLED,
        RetryLater,
    ),
    (
        "INVALID_STATE_TRANSITION after our own earlier confirm: done",
        {"sent_mutation": CONFIRM, "sent_mutation_attempts": 1, "report_attempts": 1},
        CONFIRM,
        Refused("INVALID_STATE_TRANSITION", invalid_state=True),
        State.CONFIRMING,
        Done,
    ),
    (
        "CONFIRMATION_NOT_SUPPORTED: the app is not set up for it",
        {},
        CONFIRM,
        Refused("CONFIRMATION_NOT_SUPPORTED"),
        State.FAILED,
        DeadLetter,
    ),
    (
        "pending taken: wait for the PSP",
        {"outcome": Outcome.PENDING},
        PENDING,
        Accepted(),
        State.PENDING,
        Done,
    ),
    (
        "PENDING_INVALID_STATE after our own earlier pending: pending",
        {
            "outcome": Outcome.PENDING,
            "sent_mutation": PENDING,
            "sent_mutation_attempts": 1,
            "report_attempts": 1,
        },
        PENDING,
        Refused("PENDING_INVALID_STATE", invalid_state=True, code="PENDING_INVALID_STATE"),
        State.PENDING,
        Done,
    ),
    (
        "PENDING_INVALID_STATE on our first attempt: someone else decided",
        {"outcome": Outcome.PENDING},
        PENDING,
        Refused("PENDING_INVALID_STATE", invalid_state=True, code="PENDING_INVALID_STATE"),
        State.FAILED,
        DeadLetter,
    ),
    (
        "OUT_OF_RANGE_PENDING_EXPIRES_AT: the gateway's retry",
        {"outcome": Outcome.PENDING},
        PENDING,
        Unavailable("OUT_OF_RANGE_PENDING_EXPIRES_AT", cause="pending_out_of_range"),
        State.SETTLED,
        RetryLater,
    ),
    (
        "EXPIRED_PENDING_EXPIRES_AT: the window closed, declined and rejected next",
        {"outcome": Outcome.PENDING},
        PENDING,
        Refused("EXPIRED_PENDING_EXPIRES_AT", code="EXPIRED_PENDING_EXPIRES_AT"),
        State.SETTLED,
        ReportNext,
    ),
    (
        "UNSUPPORTED_PAYMENT_METHOD: permanent",
        {"outcome": Outcome.PENDING},
        PENDING,
        Refused("UNSUPPORTED_PAYMENT_METHOD", code="UNSUPPORTED_PAYMENT_METHOD"),
        State.FAILED,
        DeadLetter,
    ),
]


def test_a_pending_window_shopify_says_closed_is_a_decline_to_report() -> None:
    before = session(kind=Kind.PAYMENT, **{**SETTLED, "outcome": Outcome.PENDING})
    refused = Refused("EXPIRED_PENDING_EXPIRES_AT", code="EXPIRED_PENDING_EXPIRES_AT")
    decision = reporting.after_report(before, PENDING, refused, POLICY, NOW)
    after = decision.session
    assert (after.outcome, after.reject_code, after.merchant_message) == (
        Outcome.DECLINED,
        "PROCESSING_ERROR",
        reporting.PENDING_EXPIRED,
    )
    # The reject that follows is a mutation of its own: a refusal of it is not "ours".
    assert reporting.earlier_attempts_of(after, "paymentSessionReject") == 0
    assert decision.change.event.event == "pending_expired"


@pytest.mark.parametrize(
    ("situation", "fields", "mutation", "result", "state", "step"),
    REPORT_ROWS,
    ids=[row[0] for row in REPORT_ROWS],
)
def test_after_the_report(
    situation: str,
    fields: dict[str, Any],
    mutation: str,
    result: Any,
    state: State,
    step: type,
) -> None:
    kind = Kind.PAYMENT if mutation.startswith("payment") else Kind.CAPTURE
    before = session(kind=kind, **{**SETTLED, **fields})
    decision = reporting.after_report(before, mutation, result, POLICY, NOW)
    assert (decision.session.state, type(decision.step)) == (state, step)
    assert decision.session.report_attempts == before.report_attempts + 1
    assert decision.session.sent_mutation == mutation
    if state is State.REPORTED:
        assert decision.change.due_at is None


@pytest.mark.parametrize(
    ("mutation", "report"),
    [("paymentSessionResolve", Report.RESOLVED), (PENDING, Report.PENDING)],
)
def test_where_shopify_sends_the_buyer_is_written_with_the_report_it_came_with(
    mutation: str, report: Report
) -> None:
    before = session(kind=Kind.PAYMENT, **SETTLED)
    url = "https://shop.example/checkouts/c/1/thank_you"
    decision = reporting.after_report(before, mutation, Accepted(url), POLICY, NOW)
    assert decision.change.fields["redirect_url"] == url
    assert decision.change.fields["report"] is report
    assert decision.session.redirect_url == url
    # Refused, or taken without a next action: nothing is written over the one stored.
    again = session(kind=Kind.PAYMENT, redirect_url=url, **SETTLED)
    for result in (Accepted(), Unavailable("HTTP 503")):
        decision = reporting.after_report(again, mutation, result, POLICY, NOW)
        assert "redirect_url" not in decision.change.fields
        assert decision.session.redirect_url == url


def test_a_payment_shopify_is_confirming_is_left_alone_for_the_window() -> None:
    before = session(kind=Kind.PAYMENT, state=State.SETTLED, outcome=Outcome.APPROVED)
    decision = reporting.after_report(before, CONFIRM, Accepted(), POLICY, NOW)
    window = POLICY.confirmation_window_seconds
    assert decision.session.report is None
    assert decision.session.not_before == NOW + window
    assert decision.change.due_at == NOW + window


def test_a_payment_whose_confirmation_request_never_came_fails_saying_so() -> None:
    before = session(kind=Kind.PAYMENT, state=State.CONFIRMING, outcome=Outcome.APPROVED)
    decision = decide.opening(before, POLICY, NOW)
    assert decision is not None
    assert decision.session.state is State.FAILED
    assert "no confirmation request from Shopify" in (decision.session.last_error or "")


@pytest.mark.parametrize(
    ("fields", "setting", "awaits"),
    [
        ({}, True, True),
        ({}, False, False),
        # Once a confirm went out, its answer is awaited whatever the setting says now.
        ({"sent_mutation": CONFIRM}, False, True),
        ({"confirmation_result": True}, True, False),
        ({"confirmation_result": False}, True, False),
        ({"outcome": Outcome.DECLINED}, True, False),
        ({"kind": Kind.CAPTURE}, True, False),
    ],
)
def test_which_payments_await_shopifys_confirmation(
    fields: dict[str, Any], setting: bool, awaits: bool
) -> None:
    before = session(
        **{"kind": Kind.PAYMENT, "state": State.SETTLED, "outcome": Outcome.APPROVED, **fields}
    )
    assert reporting.awaits_confirmation(before, confirmation=setting) is awaits


@pytest.mark.parametrize(
    ("test", "live", "refused"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_only_a_test_session_on_a_live_account_is_refused(
    test: bool, live: bool, refused: bool
) -> None:
    assert settling.refuses_test(session(test=test), live=live) is refused


def test_a_refused_test_session_is_declined_without_the_psp_and_gives_its_money_back() -> None:
    before = session(test=True)
    operation = LedgerOperation("pay-1", Op.CAPTURE, 1000)
    decision = settling.test_refused(before, "ledyer", POLICY, NOW, ledger=operation)
    assert (decision.session.state, decision.session.outcome) == (State.SETTLED, Outcome.DECLINED)
    assert decision.session.psp_attempts == 0
    assert decision.session.merchant_message == (
        "Test mode: this capture was not sent to the payment provider, whose account is live."
    )
    assert isinstance(decision.step, ReportNext)
    assert decision.change.ledger == LedgerVerdict("pay-1", False, True, Op.CAPTURE, 1000)
    assert "ledyer" in (decision.change.event.detail or "")


def test_a_pending_report_waits_until_its_window_closes() -> None:
    before = session(
        kind=Kind.PAYMENT,
        state=State.SETTLED,
        outcome=Outcome.PENDING,
        pending_expires_at=NOW + 3600,
    )
    decision = reporting.after_report(before, PENDING, Accepted(), POLICY, NOW)
    assert decision.session.state is State.PENDING
    assert decision.session.report is Report.PENDING
    assert decision.change.due_at == NOW + 3600


def test_a_pending_payment_whose_window_closed_is_declined_and_reported() -> None:
    before = session(kind=Kind.PAYMENT, state=State.PENDING, outcome=Outcome.PENDING)
    decision = decide.opening(before, POLICY, NOW)
    assert decision is not None
    assert (decision.session.state, decision.session.outcome) == (State.SETTLED, Outcome.DECLINED)
    assert isinstance(decision.step, ReportNext)


def test_too_many_deliveries_is_poison() -> None:
    decision = decide.opening(session(deliveries=11), POLICY, NOW)
    assert decision is not None
    assert decision.session.state is State.FAILED
    assert isinstance(decision.step, DeadLetter)
    assert decide.opening(session(deliveries=10), POLICY, NOW) is None


@pytest.mark.parametrize(
    ("fields", "settles", "uncertain"),
    [
        ({}, True, False),
        ({"state": State.SETTLING, "psp_uncertain": True}, True, True),
        ({"state": State.SETTLING, "inflight": State.SETTLING}, True, True),
        ({"state": State.SETTLED, "outcome": Outcome.APPROVED}, False, False),
        (
            {"state": State.SETTLED, "outcome": Outcome.APPROVED, "inflight": State.SETTLED},
            False,
            False,
        ),
    ],
)
def test_where_a_claimed_session_resumes(
    fields: dict[str, Any], settles: bool, uncertain: bool
) -> None:
    claimed = session(**fields)
    assert settling.settles(claimed) is settles
    assert settling.psp_uncertain(claimed) is uncertain


UNREPORTABLE_ROWS = [
    # (situation, session fields, step, money: the ledger verdict's "returned" or kept)
    ("first wait", {}, RetryLater, None),
    (
        "ladder out, nothing sent",
        {"state": State.SETTLING, "phase_attempts": 2},
        DeadLetter,
        "returned",
    ),
    (
        "ladder out after a lost PSP answer",
        {"state": State.SETTLING, "phase_attempts": 2, "psp_uncertain": True},
        DeadLetter,
        "held",
    ),
]


@pytest.mark.parametrize(
    ("situation", "fields", "step", "money"),
    UNREPORTABLE_ROWS,
    ids=[r[0] for r in UNREPORTABLE_ROWS],
)
def test_a_session_no_report_could_follow_waits_then_fails_and_never_forgets_the_psp(
    situation: str, fields: dict[str, Any], step: type, money: str | None
) -> None:
    before = session(phase_since=NOW - 1, **fields)
    decision = settling.unreportable(
        before,
        "no Shopify access token for s",
        POLICY,
        NOW,
        ledger=LedgerOperation(before.payment_id, Op.CAPTURE, 1000),
    )
    assert isinstance(decision.step, step)
    assert decision.session.psp_attempts == before.psp_attempts  # the PSP was not asked
    assert "PSP not asked" in (decision.session.last_error or "")
    assert bool(decision.session.psp_uncertain) is bool(fields.get("psp_uncertain"))
    ledger = decision.change.ledger
    if money == "returned":
        assert ledger is not None
        assert (ledger.approved, ledger.final) == (False, False)
    else:
        assert ledger is None
    if money == "held":
        assert decision.change.event.detail == settling.MONEY_HELD


def test_the_decisions_import_no_client_of_redis_shopify_or_a_psp() -> None:
    # A fresh interpreter: what importing `decide` alone loads, not what the suite did.
    probe = (
        "import sys, workers.lifecycle.decide as d; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'redis', 'gql', 'aiohttp', 'celery', 'kombu', 'cryptography'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout


# The one question a run asks (`decide.next_move`): after each thing that happened, store a
# decision or do one thing next.
RUN = moves.Run(
    policy=POLICY,
    ledger=LedgerOperation("pay-1", Op.CAPTURE, 1000),
    connector="simulator",
    live=False,
)
LIVE = moves.Run(policy=POLICY, ledger=RUN.ledger, connector="http", live=True)

MOVES = [
    # (situation, session fields, what happened, the run, what is done next)
    ("a fresh capture reads the token first", {}, moves.Began(), RUN, moves.ReadToken()),
    ("then asks the PSP", {}, moves.TokenRead(), RUN, moves.AskPsp()),
    (
        "an earlier request may have been applied: its status first",
        {"state": State.SETTLING, "psp_uncertain": True},
        moves.TokenRead(),
        RUN,
        moves.AskStatus(),
    ),
    (
        "a worker died mid-call: its status first",
        {"state": State.SETTLING, "inflight": State.SETTLING},
        moves.TokenRead(),
        RUN,
        moves.AskStatus(),
    ),
    (
        "the PSP has no such request: send it, the earlier one cleared",
        {"state": State.SETTLING, "psp_uncertain": True},
        moves.StatusAnswered(decide.NotFound()),
        RUN,
        moves.AskPsp(status="NotFound", cleared=True),
    ),
    (
        "a stored outcome is reported, no token read and no PSP call",
        {"state": State.SETTLED, "outcome": Outcome.APPROVED},
        moves.Began(),
        RUN,
        moves.TellShopify(),
    ),
    (
        "a stored decision that goes on is reported",
        {"state": State.SETTLED, "outcome": Outcome.APPROVED},
        moves.Stored(),
        RUN,
        moves.TellShopify(),
    ),
]


@pytest.mark.parametrize(
    ("fields", "happened", "run", "expected"),
    [row[1:] for row in MOVES],
    ids=[row[0] for row in MOVES],
)
def test_what_a_run_does_next(
    fields: dict[str, Any], happened: moves.Happened, run: moves.Run, expected: object
) -> None:
    assert decide.next_move(session(**fields), happened, run, NOW) == expected


DECIDED = [
    # (situation, session fields, what happened, the run, event, step)
    (
        "a test session on a live account is declined before any PSP call",
        {"test": True},
        moves.TokenRead(),
        LIVE,
        "test_refused",
        ReportNext,
    ),
    (
        "a status answer that knows the request settles it",
        {"state": State.SETTLING, "psp_uncertain": True},
        moves.StatusAnswered(Approved("ref-1")),
        RUN,
        "psp_settled",
        ReportNext,
    ),
    (
        "the PSP's answer settles it",
        {},
        moves.PspAnswered(Approved("ref-1"), moves.AskPsp()),
        RUN,
        "psp_settled",
        ReportNext,
    ),
    (
        "an unreadable token waits on the PSP ladder, the PSP not asked",
        {},
        moves.TokenMissing("no token for the shop", gone=False),
        RUN,
        "token_wait",
        RetryLater,
    ),
    (
        "a shop that uninstalled the app fails it at once",
        {},
        moves.TokenMissing("uninstalled", gone=True),
        RUN,
        "failed",
        DeadLetter,
    ),
    (
        "Shopify took the report",
        {"state": State.SETTLED, "outcome": Outcome.APPROVED},
        moves.ShopifyAnswered("captureSessionResolve", Accepted()),
        RUN,
        "reported",
        Done,
    ),
    (
        "a poison session fails at its claim",
        {"deliveries": 11},
        moves.Began(),
        RUN,
        "failed",
        DeadLetter,
    ),
]


@pytest.mark.parametrize(
    ("fields", "happened", "run", "event", "step"),
    [row[1:] for row in DECIDED],
    ids=[row[0] for row in DECIDED],
)
def test_what_a_run_stores(
    fields: dict[str, Any], happened: moves.Happened, run: moves.Run, event: str, step: type
) -> None:
    move = decide.next_move(session(**fields), happened, run, NOW)
    assert isinstance(move, moves.Decision)
    assert (move.change.event.event, type(move.step)) == (event, step)


def test_a_status_answer_is_named_in_the_timeline_of_the_settlement() -> None:
    uncertain = session(state=State.SETTLING, psp_uncertain=True)
    move = decide.next_move(uncertain, moves.StatusAnswered(Approved("ref-1")), RUN, NOW)
    assert isinstance(move, moves.Decision)
    assert "status: Approved" in (move.change.event.detail or "")
    assert move.change.fields["psp_uncertain"] is None
