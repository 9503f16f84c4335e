import pytest

from errors import IllegalTransition
from sessions.states import State, can_move, check_move, recovery_point, sources_of

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


@pytest.mark.parametrize("current", list(State))
@pytest.mark.parametrize("target", list(State))
def test_only_the_documented_moves_are_allowed(current: State, target: State) -> None:
    assert can_move(current, target) is ((current, target) in ALLOWED)


def test_a_settled_outcome_never_goes_back_to_the_psp() -> None:
    # The guarantee behind "a failed resolve never repeats the capture".
    assert not can_move(State.SETTLED, State.SETTLING)
    assert not can_move(State.SETTLED, State.RECEIVED)
    assert State.SETTLED not in sources_of(State.SETTLING)


def test_reported_is_final() -> None:
    assert all(not can_move(State.REPORTED, target) for target in State)


def test_work_resumes_at_the_stored_outcome() -> None:
    assert recovery_point(has_outcome=True) is State.SETTLED
    assert recovery_point(has_outcome=False) is State.RECEIVED


def test_illegal_moves_raise_with_both_states_named() -> None:
    with pytest.raises(IllegalTransition, match="reported to settling"):
        check_move(State.REPORTED, State.SETTLING)
