import pytest

from workers.retry_policy import RetryPolicy

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
