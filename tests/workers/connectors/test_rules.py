"""Every connector's rule tables, row by row: what each provider answer means for payhook.

Each case is an answer a provider can give; `test_every_row_is_reached` makes sure the
cases walk every row of every table, so a new row cannot go untested.
"""

from __future__ import annotations

import pytest

from workers.connectors import aplazame, bigcommerce, http, ledyer, purchase
from workers.connectors.base import (
    Approved,
    DeclineCode,
    Declined,
    NotFound,
    Pending,
    TryAgain,
)
from workers.connectors.rules import Rule, RuleTable, Verdict, result, status_result

A, D, E, P = Verdict.APPROVED, Verdict.DECLINED, Verdict.EXPIRED, Verdict.PENDING
R, M, N = Verdict.RETRY, Verdict.AMBIGUOUS, Verdict.NOT_FOUND

# table → [(HTTP status, provider code, expected verdict)]
CASES: dict[str, tuple[RuleTable, list[tuple[int | None, str | None, Verdict]]]] = {
    "http": (
        http.RULES,
        [
            (200, None, A),
            (201, None, A),
            (409, "already_processed", A),
            (402, "AUTHORIZATION_EXPIRED", E),
            (422, "AUTHORIZATION_EXPIRED", E),
            (402, "card_declined", D),
            (422, None, D),
            (408, None, R),
            (429, None, R),
            (401, None, R),
            (403, None, R),
            (500, None, R),
            (503, None, R),
            (400, None, D),
            (404, None, D),
            (302, None, M),
        ],
    ),
    "ledyer order status": (
        ledyer.ORDER_STATES,
        [(None, "cancelled", D), (None, "expired", E)],
    ),
    "ledyer": (
        ledyer.ANSWERS,
        [
            (200, None, A),
            (204, None, A),
            (400, None, D),
            (401, None, R),
            (403, None, R),
            (404, None, D),
            (409, None, M),
            (429, None, R),
            (502, None, M),
            (422, None, D),
            (302, None, M),
        ],
    ),
    "aplazame": (
        aplazame.ANSWERS,
        [
            (200, None, A),
            (400, None, D),
            (401, None, R),
            (403, None, D),
            (404, None, D),
            (406, None, R),
            (429, None, R),
            (500, None, M),
            (504, None, M),
            (422, None, D),
            (302, None, M),
        ],
    ),
    "purchase status": (
        purchase.PURCHASE_STATES,
        [(None, "CANCELLED", D), (None, "CLOSED", D), (None, "EXPIRED", E)],
    ),
    "purchase": (
        purchase.ANSWERS,
        [
            (200, "OK", A),
            (200, "PURCHASE_NOT_FOUND", D),
            (200, "PURCHASE_EXPIRED", E),
            (200, "PURCHASE_CLOSED", D),
            (200, "PURCHASE_CANCELLED", D),
            (200, "INVALID_AMOUNT", D),
            (200, "INVALID_ITEMS", D),
            (200, "CAPTURE_DECLINED", D),
            (200, "IDEMPOTENCY_KEY_IN_USE", M),
            (200, "THROTTLED", R),
            (400, "GRAPHQL_VALIDATION_FAILED", R),
            (400, "GRAPHQL_ERROR", R),
            (401, "OK", R),
            (403, "OK", R),
            (429, "OK", R),
            (500, "INTERNAL", M),
            (200, "SOMETHING_NEW", M),
        ],
    ),
    "bigcommerce capture": (
        bigcommerce.CAPTURE_STATES,
        [
            (None, "capture pending", P),
            (None, "captured", A),
            (None, "paid", A),
            (None, "partially refunded", A),
            (None, "refunded", A),
            (None, "authorized", N),
            (None, "declined", D),
            (None, "void pending", D),
            (None, "void", D),
            (None, "held for review", R),
        ],
    ),
    "bigcommerce void": (
        bigcommerce.VOID_STATES,
        [
            (None, "void pending", P),
            (None, "void", A),
            (None, "declined", A),
            (None, "authorized", N),
            (None, "capture pending", D),
            (None, "captured", D),
            (None, "paid", D),
            (None, "", R),
        ],
    ),
    "bigcommerce": (
        bigcommerce.ANSWERS,
        [
            (201, None, A),
            (401, None, R),
            (403, None, R),
            (404, None, D),
            (429, None, R),
            (500, None, M),
            (422, None, D),
            (302, None, M),
        ],
    ),
}

ROWS = [
    pytest.param(table, status, code, verdict, id=f"{name}: {status} {code}")
    for name, (table, cases) in CASES.items()
    for status, code, verdict in cases
]


@pytest.mark.parametrize(("table", "status", "code", "verdict"), ROWS)
def test_each_answer_has_its_verdict(
    table: RuleTable, status: int | None, code: str | None, verdict: Verdict
) -> None:
    if table.default is None and code is not None:
        rule = table.first([code])  # state tables: a provider state, no default
        assert rule is not None
    else:
        rule = table.classify(status=status, code=code)
    assert rule.verdict is verdict


@pytest.mark.parametrize("name", list(CASES))
def test_every_row_is_reached(name: str) -> None:
    table, cases = CASES[name]
    reached = {
        id(
            table.first([code])
            if table.default is None and code
            else table.find(status=s, code=code)
        )
        for s, code, _ in cases
    }
    expected = {id(rule) for rule in table.rules}
    if table.default is not None:
        expected.add(id(table.default))
    assert reached == expected


def test_a_state_table_without_a_default_has_no_opinion_on_other_states() -> None:
    assert ledyer.ORDER_STATES.first(["uncaptured", "partiallyCaptured"]) is None
    with pytest.raises(LookupError):
        ledyer.ORDER_STATES.classify(code="uncaptured")


def test_the_first_row_in_table_order_wins_among_several_states() -> None:
    rule = ledyer.ORDER_STATES.first(["expired", "cancelled"])
    assert rule is not None
    assert rule.code == "cancelled"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Rule(A), Approved("ref")),
        (Rule(D, message="row"), Declined(DeclineCode.PROCESSING_ERROR, "psp says")),
        (Rule(E), Declined(DeclineCode.AUTHORIZATION_EXPIRED, "psp says")),
        (Rule(P), Pending("ref", retry_after=3.0)),
        (Rule(R), TryAgain("why", retry_after=3.0)),
        (Rule(M), TryAgain("why", retry_after=3.0, ambiguous=True)),
        (Rule(N), NotFound()),
    ],
)
def test_each_verdict_becomes_its_port_value(rule: Rule, expected: object) -> None:
    known = status_result(rule, reference="ref", reason="why", message="psp says", retry_after=3)
    assert known == expected


def test_the_rows_message_stands_in_when_the_psp_gives_none() -> None:
    answer = result(Rule(D, message="row says"), reference="r", reason="why")
    assert answer == Declined(DeclineCode.PROCESSING_ERROR, "row says")


def test_not_found_is_no_answer_to_a_money_request() -> None:
    with pytest.raises(ValueError, match="not found"):
        result(Rule(N), reference="r", reason="why")
