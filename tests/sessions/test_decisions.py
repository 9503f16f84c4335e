"""The decisions made outside a worker's run (`sessions.decisions`), as pure functions: what
each writes, and when nothing may be written."""

from __future__ import annotations

import pytest

from sessions.change import Change
from sessions.decisions import (
    PspWord,
    Recorded,
    Refused,
    confirmation,
    psp_word,
    release,
    replay,
)
from sessions.models import CONFIRM_MUTATION, Kind, Outcome, Session
from sessions.states import Event, State, sources_of
from tests.factories import make_session

NOW = 1_000.0


def payment(**fields: object) -> Session:
    return make_session(kind=Kind.PAYMENT, created_at=NOW - 10, **fields)


def word(outcome: Outcome) -> PspWord:
    return PspWord(outcome, "ref-1")


def decide_word(session: Session, outcome: Outcome) -> Change | Recorded | Refused:
    return psp_word(session, word(outcome), NOW, lease_seconds=30, pending_seconds=600)


@pytest.mark.parametrize("outcome", list(Outcome))
def test_the_psps_first_word_settles_the_payment_and_supersedes_any_run(outcome: Outcome) -> None:
    change = decide_word(payment(), outcome)

    assert isinstance(change, Change)
    assert (change.happened, change.state, change.supersede) == (
        Event.PSP_SETTLED,
        State.SETTLED,
        True,
    )
    assert change.when == {"outcome": frozenset({""})}
    assert change.fields["outcome"] is outcome
    assert ("pending_expires_at" in change.fields) is (outcome is Outcome.PENDING)


def test_a_pending_word_only_ever_comes_first() -> None:
    change = decide_word(payment(), Outcome.PENDING)
    assert isinstance(change, Change)
    assert change.sources() == {State.RECEIVED, State.SETTLING}
    assert change.fields["pending_expires_at"] == NOW - 10 + 600


@pytest.mark.parametrize("state", [State.SETTLED, State.PENDING, State.FAILED])
@pytest.mark.parametrize("final", [Outcome.APPROVED, Outcome.DECLINED])
def test_the_final_word_on_a_pending_payment_stands_wherever_it_is(
    state: State, final: Outcome
) -> None:
    change = decide_word(payment(state=state, outcome=Outcome.PENDING), final)

    assert isinstance(change, Change)
    assert change.happened is Event.PSP_FINAL
    assert state in change.sources() == sources_of(Event.PSP_FINAL)
    assert change.when == {"outcome": frozenset({Outcome.PENDING.value})}
    assert change.event.event == "psp_settled"  # one thing to a reader of the timeline


def test_the_same_word_again_is_recorded_and_writes_nothing() -> None:
    approved = payment(state=State.SETTLED, outcome=Outcome.APPROVED)
    assert decide_word(approved, Outcome.APPROVED) == Recorded()


@pytest.mark.parametrize(
    ("stored", "told"),
    [
        (Outcome.APPROVED, Outcome.DECLINED),
        (Outcome.DECLINED, Outcome.APPROVED),
        (Outcome.APPROVED, Outcome.PENDING),
    ],
)
def test_another_word_after_a_final_one_is_refused(stored: Outcome, told: Outcome) -> None:
    session = payment(state=State.REPORTED, outcome=stored)
    assert decide_word(session, told) == Refused(
        "already_final", f"payment session {session.id} is already reported"
    )


def confirmable(**fields: object) -> Session:
    return payment(outcome=Outcome.APPROVED, **fields)


@pytest.mark.parametrize(
    ("fields", "guard"),
    [
        ({"state": State.CONFIRMING}, {}),
        (
            {"state": State.FAILED, "sent_mutation": CONFIRM_MUTATION},
            {"sent_mutation": frozenset({CONFIRM_MUTATION})},
        ),
        (
            {"state": State.SETTLED, "inflight": State.SETTLED},
            {"inflight": frozenset({"settled"})},
        ),
    ],
)
def test_a_confirmation_is_taken_on_the_evidence_that_shopify_was_asked(
    fields: dict[str, object], guard: dict[str, frozenset[str]]
) -> None:
    session = confirmable(**fields)
    change = confirmation(session, False, NOW, lease_seconds=30)

    assert isinstance(change, Change)
    assert (change.happened, change.expect, change.supersede) == (
        Event.CONFIRMATION,
        frozenset({session.state}),
        True,
    )
    assert change.when == {
        "outcome": frozenset({"approved"}),
        "confirmation_result": frozenset({""}),
        **guard,
    }
    assert change.fields["reject_code"] == "CONFIRMATION_REJECTED"


def test_a_confirmation_without_evidence_or_against_a_recorded_one_is_refused() -> None:
    never_asked = confirmable(state=State.SETTLED)
    assert isinstance(confirmation(never_asked, True, NOW, lease_seconds=30), Refused)
    recorded = confirmable(state=State.SETTLED, confirmation_result=True)
    assert confirmation(recorded, True, NOW, lease_seconds=30) == Recorded()
    conflict = confirmation(recorded, False, NOW, lease_seconds=30)
    assert isinstance(conflict, Refused)
    assert conflict.code == "confirmation_conflict"


def test_a_replay_is_guarded_by_the_replay_count_it_read() -> None:
    change = replay(make_session(state=State.FAILED, replays=2), NOW, actor="ops", lease_seconds=30)
    assert isinstance(change, Change)
    assert change.when["replays"] == frozenset({"2"})
    assert change.fields["replays"] == 3
    assert isinstance(replay(make_session(), NOW, actor="ops", lease_seconds=30), Refused)


def test_a_release_keeps_the_session_failed_and_gives_the_reservation_back() -> None:
    session = make_session(state=State.FAILED)
    change = release(session, "10.00 EUR given back", NOW)
    assert (change.state, change.sources(), change.due_at) == (
        State.FAILED,
        frozenset({State.FAILED}),
        None,
    )
    assert change.ledger is not None
    assert (change.ledger.approved, change.ledger.final) == (False, False)
