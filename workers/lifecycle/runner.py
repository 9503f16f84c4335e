"""Runs one session from wherever it stands to its next stop.

Each step stores its result before the next side effect:

1. `received`/`settling` → ask the PSP (idempotency key = session id), store the outcome as
   `settled`. A transient PSP failure stays in `settling` and is retried on the PSP ladder.
2. `settled` → send the resolve/reject mutation, then mark `reported`. A transient Shopify
   failure stays in `settled` and is retried on the Shopify ladder; the PSP is not asked again.

A lease (owner + expiry) keeps two workers off the same session at the same time; a crashed
worker's lease simply expires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Outcome, Report, Session, TimelineEvent
from sessions.states import State
from sessions.store import SessionStore, StaleState
from workers.connectors.base import (
    Approved,
    Connector,
    Declined,
    NotFound,
    Pending,
    Result,
    StatusResult,
    TryAgain,
)
from workers.errors import PermanentError, ShopifyUnavailable, ShopifyUserError
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import ShopifyGateway
from workers.shopify.mutations import Mutation

log = logging.getLogger("payhook.lifecycle")


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


Step = Done | RetryLater | DeadLetter


class KindLifecycle(Protocol):
    """What differs between session kinds: the PSP call and the mutation that reports it."""

    kind: Kind

    async def settle(self, services: Services, session: Session) -> Result: ...

    async def status(self, services: Services, session: Session) -> StatusResult: ...

    async def before_report(self, services: Services, session: Session) -> None:
        """Bookkeeping that must be in place before Shopify hears the outcome."""
        ...

    def report(self, session: Session) -> Mutation: ...


@dataclass(frozen=True)
class Services:
    store: SessionStore
    connector: Connector
    gateway: ShopifyGateway
    psp_policy: RetryPolicy
    shopify_policy: RetryPolicy
    lease_seconds: float
    owner: str
    clock: Callable[[], float]
    ledger: LedgerStore
    max_deliveries: int = 200
    # Payment sessions: how long the buyer has on the PSP's page before the session is
    # declined, and how long a pending payment may stay pending.
    buyer_window_seconds: float = 3600.0
    pending_seconds: float = 3 * 86400.0


def invalid_state_means_done(earlier_attempts: int) -> bool:
    """`*_INVALID_STATE` after we already sent this same mutation means it landed before.

    The outcome never changes once settled, so every report attempt of a session sends the
    same mutation; a refusal on the very first attempt is someone else's decision.
    """
    return earlier_attempts > 0


async def run(session_id: str, services: Services, lifecycle: KindLifecycle) -> Step:
    store = services.store
    session = await store.get(session_id)
    if session is None:
        log.error("session not found", extra={"session_id": session_id})
        return Done(None)
    if session.state in (State.REPORTED, State.FAILED, State.PENDING):
        return Done(session.state)
    deliveries = await store.count_delivery(session_id)
    if deliveries > services.max_deliveries:
        # Counted before any work: a session whose task kills its worker every time would
        # otherwise be redelivered forever and starve everything behind it.
        return await _dead_letter(
            session,
            services,
            session.state,
            session.phase_attempts,
            f"poison: {deliveries} deliveries without finishing",
        )
    if not await store.acquire_lease(session_id, services.owner, services.lease_seconds):
        return RetryLater(services.lease_seconds / 4, "another worker holds the lease")
    try:
        if session.state in (State.RECEIVED, State.SETTLING):
            settled = await _settle(session, services, lifecycle)
            if not isinstance(settled, Session):
                return settled
            session = settled
        return await _report(session, services, lifecycle)
    except StaleState as exc:
        # Someone else (a replay, an operator) moved the session; the next delivery sees it.
        return RetryLater(1.0, str(exc))
    finally:
        await store.release_lease(session_id, services.owner)


def _event(services: Services, name: str, state: State, **extra: object) -> TimelineEvent:
    return TimelineEvent.model_validate(
        {"at": services.clock(), "event": name, "state": state, **extra}
    )


def _in_flight(services: Services, delay: float = 0.0) -> float:
    """When the sweeper should look again if this worker and its task message both vanish."""
    return services.clock() + delay + services.lease_seconds


def _context(session: Session) -> dict[str, object]:
    return {"session_id": session.id, "shop": session.shop, "kind": str(session.kind)}


def _phase(session: Session, services: Services, starting: bool) -> tuple[int, float]:
    """(attempt number within the phase, when the phase began) for the attempt about to run."""
    if starting or session.phase_since is None:
        return 1, services.clock()
    return session.phase_attempts + 1, session.phase_since


async def _settle(session: Session, services: Services, lifecycle: KindLifecycle) -> Session | Step:
    store = services.store
    attempt = session.psp_attempts + 1
    phase_attempt, phase_since = _phase(session, services, session.state is State.RECEIVED)
    await store.update(
        session.id,
        expect=(State.RECEIVED, State.SETTLING),
        event=_event(services, "psp_attempt", State.SETTLING, attempt=attempt),
        due_at=_in_flight(services),
        fields={
            "psp_attempts": attempt,
            "phase_attempts": phase_attempt,
            "phase_since": phase_since,
        },
    )
    result: Result | None = None
    if session.psp_uncertain:
        # The last request may have been applied: ask before sending it again.
        known = await lifecycle.status(services, session)
        await store.update(
            session.id,
            expect=(State.SETTLING,),
            event=_event(
                services, "psp_status", State.SETTLING, attempt=attempt, detail=type(known).__name__
            ),
            due_at=_in_flight(services),
        )
        if not isinstance(known, NotFound):
            result = known
    if result is None:
        result = await lifecycle.settle(services, session)
    if isinstance(result, Pending):
        # Accepted but not final: poll the status on the PSP ladder, as for a lost answer.
        result = TryAgain(
            f"pending at the PSP ({result.psp_reference})",
            retry_after=result.retry_after,
            ambiguous=True,
        )
    if isinstance(result, TryAgain):
        return await _psp_retry(session, services, attempt, phase_attempt, phase_since, result)
    if isinstance(result, Approved):
        fields: dict[str, object | None] = {
            "outcome": Outcome.APPROVED,
            "psp_reference": result.psp_reference,
        }
        detail = f"approved {result.psp_reference}"
    else:
        assert isinstance(result, Declined)
        fields = {
            "outcome": Outcome.DECLINED,
            "reject_code": result.code.value,
            "merchant_message": result.message,
        }
        detail = f"declined {result.code.value}: {result.message}"
    # The reporting phase starts now, with its own attempt count and deadline.
    fields.update(
        last_error=None, psp_uncertain=None, phase_attempts=0, phase_since=services.clock()
    )
    await store.update(
        session.id,
        expect=(State.SETTLING,),
        event=_event(services, "psp_settled", State.SETTLED, attempt=attempt, detail=detail),
        due_at=_in_flight(services),
        fields=fields,
    )
    log.info("settled with the PSP", extra={**_context(session), "detail": detail})
    settled = await store.get(session.id)
    assert settled is not None
    return settled


async def _psp_retry(
    session: Session,
    services: Services,
    attempt: int,
    phase_attempt: int,
    phase_since: float,
    result: TryAgain,
) -> Step:
    error = f"{'ambiguous: ' if result.ambiguous else ''}{result.reason}"
    elapsed = services.clock() - phase_since
    uncertain = True if (result.ambiguous or session.psp_uncertain) else None
    if services.psp_policy.exhausted(phase_attempt, elapsed):
        return await _dead_letter(
            session, services, State.SETTLING, attempt, error, fields={"psp_uncertain": uncertain}
        )
    delay = services.psp_policy.delay(phase_attempt, retry_after=result.retry_after)
    await services.store.update(
        session.id,
        expect=(State.SETTLING,),
        event=_event(
            services,
            "psp_retry",
            State.SETTLING,
            attempt=attempt,
            error=error,
            detail=f"next attempt in {delay:.2f}s",
        ),
        due_at=_in_flight(services, delay),
        fields={"last_error": error, "psp_uncertain": uncertain},
    )
    log.warning("PSP retry", extra={**_context(session), "attempt": attempt, "error": error})
    return RetryLater(delay, error)


async def _report(session: Session, services: Services, lifecycle: KindLifecycle) -> Step:
    store = services.store
    await lifecycle.before_report(services, session)
    mutation = lifecycle.report(session)
    earlier = session.report_attempts
    attempt = earlier + 1
    phase_attempt, phase_since = _phase(session, services, starting=False)
    await store.update(
        session.id,
        expect=(State.SETTLED,),
        event=_event(
            services, "report_attempt", State.SETTLED, attempt=attempt, detail=mutation.field
        ),
        due_at=_in_flight(services),
        fields={
            "report_attempts": attempt,
            "phase_attempts": phase_attempt,
            "phase_since": phase_since,
        },
    )
    try:
        await services.gateway.send(session.shop, mutation)
    except ShopifyUnavailable as exc:
        elapsed = services.clock() - phase_since
        if services.shopify_policy.exhausted(phase_attempt, elapsed):
            return await _dead_letter(session, services, State.SETTLED, attempt, str(exc))
        delay = services.shopify_policy.delay(phase_attempt, retry_after=exc.retry_after)
        await store.update(
            session.id,
            expect=(State.SETTLED,),
            event=_event(
                services,
                "report_retry",
                State.SETTLED,
                attempt=attempt,
                error=str(exc),
                detail=f"next attempt in {delay:.2f}s",
            ),
            due_at=_in_flight(services, delay),
            fields={"last_error": str(exc)},
        )
        log.warning(
            "Shopify retry", extra={**_context(session), "attempt": attempt, "error": str(exc)}
        )
        return RetryLater(delay, str(exc))
    except ShopifyUserError as exc:
        if not (exc.invalid_state and invalid_state_means_done(earlier)):
            return await _dead_letter(session, services, State.SETTLED, attempt, str(exc))
        log.info("already reported", extra={**_context(session), "error": str(exc)})
    except PermanentError as exc:
        return await _dead_letter(session, services, State.SETTLED, attempt, str(exc))
    report = _REPORTS[mutation.field.removeprefix(f"{session.kind}Session")]
    # Shopify knowing a payment is pending is not the end: the session waits, out of the due
    # set, for the PSP's final word.
    final = State.PENDING if report is Report.PENDING else State.REPORTED
    await store.update(
        session.id,
        expect=(State.SETTLED,),
        event=_event(services, "reported", final, attempt=attempt, detail=mutation.field),
        due_at=None,
        fields={"report": report, "last_error": None},
    )
    log.info("reported to Shopify", extra={**_context(session), "report": str(report)})
    return Done(final)


_REPORTS = {"Resolve": Report.RESOLVED, "Reject": Report.REJECTED, "Pending": Report.PENDING}


async def _dead_letter(
    session: Session,
    services: Services,
    expect: State,
    attempt: int,
    error: str,
    fields: dict[str, object | None] | None = None,
) -> Step:
    await services.store.update(
        session.id,
        expect=(expect,),
        event=_event(services, "failed", State.FAILED, attempt=attempt, error=error),
        due_at=None,
        fields={**(fields or {}), "last_error": error, "failed_at": services.clock()},
    )
    log.error("session failed", extra={**_context(session), "attempt": attempt, "error": error})
    return DeadLetter(error)
