"""`python -m bench.due_summary` on a small store: its loader, readings and answers keep
working between full runs, and the indexes answer what every due session says."""

from __future__ import annotations

import pytest

from bench.due_summary import run_size


async def test_the_bench_reads_both_ways_and_only_the_indexes_see_past_the_scan() -> None:
    result = await run_size(6_000, scrapes=20)
    exact, new, old = result.exact, result.new.summary, result.old.summary
    assert new.indexed
    assert not old.indexed
    assert new.pending_payments == exact.pending_payments == 600
    assert new.oldest_unfinished_seconds == pytest.approx(exact.oldest_unfinished_seconds, abs=1)
    assert new.pending_closes_in == pytest.approx(exact.pending_closes_in, abs=1)
    # The 5,000 most due hold neither the long backoffs nor most pending windows.
    assert old.oldest_unfinished_seconds < exact.oldest_unfinished_seconds - 3600
    assert old.pending_payments < exact.pending_payments
    assert result.new.commands == 8
    assert result.old.commands > 5_000
