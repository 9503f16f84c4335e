import math
from datetime import UTC, datetime

import pytest

from workers.retry_policy import RetryPolicy, parse_retry_after

POLICY = RetryPolicy(ladder=(5.0, 30.0, 120.0), max_attempts=5)


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 5.0), (2, 30.0), (3, 120.0), (9, 120.0)])
def test_the_last_step_of_the_ladder_repeats(attempt: int, ceiling: float) -> None:
    assert POLICY.ceiling(attempt) == ceiling


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert POLICY.delay(2, rand=lambda: 0.0) == 0.0
    assert POLICY.delay(2, rand=lambda: 0.5) == 15.0
    assert POLICY.delay(2, rand=lambda: 0.999) == pytest.approx(29.97)


def test_retry_after_is_a_floor_never_a_ceiling() -> None:
    assert POLICY.delay(1, retry_after=60.0, rand=lambda: 0.5) == 60.0
    assert POLICY.delay(3, retry_after=1.0, rand=lambda: 0.5) == 60.0


def test_jittered_delays_spread_out() -> None:
    delays = {round(POLICY.delay(3), 3) for _ in range(200)}
    assert len(delays) > 150
    assert all(0 <= d <= 120.0 for d in delays)


@pytest.mark.parametrize(("attempt", "exhausted"), [(1, False), (4, False), (5, True), (6, True)])
def test_attempts_are_capped(attempt: int, exhausted: bool) -> None:
    assert POLICY.exhausted(attempt) is exhausted


@pytest.mark.parametrize(("ladder", "attempts"), [((), 3), ((1.0, -1.0), 3), ((1.0,), 0)])
def test_nonsense_policies_are_refused(ladder: tuple[float, ...], attempts: int) -> None:
    with pytest.raises(ValueError, match=r"ladder|max_attempts"):
        RetryPolicy(ladder=ladder, max_attempts=attempts)


def test_a_round_ends_only_when_both_the_cap_and_the_deadline_have_passed() -> None:
    policy = RetryPolicy(ladder=(5.0,), max_attempts=3, deadline_seconds=172800.0)
    assert not policy.exhausted(3, elapsed=3600.0)  # the cap alone is not enough
    assert not policy.exhausted(2, elapsed=200000.0)  # nor the deadline alone
    assert policy.exhausted(3, elapsed=172800.0)


def test_the_default_shopify_ladder_keeps_trying_for_two_days() -> None:
    from config import Settings

    settings = Settings()
    policy = RetryPolicy(
        settings.shopify_retry_ladder,
        settings.shopify_max_attempts,
        settings.shopify_retry_deadline_seconds,
    )
    assert policy.deadline_seconds >= 2 * 86400
    assert policy.ladder[:3] == (5.0, 30.0, 120.0)
    assert max(policy.ladder) <= settings.visibility_timeout_seconds * 8


# A peer's wait is a floor only up to the ladder's top step: past it, the peer would decide
# when (or whether) a session is ever looked at again.
@pytest.mark.parametrize("asked", [1e12, 10**30, 121.0])
def test_a_peer_wait_longer_than_the_top_step_is_capped_at_it(asked: float) -> None:
    assert POLICY.delay(1, retry_after=asked, rand=lambda: 0.0) == 120.0


@pytest.mark.parametrize("asked", [math.nan, math.inf, -math.inf, -5.0])
def test_a_peer_wait_that_is_no_number_of_seconds_leaves_the_ladder_alone(asked: float) -> None:
    assert POLICY.delay(2, retry_after=asked, rand=lambda: 0.5) == 15.0


def test_a_capped_wait_still_counts_towards_the_attempt_cap_and_deadline() -> None:
    policy = RetryPolicy(ladder=(5.0, 30.0), max_attempts=3, deadline_seconds=100.0)
    waited, attempt = 0.0, 0
    while not policy.exhausted(attempt, waited):
        attempt += 1
        waited += policy.delay(attempt, retry_after=1e12, rand=lambda: 1.0)
    assert (attempt, waited) == (4, 120.0)


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("1e12", 1e12),
        ("0", 0.0),
        ("Sun, 01 Mar 2026 12:01:30 GMT", 90.0),
        ("Sunday, 01-Mar-26 12:00:10 GMT", 10.0),
        ("Sun Mar  1 12:00:05 2026", 5.0),
        ("Sat, 28 Feb 2026 12:00:00 GMT", 0.0),  # already past: come back now
        ("-5", None),
        ("nan", None),
        ("NaN", None),
        ("inf", None),
        ("-inf", None),
        ("infinity", None),
        ("soon", None),
        ("", None),
        ("12, 13", None),
        ("Sun, 99 Mar 2026 12:00:00 GMT", None),
        ("9" * 5000, None),
        (None, None),
    ],
)
def test_retry_after_is_parsed_in_both_of_its_forms_and_garbage_is_ignored(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds
