"""The vocabulary of a run's decisions (`workers.lifecycle.decide`): the policy they follow,
what just happened, what the executor is asked to do, the steps a run ends on, and a
`Decision`: the change to store, the step, and the session as it is once stored. Plain data,
with `decision` and `dead_letter`, which every decision is recorded with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessions.change import Change, LedgerOperation, LedgerVerdict
from sessions.models import Session
from sessions.states import Event, State, check
from workers.connectors.base import (
    Result,
    StatusResult,
)
from workers.retry_policy import RetryPolicy


@dataclass(frozen=True)
class Policy:
    psp: RetryPolicy
    shopify: RetryPolicy
    lease_seconds: float
    max_deliveries: int = 200
    # How long a payment Shopify was asked to confirm waits for its confirmation request.
    confirmation_window_seconds: float = 3600.0


# What the worker does once a decision is stored.
@dataclass(frozen=True)
class Done:
    state: State | None


@dataclass(frozen=True)
class RetryLater:
    delay: float
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str


@dataclass(frozen=True)
class Skipped:
    """The delivery did nothing: the session was busy elsewhere, early, finished or moved."""

    reason: str


@dataclass(frozen=True)
class ReportNext:
    """The outcome is stored; tell Shopify in the same run."""


Step = Done | RetryLater | DeadLetter | Skipped | ReportNext


# What Shopify said to a mutation.
@dataclass(frozen=True)
class Accepted:
    # A payment's resolve, reject or pending: where Shopify said to send the buyer next.
    redirect_url: str | None = None


@dataclass(frozen=True)
class Unavailable:
    error: str
    retry_after: float | None = None
    # The failure's class (`errors.ShopifyUnavailable.cause`), for metrics only.
    cause: str = "transport"


@dataclass(frozen=True)
class Refused:
    error: str
    invalid_state: bool = False
    # Shopify's userError code, when it gave one.
    code: str | None = None


ReportResult = Accepted | Unavailable | Refused


# What just happened in a run: the executor's answer to the last question.
@dataclass(frozen=True)
class Began:
    """The session was just claimed."""


@dataclass(frozen=True)
class TokenRead:
    """The shop's token was read, before any PSP call: an outcome can be reported."""


@dataclass(frozen=True)
class TokenMissing:
    reason: str
    # The shop uninstalled the app: it will never have a token again.
    gone: bool


@dataclass(frozen=True)
class StatusAnswered:
    result: StatusResult


@dataclass(frozen=True)
class PspAnswered:
    result: Result
    asked: AskPsp


@dataclass(frozen=True)
class Stored:
    """A decision whose step is `ReportNext` is stored."""


@dataclass(frozen=True)
class ShopifyAnswered:
    mutation: str
    said: ReportResult


Happened = (
    Began | TokenRead | TokenMissing | StatusAnswered | PspAnswered | Stored | ShopifyAnswered
)


# What the executor is asked to do next, when it is not to store a decision.
@dataclass(frozen=True)
class ReadToken:
    """Read the shop's token before any PSP call (`Services.gateway.reporting_token`)."""


@dataclass(frozen=True)
class AskStatus:
    """Ask the PSP what became of an earlier request that may have been applied."""


@dataclass(frozen=True)
class AskPsp:
    """Prepare the session's operation (the ledger reservation) and send it."""

    # What a status lookup just said, for the timeline; `cleared`: it found no earlier
    # request of the session applied.
    status: str | None = None
    cleared: bool = False


@dataclass(frozen=True)
class TellShopify:
    """Tell Shopify the stored outcome."""


Action = ReadToken | AskStatus | AskPsp | TellShopify


@dataclass(frozen=True)
class Decision:
    change: Change
    step: Step
    # The session as it is once `change` is stored.
    session: Session


@dataclass(frozen=True)
class Run:
    """What a run's decisions rest on besides the session, the same for the whole run."""

    policy: Policy
    # What the session does to its payment's book, if anything.
    ledger: LedgerOperation | None
    connector: str
    # The connector's account moves real money.
    live: bool


def decision(
    session: Session,
    now: float,
    happened: Event,
    *,
    step: Step,
    due_at: float | None,
    fields: dict[str, Any],
    ledger: LedgerVerdict | None = None,
    attempt: int | None = None,
    error: str | None = None,
    detail: str | None = None,
) -> Decision:
    state = check(session.state, happened)
    fields = {"inflight": None, **fields}
    # A step that goes on to tell Shopify leaves the mark that a report may be sent from
    # here (the run itself has sent none yet): a run that dies after Shopify took the
    # mutation, before its answer is stored, is then known by it (`earlier_attempts_of`).
    mark = State.SETTLED if isinstance(step, ReportNext) else fields["inflight"]
    change = Change.of(
        happened,
        at=now,
        due_at=due_at,
        attempt=attempt,
        error=error,
        detail=detail,
        fields={**fields, "inflight": mark},
        expect=frozenset({session.state}),
        ledger=ledger,
    )
    after = session.model_copy(update={"state": state, "updated_at": now, **fields})
    return Decision(change, step, after)


def interrupted(session: Session) -> str:
    return " (after an interrupted attempt)" if session.inflight is not None else ""


def dead_letter(
    session: Session,
    now: float,
    error: str,
    *,
    attempt: int | None = None,
    fields: dict[str, Any] | None = None,
    ledger: LedgerVerdict | None = None,
    detail: str | None = None,
) -> Decision:
    return decision(
        session,
        now,
        Event.FAILED,
        step=DeadLetter(error),
        due_at=None,
        fields={**(fields or {}), "last_error": error, "failed_at": now, "not_before": None},
        ledger=ledger,
        attempt=attempt,
        error=error,
        detail=detail,
    )
