"""The send journal: what payhook asked of a PSP, per operation, written before it is sent.

Two problems share this record:

- A provider with an idempotency key wants the *same* request again under the same key.
  A connector that builds its request from the order's current state (Ledyer's remaining
  order lines, Purchase's items) would build a different one after its first attempt
  landed, so the first request is kept and every later attempt replays it.
- A read-back must say exactly which of the provider's operations is this session's, and
  never guess by amount. Where the operation carries the session's mark in the provider's
  reads (Ledyer's refund note), `find` matches the mark. Where nothing marks it (Aplazame,
  Ledyer captures and cancels, Purchase, whose reads do not show the key), operations on
  one provider order run one at a time under an `OrderLock` owned by the session, held from
  the plan through the send and its read-back. Under it, the one operation of the kind
  that appeared since the plan (`before`) for the journaled amount can only be ours
  (`ours`). Once the answer or the read-back names it, its id is journaled
  (`operation_id`) and the lock released; every later `find` matches that id exactly.

An entry's life, for a locked operation:

    (none) ──plan, lock held──▶ sent ──approved──▶ operation_id set, lock released
       ▲                         │ ──declined, or refused before it could apply──▶ (none)
       └─────────────────────────┘ ──answer lost, read-back failed──▶ sent, lock kept
                                                  (until a read-back or a resend settles it)

A provider without idempotency keys (Aplazame) may still apply a request after payhook gave
up waiting for its answer. For such a journal (`in_flight_seconds`), a request that a
read-back does not find is not sent again until that long after it was last sent: sooner,
its first sending could still land beside the second.

No entry means the request was never sent, or is known not to have been applied. Entries
live in Redis (shared by every worker process) for `ttl_seconds`, well beyond the PSP
retry deadline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from workers.connectors.base import (
    Approved,
    Declined,
    NotFound,
    Operation,
    OperationKind,
    Result,
    StatusResult,
    TryAgain,
)
from workers.connectors.order_lock import Held, OrderLock

_KEY = "payhook:psp:{connector}:{kind}:{key}"
DEFAULT_TTL_SECONDS = 90 * 86400

Outcome = TypeVar("Outcome", Result, StatusResult)


class Sent(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Provider specific: a path and body, or a GraphQL mutation and its variables.
    request: dict[str, Any]
    # The provider's ids of the operations of this kind that existed before sending.
    before: tuple[str, ...] = ()
    # Minor units asked for (None for a void).
    amount: int | None = None
    # The provider's id of the operation this request made, once established.
    operation_id: str | None = None
    # When it was last sent (epoch seconds).
    sent_at: float | None = None


Find = Callable[[Sent], Awaitable[StatusResult]]


class Journal:
    def __init__(
        self,
        redis: Redis,
        connector: str,
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        in_flight_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._connector = connector
        self._ttl = ttl_seconds
        self._in_flight = in_flight_seconds
        self._clock = clock

    def _key(self, kind: OperationKind, idempotency_key: str) -> str:
        return _KEY.format(connector=self._connector, kind=kind, key=idempotency_key)

    async def recall(self, kind: OperationKind, idempotency_key: str) -> Sent | None:
        raw = await self._redis.get(self._key(kind, idempotency_key))
        return None if raw is None else Sent.model_validate_json(raw)

    async def remember(self, kind: OperationKind, idempotency_key: str, sent: Sent) -> Sent:
        """Store `sent` unless an entry exists; returns the entry that is stored.

        Two workers racing on one session (a lease that expired mid-call) both end up
        sending the first one's request.
        """
        key = self._key(kind, idempotency_key)
        sent = sent.model_copy(update={"sent_at": self._clock()})
        if await self._redis.set(key, sent.model_dump_json(), nx=True, ex=self._ttl):
            return sent
        stored = await self.recall(kind, idempotency_key)
        return stored if stored is not None else sent

    async def resending(self, kind: OperationKind, idempotency_key: str, sent: Sent) -> Sent:
        """`sent` is about to go again: where requests may land late, from now on."""
        if not self._in_flight:
            return sent
        sent = sent.model_copy(update={"sent_at": self._clock()})
        await self._redis.set(
            self._key(kind, idempotency_key), sent.model_dump_json(), ex=self._ttl
        )
        return sent

    def in_flight(self, sent: Sent) -> float:
        """Seconds during which the provider may still apply `sent`'s last sending."""
        if not self._in_flight or sent.sent_at is None:
            return 0.0
        return max(0.0, sent.sent_at + self._in_flight - self._clock())

    async def settle(
        self, kind: OperationKind, idempotency_key: str, sent: Sent, operation_id: str
    ) -> None:
        """The provider's operation `operation_id` is this session's."""
        settled = sent.model_copy(update={"operation_id": operation_id})
        await self._redis.set(
            self._key(kind, idempotency_key), settled.model_dump_json(), ex=self._ttl
        )

    async def forget(self, kind: OperationKind, idempotency_key: str) -> None:
        """The request is known not to have been applied: the next attempt plans anew."""
        await self._redis.delete(self._key(kind, idempotency_key))


def ours(sent: Sent, operations: Sequence[tuple[str, int]]) -> StatusResult:
    """This session's operation among the order's `(id, minor units)` of its kind.

    By the journaled id once it is known. Before that, the one operation that appeared
    since the plan for the journaled amount (any amount for a void): only sound while the
    order lock has been held since the plan. Two such operations cannot be told apart, so
    that is never an answer.
    """
    if sent.operation_id is not None:
        if any(op_id == sent.operation_id for op_id, _ in operations):
            return Approved(psp_reference=sent.operation_id)
        return TryAgain(
            f"operation {sent.operation_id} is journaled as ours but the provider does not show it",
            ambiguous=True,
        )
    new = [
        op_id
        for op_id, amount in operations
        if op_id not in sent.before and sent.amount in (None, amount)
    ]
    if len(new) > 1:
        return TryAgain(f"{len(new)} new operations could be ours: {new}", ambiguous=True)
    return Approved(psp_reference=new[0]) if new else NotFound()


async def send_once(
    journal: Journal,
    kind: OperationKind,
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
    kind: OperationKind,
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
    kind: OperationKind,
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
    kind: OperationKind,
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
    kind: OperationKind,
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
    kind: OperationKind,
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
    kind: OperationKind,
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
