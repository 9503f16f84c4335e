"""Runs one session from wherever it stands to its next stop: the executor around `decide`.

It claims the session (one Lua call: a busy, early or finished session is left alone), then
asks one question, `decide.next_move(session, what just happened)`, and does what the answer
says, until the answer is a step the run does not go on from:

| answer | the executor |
|---|---|
| a `Decision` | writes its change under the claim's fence (the last gives the lease up) |
| `ReadToken` | reads the shop's token, before any PSP call |
| `AskStatus` | asks the PSP what became of an earlier request that may have been applied |
| `AskPsp` | prepares the operation (reserves on the ledger), and once the replicas |
|          | hold the claim and the reservation, sends it |
| `TellShopify` | once the replicas hold the outcome, sends the mutation that reports it |

It decides nothing itself. The lease is renewed throughout (`workers.lifecycle.lease`), every
write carries its fencing token, and the whole run is bounded by `Services.step_timeout`.
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
from workers.lifecycle import decide, moves
from workers.lifecycle.lease import holding
from workers.lifecycle.moves import Decision, ReportNext, Skipped, Step
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


# More moves than any run makes: a token read, a status lookup, the PSP call and two reports
# (Shopify's answer to the first can change the outcome, which is then told), each followed
# by its stored decision, and an opening.
_MOST_MOVES = 12


async def _work(claim: Claimed, services: Services, lifecycle: KindLifecycle) -> Step:
    """Ask `decide.next_move` after each thing that happens, and do what it says, until it
    says to stop: the whole executor."""
    session = claim.session
    run = moves.Run(
        policy=services.policy,
        ledger=lifecycle.ledger_operation(session),
        connector=services.connector.name,
        live=services.connector.live,
    )
    happened: moves.Happened = moves.Began()
    # The shop's token, once read before a PSP call: the report of that call uses it.
    token: str | None = None
    cause: str | None = None
    for _ in range(_MOST_MOVES):
        move = decide.next_move(session, happened, run, services.clock())
        if isinstance(move, Decision):
            session = await _store(services, claim, move, cause)
            if not isinstance(move.step, ReportNext):
                return move.step
            happened = moves.Stored()
        elif isinstance(move, moves.ReadToken):
            try:
                token = services.gateway.reporting_token(session.shop, claim.shop_token)
            except MissingCredentials as exc:
                gone = isinstance(exc, ShopGone)
                happened, cause = moves.TokenMissing(str(exc), gone), "no_token"
            else:
                # Stored as such only when the session is refused before any PSP call.
                happened, cause = moves.TokenRead(), "test_refused"
        elif isinstance(move, moves.AskStatus):
            happened, cause = await _status(session, services, lifecycle)
        elif isinstance(move, moves.AskPsp):
            result = await _ask(claim, session, services, lifecycle)
            happened, cause = moves.PspAnswered(result, move), _psp_cause(session, result)
        else:
            happened, cause = await _report(claim, services, lifecycle, session, token)
    raise AssertionError(f"session {session.id}: no end after {_MOST_MOVES} moves")


async def _report(
    claim: Claimed,
    services: Services,
    lifecycle: KindLifecycle,
    session: Session,
    token: str | None,
) -> tuple[moves.ShopifyAnswered, str]:
    """Tell Shopify the stored outcome: what it said, and its class for the metrics."""
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
    return moves.ShopifyAnswered(mutation.field, said), cause


async def _status(
    session: Session, services: Services, lifecycle: KindLifecycle
) -> tuple[moves.StatusAnswered, str]:
    """What the PSP knows of an earlier request of the session."""
    began = time.perf_counter()
    with services.tracer.span("psp status", _context(session)):
        known = await lifecycle.status(services, session)
    cause = "not_found" if isinstance(known, NotFound) else _psp_cause(session, known)
    services.observer.called("psp", session.kind, cause, time.perf_counter() - began)
    return moves.StatusAnswered(known), cause


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


def _report_cause(said: moves.ReportResult) -> str:
    if isinstance(said, moves.Unavailable):
        return said.cause
    return "accepted" if isinstance(said, moves.Accepted) else "refused"


async def _send(
    gateway: ShopifyGateway, shop: str, mutation: Mutation, token: str | None
) -> moves.ReportResult:
    try:
        taken = await gateway.send(shop, mutation, token=token)
    except ShopifyUnavailable as exc:
        return moves.Unavailable(str(exc), exc.retry_after, cause=exc.cause)
    except ShopifyUserError as exc:
        return moves.Refused(str(exc), invalid_state=exc.invalid_state, code=exc.code)
    except PermanentError as exc:
        return moves.Refused(str(exc))
    return moves.Accepted(taken.redirect_url)


async def _store(
    services: Services, claim: Claimed, decision: Decision, cause: str | None
) -> Session:
    """Write `decision` under the claim's fence; a step the run does not go on from gives
    up the lease in the same write."""
    session = decision.session
    step = decision.step
    goes_on = isinstance(step, ReportNext)
    await services.claims.apply(session.id, claim.fence, decision.change, release=not goes_on)
    services.observer.decided(decision, cause)
    extra = {**_context(session), "state": str(session.state), "step": type(step).__name__}
    if goes_on:
        # One line per session outcome: a step the run goes on from is in the timeline.
        log.debug(decision.change.event.event, extra=extra)
    elif isinstance(step, moves.DeadLetter):
        log.error("session failed", extra={**extra, "error": step.reason})
    elif isinstance(step, moves.RetryLater):
        log.warning("retry", extra={**extra, "error": step.reason, "delay": round(step.delay, 3)})
    else:
        log.info(decision.change.event.event, extra=extra)
    return session
