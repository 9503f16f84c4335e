"""Runs one session from wherever it stands to its next stop: the executor around `decide`.

1. Claim the session (one Lua call): a busy, early or finished session is left alone.
2. No outcome stored yet: ask the PSP (its status first when an earlier request may have
   been applied); otherwise reserve on the ledger and, once the replicas hold the claim and
   the reservation, send the operation; then store the outcome, settling the ledger in the
   same write.
3. Outcome stored: send the resolve/reject mutation, then store what Shopify said and give
   the lease up in the same write.

`decide` makes every choice; this module only performs the calls and writes it asks for.
The lease is renewed throughout (`workers.lifecycle.lease`), every write carries its fencing
token, and the whole run is bounded by `Services.step_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from errors import (
    LeaseLost,
    LeaseLostError,
    MissingCredentials,
    PermanentError,
    ShopGone,
    ShopifyUnavailable,
    ShopifyUserError,
    StaleState,
)
from sessions.claims import Claimed
from sessions.models import Kind, Session
from workers.connectors.base import (
    NotFound,
    Operation,
    Pending,
    Result,
    TryAgain,
)
from workers.lifecycle import decide
from workers.lifecycle.decide import Decision, ReportNext, Skipped, Step
from workers.lifecycle.lease import holding
from workers.lifecycle.ports import KindLifecycle, Services
from workers.shopify.gateway import ShopifyGateway
from workers.shopify.mutations import Mutation

log = logging.getLogger("payhook.lifecycle")


def _context(session: Session) -> dict[str, str]:
    return {"session_id": session.id, "shop": session.shop, "kind": str(session.kind)}


async def run(
    session_id: str,
    services: Services,
    lifecycle: KindLifecycle,
    *,
    trace_parent: Mapping[str, str] | None = None,
) -> Step:
    """`trace_parent`: the W3C trace headers of the task message, so the run's span joins
    the trace its intake request began."""
    kind = lifecycle.kind.value
    with services.tracer.span(
        f"run {kind}",
        {"session_id": session_id, "kind": kind},
        parent=trace_parent,
        role="consumer",
    ):
        return await _run(session_id, services, lifecycle)


async def _run(session_id: str, services: Services, lifecycle: KindLifecycle) -> Step:
    lease = services.policy.lease_seconds
    claim = await services.claims.claim(session_id, now=services.clock(), lease_seconds=lease)
    if not isinstance(claim, Claimed):
        services.tracer.annotate({"payhook.skipped": claim.reason.value})
        return Skipped(f"{claim.reason.value} ({claim.state or 'no session'})")
    services.tracer.annotate({"shop": claim.session.shop})
    observer = services.observer
    observer.run_started()
    try:
        async with asyncio.timeout(services.step_timeout):
            return await holding(
                services.claims,
                session_id,
                claim.fence,
                lease_seconds=lease,
                clock=services.clock,
                work=_work(claim, services, lifecycle),
                renewed=observer.lease,
            )
    except (StaleState, LeaseLost, LeaseLostError) as exc:
        # Someone else (a replay, an operator, a worker that took over) moved it first.
        if isinstance(exc, LeaseLost):
            # A renewal that found the lease gone has said so already (LeaseLostError).
            observer.lease("lost")
        log.warning("run abandoned", extra={"session_id": session_id, "error": str(exc)})
        return Skipped(str(exc))
    except TimeoutError:
        log.error("run timed out", extra={"session_id": session_id})
        return Skipped(f"run exceeded {services.step_timeout:g}s; the due set brings it back")
    finally:
        observer.run_ended()


async def _work(claim: Claimed, services: Services, lifecycle: KindLifecycle) -> Step:
    session = claim.session
    policy = services.policy
    opening = decide.opening(session, policy, services.clock())
    if opening is not None:
        session = await _store(services, claim, opening, last=False)
        if not isinstance(opening.step, ReportNext):
            return opening.step
    # A run that moves money reports with the token it checked before the PSP call: a
    # `payhook shops remove` landing while the PSP works stops the next session's call, not
    # the report of money that already moved.
    token: str | None = None
    if decide.settles(session):
        try:
            token = services.gateway.reporting_token(session.shop, claim.shop_token)
        except MissingCredentials as exc:
            gone = isinstance(exc, ShopGone)
            return await _unreportable(claim, services, lifecycle, session, str(exc), gone=gone)
        if decide.refuses_test(session, live=services.connector.live):
            # Before any PSP call, a status lookup included: nothing of a test session ever
            # reaches a live account.
            outcome = decide.test_refused(
                session,
                services.connector.name,
                policy,
                services.clock(),
                ledger=lifecycle.ledger_operation(session),
            )
            cause = "test_refused"
        else:
            outcome, cause = await _settle(claim, session, services, lifecycle)
        session = await _store(services, claim, outcome, last=False, cause=cause)
        if not isinstance(outcome.step, ReportNext):
            return outcome.step
    reported = await _report(claim, services, lifecycle, session, token)
    if isinstance(reported.step, ReportNext):
        # Shopify's answer changed the outcome (a pending window that closed meanwhile is a
        # decline): that one is told now. Its own answer can change nothing more.
        reported = await _report(claim, services, lifecycle, reported.session, token)
        assert not isinstance(reported.step, ReportNext), reported.step
    return reported.step


async def _report(
    claim: Claimed,
    services: Services,
    lifecycle: KindLifecycle,
    session: Session,
    token: str | None,
) -> Decision:
    """Tell Shopify the stored outcome and store its answer; the lease is given up with it
    unless that answer leaves something more to tell (`ReportNext`)."""
    policy = services.policy
    await lifecycle.before_report(services, session)
    # Shopify must never hear an outcome a failover could take back: the stored PSP result
    # and the bookkeeping above reach the required replicas first (NotReplicated otherwise,
    # and the due set brings the session back once its lease lapses).
    await services.claims.confirm(
        session.id, claim.fence, lease_seconds=policy.lease_seconds, now=services.clock()
    )
    mutation = lifecycle.report(services, session)
    began = time.perf_counter()
    with services.tracer.span(f"shopify {mutation.field}", _context(session)):
        said = await _send(services.gateway, session.shop, mutation, token)
    cause = _report_cause(said)
    services.observer.called("shopify", session.kind, cause, time.perf_counter() - began)
    reported = decide.after_report(session, mutation.field, said, policy, services.clock())
    last = not isinstance(reported.step, ReportNext)
    await _store(services, claim, reported, last=last, cause=cause)
    return reported


async def _unreportable(
    claim: Claimed,
    services: Services,
    lifecycle: KindLifecycle,
    session: Session,
    reason: str,
    *,
    gone: bool,
) -> Step:
    """Money must not move for a session Shopify cannot be told about: while its shop's
    token cannot be read, the session waits (and in the end fails) without the PSP; a shop
    that uninstalled the app (`gone`) will not have one again, so its session fails now."""
    ledger = lifecycle.ledger_operation(session)
    now = services.clock()
    waiting = (
        decide.shop_gone(session, reason, now, ledger=ledger)
        if gone
        else decide.unreportable(session, reason, services.policy, now, ledger=ledger)
    )
    await _store(services, claim, waiting, last=True, cause="no_token")
    return waiting.step


async def _settle(
    claim: Claimed, session: Session, services: Services, lifecycle: KindLifecycle
) -> tuple[Decision, str]:
    """The PSP's decision, and the class of what it answered last (`_psp_cause`)."""
    result: Result | None = None
    status = None
    cleared = False
    observer = services.observer
    if decide.psp_uncertain(session):
        began = time.perf_counter()
        with services.tracer.span("psp status", _context(session)):
            known = await lifecycle.status(services, session)
        cause = "not_found" if isinstance(known, NotFound) else _psp_cause(session, known)
        observer.called("psp", session.kind, cause, time.perf_counter() - began)
        status = type(known).__name__
        if isinstance(known, NotFound):
            cleared = True
        else:
            result = known
    if result is None:
        result = await _ask(claim, session, services, lifecycle)
    decision = decide.after_psp(
        session,
        result,
        services.policy,
        services.clock(),
        ledger=lifecycle.ledger_operation(session),
        status_detail=status,
        cleared=cleared,
    )
    return decision, _psp_cause(session, result)


