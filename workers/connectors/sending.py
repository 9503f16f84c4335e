"""Sending a money request to a PSP at most once per session, and finding it again.

`send_once` plans a request from the provider's current state, journals it
(`workers.connectors.journal`), sends it, and on every later attempt looks for it at the
provider before sending the journaled request again; `status_of` is that look alone.

With an `OrderLock` (providers whose reads cannot say whose an operation is), all of it
runs one at a time on the provider order, and an entry lives like this:

    (none) ──plan, lock held──▶ sent ──approved──▶ operation_id set, lock released
       ▲                         │ ──declined, or refused before it could apply──▶ (none)
       └─────────────────────────┘ ──answer lost, read-back failed──▶ sent, lock kept
                                                  (until a read-back or a resend settles it)

A session that finds the order locked by another gets "order busy" (retry later, nothing
sent); one whose own lock lapsed meanwhile trusts a read-back only to prove that nothing
of its amount appeared. Every sending waits until the required replicas hold the entry
and the lock (`Journal.replicated`); when they do not in time, nothing is sent and
`NotReplicated` ends the run, as a claim the replicas do not hold does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sessions.models import Op
from workers.connectors.base import (
    Approved,
    Declined,
    NotFound,
    Operation,
    Result,
    StatusResult,
    TryAgain,
)
from workers.connectors.journal import Find, Journal, Sent
from workers.connectors.order_lock import Held, OrderLock

Outcome = TypeVar("Outcome", Result, StatusResult)


async def send_once(
    journal: Journal,
    kind: Op,
    operation: Operation,
    *,
    plan: Callable[[], Awaitable[Sent | Result]],
    find: Find,
    send: Callable[[Sent], Awaitable[Result]],
    lock: OrderLock | None = None,
) -> Result:
    """Send `kind` for `operation` at most once per idempotency key.

    First time: `plan` reads the provider and builds the request (or answers without one:
    a refusal, a provider that cannot be reached); it is journaled, then sent. Any later
    time (a retry, a redelivered task, a second worker): `find` looks for the operation at
    the provider first, and only if it is not there is the journaled request sent again.
    With a `lock`, all of it runs under the order's lock (see the module docstring).
    """
    send = _once_replicated(journal, kind, operation, send)
    sent = await journal.recall(kind, operation.idempotency_key)
    if sent is not None and sent.operation_id is not None:
        # Settled: matched by its id, and never sent again.
        known = await find(sent)
        return _unseen(sent, operation) if isinstance(known, NotFound) else known
    if lock is not None:
        return await _one_at_a_time(
            journal, lock, kind, operation, sent, plan=plan, find=find, send=send
        )
    if sent is not None:
        known = await find(sent)
        if not isinstance(known, NotFound):
            return known
    else:
        planned = await plan()
        if not isinstance(planned, Sent):
            return planned
        sent = await journal.remember(kind, operation.idempotency_key, planned)
    return await send(sent)


async def status_of(
    journal: Journal,
    kind: Op,
    operation: Operation,
    find: Find,
    lock: OrderLock | None = None,
) -> StatusResult:
    """`find` for a journaled operation; `NotFound` if it was never sent (or not applied)."""
    sent = await journal.recall(kind, operation.idempotency_key)
    if sent is None:
        return NotFound()
    if lock is None or sent.operation_id is not None:
        return await find(sent)
    held = await lock.acquire(operation.provider_id, operation.idempotency_key)
    if held is None:
        return _busy(operation)
    known = await _read_back(journal, lock, kind, operation, sent, held, find)
    if isinstance(known, NotFound) and held is Held.TAKEN:
        # Forgotten: nothing of ours is outstanding on the order, so it is not ours to hold.
        await lock.release(operation.provider_id, operation.idempotency_key)
    return known


async def _one_at_a_time(
    journal: Journal,
    lock: OrderLock,
    kind: Op,
    operation: Operation,
    sent: Sent | None,
    *,
    plan: Callable[[], Awaitable[Sent | Result]],
    find: Find,
    send: Callable[[Sent], Awaitable[Result]],
) -> Result:
    order, owner = operation.provider_id, operation.idempotency_key
    held = await lock.acquire(order, owner)
    if held is None:
        return _busy(operation)
    if sent is not None:
        known = await _read_back(journal, lock, kind, operation, sent, held, find)
        if not isinstance(known, NotFound):
            return known
        if held is Held.REENTERED:
            # Not applied so far: the journaled request goes again, under the same lock.
            return await _resend(journal, lock, kind, operation, sent, find, send)
    planned = await plan()
    if not isinstance(planned, Sent):
        await lock.release(order, owner)
        return planned
    sent = await journal.remember(kind, owner, planned)
    return await _conclude(journal, lock, kind, operation, sent, await send(sent))


async def _resend(
    journal: Journal,
    lock: OrderLock,
    kind: Op,
    operation: Operation,
    sent: Sent,
    find: Find,
    send: Callable[[Sent], Awaitable[Result]],
) -> Result:
    """Send a request again whose first sending's outcome was never established.

    Only an approval or a refusal ends that uncertainty; a keyless provider's refusal may
    be the earlier request landing in between (Aplazame: "more than remains"), so one more
    read-back decides it. Any other failure keeps the entry and the lock.
    """
    answer = await send(await journal.resending(kind, operation.idempotency_key, sent))
    if isinstance(answer, Declined):
        known = await find(sent)
        if isinstance(known, TryAgain):
            return known  # cannot tell yet: keep
        if not isinstance(known, NotFound):
            return await _conclude(journal, lock, kind, operation, sent, known)
    if isinstance(answer, Approved | Declined):
        return await _conclude(journal, lock, kind, operation, sent, answer)
    return answer


async def _read_back(
    journal: Journal,
    lock: OrderLock,
    kind: Op,
    operation: Operation,
    sent: Sent,
    held: Held,
    find: Find,
) -> StatusResult:
    """`find` for a request sent under the order lock, whose outcome is not known yet."""
    known = await find(sent)
    if held is Held.TAKEN:
        return await _after_lapse(journal, lock, kind, operation, known)
    if isinstance(known, TryAgain):
        return known  # still unknown: the lock stays
    if not isinstance(known, NotFound):
        return await _conclude(journal, lock, kind, operation, sent, known)
    wait = journal.in_flight(sent)
    if wait > 0:
        return TryAgain(
            f"our request may still be applied for {wait:.1f}s: not sent again before",
            retry_after=wait,
            ambiguous=True,
        )
    return known


async def _after_lapse(
    journal: Journal,
    lock: OrderLock,
    kind: Op,
    operation: Operation,
    known: StatusResult,
) -> StatusResult:
    """The lock lapsed after our request went out (its owner gave up, then came back), so
    others may have operated on the order since: the read-back proves nothing but absence."""
    if isinstance(known, NotFound):
        # Nothing at all appeared for our amount: ours never landed. Plan anew, locked.
        await journal.forget(kind, operation.idempotency_key)
        return known
    # Holding the lock now would make the next read-back look trustworthy: it is not.
    await lock.release(operation.provider_id, operation.idempotency_key)
    if isinstance(known, TryAgain):
        return known
    reference = known.psp_reference if isinstance(known, Approved) else type(known).__name__
    return TryAgain(
        f"cannot tell whether {reference} on order {operation.provider_id} is ours: the "
        "order lock lapsed after our request was sent; check the provider",
        ambiguous=True,
    )


async def _conclude(
    journal: Journal,
    lock: OrderLock,
    kind: Op,
    operation: Operation,
    sent: Sent,
    outcome: Outcome,
) -> Outcome:
    """Journal what the provider's answer (or read-back) established, and free the order;
    an outcome that may hide an applied request keeps both."""
    owner = operation.idempotency_key
    if isinstance(outcome, Approved):
        await journal.settle(kind, owner, sent, outcome.psp_reference)
    elif isinstance(outcome, Declined) or (isinstance(outcome, TryAgain) and not outcome.ambiguous):
        await journal.forget(kind, owner)
    else:
        return outcome
    await lock.release(operation.provider_id, owner)
    return outcome


def _once_replicated(
    journal: Journal,
    kind: Op,
    operation: Operation,
    send: Callable[[Sent], Awaitable[Result]],
) -> Callable[[Sent], Awaitable[Result]]:
    """`send`, once the required replicas hold the entry it is sent on."""

    async def sending(sent: Sent) -> Result:
        await journal.replicated(kind, operation.idempotency_key)
        return await send(sent)

    return sending


def _unseen(sent: Sent, operation: Operation) -> TryAgain:
    return TryAgain(
        f"{operation.provider_id} at the provider no longer shows our operation "
        f"{sent.operation_id}",
        ambiguous=True,
    )


def _busy(operation: Operation) -> TryAgain:
    return TryAgain(
        f"order busy: another session's operation on {operation.provider_id} is not settled "
        "yet (nothing sent)"
    )
