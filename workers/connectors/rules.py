"""Rule tables: what a provider's answer means for payhook, declared as data.

Each connector keeps one `RuleTable` per kind of answer it reads (HTTP status and error
code of a money request, the state of an order it looked up). A row matches on the HTTP
status (exact, or an inclusive range) and/or the provider's code; the first matching row
wins, so specific rows come before general ones. A table is read top to bottom like the
tables in docs/connectors.md, and tested row by row.

| verdict     | becomes                                                               |
|-------------|-----------------------------------------------------------------------|
| approved    | `Approved`                                                            |
| declined    | `Declined(PROCESSING_ERROR)`                                          |
| expired     | `Declined(AUTHORIZATION_EXPIRED)`                                     |
| pending     | `Pending`: final later, poll `status`                                 |
| retry       | `TryAgain`: nothing happened, send again on the PSP ladder            |
| ambiguous   | `TryAgain(ambiguous=True)`: may have happened, ask `status` first     |
| not_found   | `NotFound` (status lookups only): safe to send                        |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from workers.connectors.base import (
    Approved,
    DeclineCode,
    Declined,
    NotFound,
    Pending,
    Result,
    StatusResult,
    TryAgain,
)


class Verdict(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    EXPIRED = "expired"
    PENDING = "pending"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Rule:
    """One row: `status` is an HTTP status or an inclusive `(low, high)` range; `code` is
    the provider's error or state code. `message` is the merchant message used when the
    provider gives none."""

    verdict: Verdict
    status: int | tuple[int, int] | None = None
    code: str | None = None
    message: str = ""

    def matches(self, status: int | None, code: str | None) -> bool:
        if self.code is not None and self.code != code:
            return False
        if self.status is None:
            return True
        if status is None:
            return False
        if isinstance(self.status, tuple):
            return self.status[0] <= status <= self.status[1]
        return status == self.status


@dataclass(frozen=True)
class RuleTable:
    """Rows in order; `default` answers what no row matches (None: the caller decides)."""

    name: str
    rules: tuple[Rule, ...]
    default: Rule | None = None

    def find(self, *, status: int | None = None, code: str | None = None) -> Rule | None:
        for rule in self.rules:
            if rule.matches(status, code):
                return rule
        return self.default

    def classify(self, *, status: int | None = None, code: str | None = None) -> Rule:
        rule = self.find(status=status, code=code)
        if rule is None:
            raise LookupError(f"{self.name}: no rule for status={status} code={code!r}")
        return rule

    def first(self, codes: Iterable[str]) -> Rule | None:
        """The first row (in table order) whose code is among `codes`; never the default.

        For providers that report several states at once (Ledyer's order `status` list).
        """
        present = set(codes)
        for rule in self.rules:
            if rule.code in present:
                return rule
        return None


def status_result(
    rule: Rule,
    *,
    reference: str,
    reason: str,
    message: str | None = None,
    retry_after: float | None = None,
) -> StatusResult:
    """The port's value for a row; `message` (the provider's own words) wins over the row's."""
    verdict = rule.verdict
    if verdict is Verdict.APPROVED:
        return Approved(psp_reference=reference)
    if verdict is Verdict.DECLINED:
        return Declined(DeclineCode.PROCESSING_ERROR, message or rule.message or reason)
    if verdict is Verdict.EXPIRED:
        return Declined(DeclineCode.AUTHORIZATION_EXPIRED, message or rule.message or reason)
    if verdict is Verdict.PENDING:
        return Pending(psp_reference=reference, retry_after=retry_after)
    if verdict is Verdict.NOT_FOUND:
        return NotFound()
    return TryAgain(reason, retry_after=retry_after, ambiguous=verdict is Verdict.AMBIGUOUS)


def result(
    rule: Rule,
    *,
    reference: str,
    reason: str,
    message: str | None = None,
    retry_after: float | None = None,
) -> Result:
    """As `status_result`, for the answer to a money request (which is never "not found")."""
    known = status_result(
        rule, reference=reference, reason=reason, message=message, retry_after=retry_after
    )
    if isinstance(known, NotFound):
        raise ValueError(f"rule {rule} answers 'not found' to a money request")
    return known