async def _ask(
    claim: Claimed, session: Session, services: Services, lifecycle: KindLifecycle
) -> Result:
    """Prepare the session's operation and send it, or learn it needs none."""
    began = time.perf_counter()
    with services.tracer.span(f"psp {session.kind}", _context(session)):
        prepared = await lifecycle.prepare(services, session)
        if isinstance(prepared, Operation):
            # The PSP must never be asked on a claim or a reservation a failover could take
            # back: a promoted replica without the claim (no fence, no in-flight mark) would
            # let a second worker ask again, and one without the reservation would count the
            # money nowhere.
            await services.claims.confirm(
                session.id,
                claim.fence,
                lease_seconds=services.policy.lease_seconds,
                now=services.clock(),
            )
            result = await lifecycle.send(services, prepared)
        else:
            result = prepared
    services.observer.called(
        "psp", session.kind, _psp_cause(session, result), time.perf_counter() - began
    )
    return result


def _psp_cause(session: Session, result: Result) -> str:
    """What the PSP answered, as a small fixed set of values fit for a metric label."""
    if isinstance(result, TryAgain):
        if session.kind is Kind.PAYMENT:
            # A payment session's only wait: the buyer has not finished on the PSP's page.
            return "buyer"
        return "ambiguous" if result.ambiguous else "unavailable"
    if isinstance(result, Pending):
        return "pending"
    return type(result).__name__.lower()


def _report_cause(said: decide.ReportResult) -> str:
    if isinstance(said, decide.Unavailable):
        return said.cause
    return "accepted" if isinstance(said, decide.Accepted) else "refused"


async def _send(
    gateway: ShopifyGateway, shop: str, mutation: Mutation, token: str | None
) -> decide.ReportResult:
    try:
        taken = await gateway.send(shop, mutation, token=token)
    except ShopifyUnavailable as exc:
        return decide.Unavailable(str(exc), exc.retry_after, cause=exc.cause)
    except ShopifyUserError as exc:
        return decide.Refused(str(exc), invalid_state=exc.invalid_state, code=exc.code)
    except PermanentError as exc:
        return decide.Refused(str(exc))
    return decide.Accepted(taken.redirect_url)


async def _store(
    services: Services,
    claim: Claimed,
    decision: Decision,
    *,
    last: bool,
    cause: str | None = None,
) -> Session:
    """Write `decision` under the claim's fence; the last write of a run gives up the lease."""
    session = decision.session
    step = decision.step
    await services.claims.apply(
        session.id,
        claim.fence,
        decision.change,
        release=last or not isinstance(step, ReportNext),
    )
    services.observer.decided(decision, cause)
    extra = {**_context(session), "state": str(session.state), "step": type(step).__name__}
    if isinstance(step, ReportNext) and not last:
        # One line per session outcome: a step the run goes on from is in the timeline.
        log.debug(decision.change.event.event, extra=extra)
    elif isinstance(step, decide.DeadLetter):
        log.error("session failed", extra={**extra, "error": step.reason})
    elif isinstance(step, decide.RetryLater):
        log.warning("retry", extra={**extra, "error": step.reason, "delay": round(step.delay, 3)})
    else:
        log.info(decision.change.event.event, extra=extra)
    return session
