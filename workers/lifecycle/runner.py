"""Runs one session from wherever it stands to its next stop: the executor around `decide`.

1. Claim the session (one Lua call): a busy, early or finished session is left alone.
2. No outcome stored yet: ask the PSP (its status first when an earlier request may have
   been applied), then store the outcome, settling the ledger in the same write.
3. Outcome stored: send the resolve/reject mutation, then store what Shopify said and give
   the lease up in the same write.

`decide` makes every choice; this module only performs the calls and writes it asks for.
The lease is renewed throughout (`workers.lifecycle.lease`), every write carries its fencing
token, and the whole run is bounded by `Services.step_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sessions.claims import Claimed, Claims
from sessions.ledger_store import LedgerStore
from sessions.models import Kind, Session
from sessions.writes import LeaseLost, StaleState
from workers.connectors.base import Connector, NotFound, Result, StatusResult
from workers.errors import PermanentError, ShopifyUnavailable, ShopifyUserError
from workers.lifecycle import decide
from workers.lifecycle.decide import Decision, Policy, ReportNext, Skipped, Step
from workers.lifecycle.lease import LeaseLostError, holding
from workers.shopify.gateway import ShopifyGateway
from workers.shopify.mutations import Mutation

log = logging.getLogger("payhook.lifecycle")


class KindLifecycle(Protocol):
    """What differs between session kinds: the PSP call and the mutation that reports it."""

    kind: Kind

    def ledger_payment(self, session: Session) -> str | None:
        """The payment whose ledger reservation the PSP outcome settles, if any."""
        ...

    async def settle(self, services: Services, session: Session) -> Result: ...

    async def status(self, services: Services, session: Session) -> StatusResult: ...

    async def before_report(self, services: Services, session: Session) -> None:
        """Bookkeeping that must be in place before Shopify hears the outcome."""
        ...

    def report(self, session: Session) -> Mutation: ...


@dataclass(frozen=True)
class Services:
    claims: Claims
    connector: Connector
    gateway: ShopifyGateway
    ledger: LedgerStore
    policy: Policy
    clock: Callable[[], float]
    # The longest one run may take (every PSP call of a step plus the Shopify call); past it
    # the run is abandoned and the session comes back through the due set.
    step_timeout: float = 120.0
    # Payment sessions: how long the buyer has on the PSP's page before the session is
    # declined.
    buyer_window_seconds: float = 3600.0


def _context(session: Session) -> dict[str, object]:
    return {"session_id": session.id, "shop": session.shop, "kind": str(session.kind)}


async def run(session_id: str, services: Services, lifecycle: KindLifecycle) -> Step:
    lease = services.policy.lease_seconds
    claim = await services.claims.claim(session_id, now=services.clock(), lease_seconds=lease)
    if not isinstance(claim, Claimed):
        return Skipped(f"{claim.reason.value} ({claim.state or 'no session'})")
    try:
        async with asyncio.timeout(services.step_timeout):
            return await holding(
                services.claims,
                session_id,
                claim.fence,
                lease_seconds=lease,
                clock=services.clock,
                work=_work(claim, services, lifecycle),
            )
    except (StaleState, LeaseLost, LeaseLostError) as exc:
        # Someone else (a replay, an operator, a worker that took over) moved it first.
        log.warning("run abandoned", extra={"session_id": session_id, "error": str(exc)})
        return Skipped(str(exc))
    except TimeoutError:
        log.error("run timed out", extra={"session_id": session_id})
        return Skipped(f"run exceeded {services.step_timeout:g}s; the due set brings it back")


async def _work(claim: Claimed, services: Services, lifecycle: KindLifecycle) -> Step:
    session = claim.session
    policy = services.policy
    opening = decide.opening(session, policy, services.clock())
    if opening is not None:
        session = await _store(services, claim, opening, last=False)
        if not isinstance(opening.step, ReportNext):
            return opening.step
    if decide.settles(session):
        outcome = await _settle(session, services, lifecycle)
        session = await _store(services, claim, outcome, last=False)
        if not isinstance(outcome.step, ReportNext):
            return outcome.step
    await lifecycle.before_report(services, session)
    mutation = lifecycle.report(session)
    said = await _send(services.gateway, session.shop, mutation)
    reported = decide.after_report(session, mutation.field, said, policy, services.clock())
    await _store(services, claim, reported, last=True)
    return reported.step


async def _settle(session: Session, services: Services, lifecycle: KindLifecycle) -> Decision:
    result: Result | None = None
    status = None
    cleared = False
    if decide.psp_uncertain(session):
        known = await lifecycle.status(services, session)
        status = type(known).__name__
        if isinstance(known, NotFound):
            cleared = True
        else:
            result = known
    if result is None:
        result = await lifecycle.settle(services, session)
    return decide.after_psp(
        session,
        result,
        services.policy,
        services.clock(),
        ledger_payment=lifecycle.ledger_payment(session),
        status_detail=status,
        cleared=cleared,
    )


async def _send(gateway: ShopifyGateway, shop: str, mutation: Mutation) -> decide.ReportResult:
    try:
        await gateway.send(shop, mutation)
    except ShopifyUnavailable as exc:
        return decide.Unavailable(str(exc), exc.retry_after)
    except ShopifyUserError as exc:
        return decide.Refused(str(exc), invalid_state=exc.invalid_state)
    except PermanentError as exc:
        return decide.Refused(str(exc))
    return decide.Accepted()


async def _store(services: Services, claim: Claimed, decision: Decision, *, last: bool) -> Session:
    """Write `decision` under the claim's fence; the last write of a run gives up the lease."""
    session = decision.session
    step = decision.step
    await services.claims.apply(
        session.id,
        claim.fence,
        decision.change,
        release=last or not isinstance(step, ReportNext),
    )
    extra = {**_context(session), "state": str(session.state), "step": type(step).__name__}
    if isinstance(step, decide.DeadLetter):
        log.error("session failed", extra={**extra, "error": step.reason})
    elif isinstance(step, decide.RetryLater):
        log.warning("retry", extra={**extra, "error": step.reason, "delay": round(step.delay, 3)})
    else:
        log.info(decision.change.event.event, extra=extra)
    return session
