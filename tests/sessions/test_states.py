import pytest

from errors import IllegalTransition
from sessions.states import (
    TRANSITIONS,
    Event,
    State,
    check,
    recovery_point,
    sources_of,
    target_of,
)

ALLOWED = {
    (State.RECEIVED, State.SETTLING),
    (State.RECEIVED, State.FAILED),
    (State.RECEIVED, State.SETTLED),
    (State.SETTLED, State.PENDING),
    (State.PENDING, State.SETTLED),
    (State.PENDING, State.FAILED),
    (State.SETTLED, State.CONFIRMING),  # Shopify took paymentSessionConfirm
    (State.CONFIRMING, State.SETTLED),  # its confirmation request came
    (State.CONFIRMING, State.FAILED),  # none came within the window
    (State.SETTLING, State.SETTLING),
    (State.SETTLING, State.SETTLED),
    (State.SETTLING, State.FAILED),
    (State.SETTLED, State.SETTLED),  # a report attempt Shopify did not take
    (State.SETTLED, State.REPORTED),
    (State.SETTLED, State.FAILED),
    (State.FAILED, State.RECEIVED),
    (State.FAILED, State.SETTLED),
    (State.FAILED, State.FAILED),  # an operator gives back the money a failed session held
}


MOVES = {(state, target) for (state, _), target in TRANSITIONS.items()}


def test_the_events_collapsed_to_moves_are_exactly_the_documented_moves() -> None:
    assert MOVES == ALLOWED


def test_a_settled_outcome_never_goes_back_to_the_psp() -> None:
    # The guarantee behind "a failed resolve never repeats the capture".
    assert (State.SETTLED, State.SETTLING) not in MOVES
    assert (State.SETTLED, State.RECEIVED) not in MOVES
    assert State.SETTLED not in sources_of(Event.PSP_RETRY)


@pytest.mark.parametrize("state", [State.SETTLED, State.PENDING, State.CONFIRMING, State.REPORTED])
def test_a_second_settlement_is_illegal_in_the_table_itself(state: State) -> None:
    # Only a session without a stored outcome (or a failed one, whose buyer's PSP spoke
    # late) can be settled; a settled session may be told its pending payment's final word
    # (psp_final), never settled again.
    assert (state, Event.PSP_SETTLED) not in TRANSITIONS
    with pytest.raises(IllegalTransition, match="by psp_settled"):
        check(state, Event.PSP_SETTLED)


def test_each_event_leads_to_one_state_from_wherever_it_may_happen() -> None:
    for (state, event), target in TRANSITIONS.items():
        assert check(state, event) is target is target_of(event)
    assert all(sources_of(event) for event in Event)


def test_reported_is_final() -> None:
    assert not any(state is State.REPORTED for state, _ in TRANSITIONS)


def test_work_resumes_at_the_stored_outcome() -> None:
    assert recovery_point(has_outcome=True) is State.SETTLED
    assert recovery_point(has_outcome=False) is State.RECEIVED
    assert target_of(Event.REPLAYED) is State.RECEIVED
    assert target_of(Event.REPLAYED_SETTLED) is State.SETTLED


def test_illegal_moves_raise_with_both_states_and_the_event_named() -> None:
    with pytest.raises(IllegalTransition, match="reported to settling by psp_retry"):
        check(State.REPORTED, Event.PSP_RETRY)
