"""Fault rules: the ways the sandbox Shopify misbehaves on purpose.

A rule is armed either for a number of calls (`times`) or for a time window
(`for_seconds` after it was added). Rules are consumed in the order they were added: a
call takes the first armed rule whose `mutation` filter matches it (no filter matches
every call, including ones that are not mutations).

| kind                 | the app sees                                                      |
|----------------------|-------------------------------------------------------------------|
| `status`             | HTTP 500/502/503, nothing applied                                 |
| `html_429`           | HTTP 429 with a Cloudflare-like HTML page, optional `Retry-After` |
| `throttled`          | HTTP 200 `errors: [{message: "Throttled"}]`, bucket at 0          |
| `malformed`          | HTTP 200 whose body is no GraphQL answer (`body`: cut-off JSON,   |
|                      | an HTML page, or JSON without `data`), nothing applied            |
| `delay`              | a slow answer (`seconds`), then the normal one                    |
| `commit_then_status` | the mutation is applied, then HTTP 5xx: a lost response           |
| `invalid_state`      | refused with `<KIND>_SESSION_INVALID_STATE`, nothing applied: what |
|                      | Shopify may answer a late repeat for a session that moved on      |
| `user_error`         | the named `mutation` answers this userError (`message`, `field`,   |
|                      | and `code`, one of that mutation's userError codes where its type  |
|                      | has any), nothing applied                                         |
| `do_not_confirm`     | `paymentSessionConfirm` is taken, and Shopify's checks say no: its |
|                      | confirmation request carries `confirmation_result: false`         |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from sandbox.ledger import MUTATIONS

# Every mutation a rule may name: the sessions' and the app's own.
SERVED = frozenset(MUTATIONS) | {"paymentsAppConfigure"}

ServerErrorStatus = Literal[500, 502, 503, 504]
CONFIRM = "paymentSessionConfirm"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    times: int | None = Field(default=None, ge=1)
    for_seconds: float | None = Field(default=None, gt=0)
    mutation: str | None = None

    @model_validator(mode="after")
    def _one_budget(self) -> _Rule:
        if (self.times is None) == (self.for_seconds is None):
            raise ValueError("give exactly one of 'times' or 'for_seconds'")
        if self.mutation is not None and self.mutation not in SERVED:
            raise ValueError(f"unknown mutation {self.mutation!r}")
        return self


class StatusFault(_Rule):
    kind: Literal["status"]
    status: ServerErrorStatus


class Html429Fault(_Rule):
    kind: Literal["html_429"]
    # Whole seconds; or any text, sent as it is, to try HTTP-dates and garbage on a client.
    retry_after: Annotated[int, Field(ge=0)] | Annotated[str, Field(max_length=200)] | None = None


class ThrottledFault(_Rule):
    kind: Literal["throttled"]


class MalformedFault(_Rule):
    kind: Literal["malformed"]
    body: Literal["truncated", "html", "no_data"] = "truncated"


class DelayFault(_Rule):
    kind: Literal["delay"]
    seconds: float = Field(gt=0, le=300)


class CommitThenStatusFault(_Rule):
    kind: Literal["commit_then_status"]
    status: ServerErrorStatus = 502


class InvalidStateFault(_Rule):
    kind: Literal["invalid_state"]


class UserErrorFault(_Rule):
    """A refusal of one mutation with a userError of your choosing, nothing applied. Its
    `code` must be one of the mutation's userError codes in the schema served, and is
    refused for a mutation whose userErrors have none (`UserError { field message }`);
    the admin API checks that against the schema (`sandbox.shopify_schema.user_error_codes`)."""

    kind: Literal["user_error"]
    message: str = Field(default="Refused by a sandbox fault rule.", min_length=1, max_length=500)
    field: list[str] | None = None
    code: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_mutation(self) -> UserErrorFault:
        if self.mutation is None:
            raise ValueError("a user_error rule names the mutation it refuses")
        return self


class DoNotConfirmFault(_Rule):
    """Only ever for `paymentSessionConfirm`: no other call may spend it."""

    kind: Literal["do_not_confirm"]
    mutation: str | None = CONFIRM

    @model_validator(mode="after")
    def _confirm_only(self) -> DoNotConfirmFault:
        if self.mutation != CONFIRM:
            raise ValueError(f"do_not_confirm is a fault of {CONFIRM} only")
        return self


FaultRule = Annotated[
    StatusFault
    | Html429Fault
    | ThrottledFault
    | MalformedFault
    | DelayFault
    | CommitThenStatusFault
    | InvalidStateFault
    | UserErrorFault
    | DoNotConfirmFault,
    Field(discriminator="kind"),
]

_RULE_ADAPTER: TypeAdapter[FaultRule] = TypeAdapter(FaultRule)


class FaultRuleError(ValueError):
    """A fault rule that does not validate; the message says which part and why."""


def parse_fault(raw: object) -> FaultRule:
    try:
        return _RULE_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'rule'}: {err['msg']}"
            for err in exc.errors()
        )
        raise FaultRuleError(problems) from None


@dataclass
class _Armed:
    rule: FaultRule
    remaining: int | None
    until: float | None

    def live(self, now: float) -> bool:
        if self.until is not None:
            return now < self.until
        return self.remaining is not None and self.remaining > 0

    def as_json(self, now: float) -> dict[str, Any]:
        shown = self.rule.model_dump(exclude_none=True)
        if self.remaining is not None:
            shown["remaining"] = self.remaining
        if self.until is not None:
            shown["seconds_left"] = round(self.until - now, 3)
        return shown


class FaultBook:
    """The armed rules. `clock` is monotonic seconds, injected so windows can be tested."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._armed: list[_Armed] = []

    def add(self, rule: FaultRule) -> None:
        until = self._clock() + rule.for_seconds if rule.for_seconds is not None else None
        self._armed.append(_Armed(rule, rule.times, until))

    def take(self, mutation: str | None) -> FaultRule | None:
        """The rule that applies to this call, spending one of its `times`."""
        now = self._clock()
        self._armed = [armed for armed in self._armed if armed.live(now)]
        for armed in self._armed:
            if armed.rule.mutation not in (None, mutation):
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
            return armed.rule
        return None

    def active(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [armed.as_json(now) for armed in self._armed if armed.live(now)]

    def clear(self) -> int:
        """Disarm everything; returns how many rules were still armed."""
        count = len(self.active())
        self._armed.clear()
        return count
