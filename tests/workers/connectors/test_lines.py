"""Choosing order lines for an amount, and the journal that keeps a request to one."""

from __future__ import annotations

from decimal import Decimal

import fakeredis
import pytest

from sessions.models import Op
from tests.workers.connectors.conftest import operation
from workers.connectors.base import Approved, NotFound, Result, StatusResult, TryAgain
from workers.connectors.journal import Journal, Sent, ours
from workers.connectors.lines import MAX_SEARCHED_LINES, allocate, exact_lines, from_minor
from workers.connectors.sending import send_once, status_of


@pytest.mark.parametrize(
    ("amounts", "target", "expected"),
    [
        ([100, 200, 300], 600, [0, 1, 2]),
        ([100, 200, 300], 300, [0, 1]),  # earlier lines first
        ([100, 200, 300], 500, [1, 2]),
        ([100, 200, 300], 250, None),
        ([100, 200, 300], 0, None),
        ([100] * (MAX_SEARCHED_LINES + 1), 200, None),  # too many lines to search
        ([100] * (MAX_SEARCHED_LINES + 1), 100 * (MAX_SEARCHED_LINES + 1), list(range(17))),
    ],
)
def test_exact_lines(amounts: list[int], target: int, expected: list[int] | None) -> None:
    assert exact_lines(amounts, target) == expected


def test_allocate_covers_the_amount_in_line_order() -> None:
    assert allocate([7_000, 3_000], 8_000) == [(0, 7_000), (1, 1_000)]
    assert allocate([7_000, 3_000], 10_001) is None


def test_from_minor_follows_the_currency() -> None:
    assert from_minor(10_050, "EUR") == Decimal("100.50")
    assert from_minor(1_050, "JPY") == Decimal("1050")
    assert from_minor(1_050, "KWD") == Decimal("1.050")


async def test_send_once_sends_once_then_finds() -> None:
    journal = Journal(fakeredis.FakeAsyncRedis(), "unit")
    op = operation()
    sent: list[Sent] = []
    landed = False

    async def plan() -> Sent | Result:
        return Sent(request={"path": "/x"}, before=("old",), amount=100)

    async def find(entry: Sent) -> StatusResult:
        return Approved("new") if landed else NotFound()

    async def send(entry: Sent) -> Result:
        nonlocal landed
        sent.append(entry)
        landed = True
        return Approved("new")

    assert await status_of(journal, Op.CAPTURE, op, find) == NotFound()
    for _ in range(3):
        assert await send_once(journal, Op.CAPTURE, op, plan=plan, find=find, send=send) == (
            Approved("new")
        )
    assert len(sent) == 1
    assert await status_of(journal, Op.CAPTURE, op, find) == Approved("new")


async def test_the_first_journaled_request_wins_a_race() -> None:
    journal = Journal(fakeredis.FakeAsyncRedis(), "unit")
    first = await journal.remember(Op.REFUND, "k", Sent(request={"n": 1}))
    second = await journal.remember(Op.REFUND, "k", Sent(request={"n": 2}))
    assert first == second
    assert first.request == {"n": 1}


PLANNED = Sent(request={}, before=("c1",), amount=500)


@pytest.mark.parametrize(
    ("sent", "operations", "expected"),
    [
        (PLANNED, [("c1", 500)], NotFound()),  # there before the plan
        (PLANNED, [("c1", 500), ("c2", 700)], NotFound()),  # another amount
        (PLANNED, [("c1", 500), ("c2", 500)], Approved("c2")),
        (PLANNED.model_copy(update={"amount": None}), [("c2", 1)], Approved("c2")),  # a void
        (PLANNED.model_copy(update={"operation_id": "c1"}), [("c1", 500)], Approved("c1")),
    ],
    ids=["old", "other amount", "new", "void", "by id"],
)
def test_ours_is_exact(sent: Sent, operations: list[tuple[str, int]], expected: object) -> None:
    assert ours(sent, operations) == expected


def test_ours_never_picks_between_two_candidates_nor_loses_a_known_id() -> None:
    two = ours(PLANNED, [("c2", 500), ("c3", 500)])
    gone = ours(PLANNED.model_copy(update={"operation_id": "c9"}), [("c2", 500)])
    assert isinstance(two, TryAgain)
    assert isinstance(gone, TryAgain)
    assert two.ambiguous
    assert gone.ambiguous
