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

`workers.connectors.sending` runs a request through this record (`send_once`,
`status_of`). A provider without idempotency keys (Aplazame) may still apply a request
after payhook gave up waiting for its answer; for such a journal (`in_flight_seconds`),
`in_flight` says how long a request not found yet must not be sent again.

No entry means the request was never sent, or is known not to have been applied. Entries
live in Redis (shared by every worker process) for `ttl_seconds`, well beyond the PSP
retry deadline. An entry is written after the claim's `WAIT` (`sessions.claims.confirm`),
so with `PAYHOOK_REDIS_MIN_REPLICAS` a request is sent only once the replicas hold it too
(`replicated`): a failover to a replica without it would let the session's next delivery
plan anew and, at a provider without idempotency keys, move the money a second time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from redisio.replication import NONE, Replication
from sessions.keys import psp_journal_key
from sessions.models import Op
from workers.connectors.base import Approved, NotFound, StatusResult, TryAgain

DEFAULT_TTL_SECONDS = 90 * 86400

# A write that changes nothing but replicates, so that a WAIT after it on the same connection
# covers the entry and every write before it (the order lock), whichever connection made it.
_TOUCH = """
local entry = redis.call('GET', KEYS[1])
if entry then redis.call('SET', KEYS[1], entry, 'KEEPTTL') end
return 1
"""


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
        replication: Replication = NONE,
    ) -> None:
        self._redis = redis
        self._connector = connector
        self._ttl = ttl_seconds
        self._in_flight = in_flight_seconds
        self._clock = clock
        self._replication = replication
        self._touch = redis.register_script(_TOUCH)

    def _key(self, kind: Op, idempotency_key: str) -> str:
        return psp_journal_key(self._connector, kind, idempotency_key)

    async def recall(self, kind: Op, idempotency_key: str) -> Sent | None:
        raw = await self._redis.get(self._key(kind, idempotency_key))
        return None if raw is None else Sent.model_validate_json(raw)

    async def remember(self, kind: Op, idempotency_key: str, sent: Sent) -> Sent:
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

    async def resending(self, kind: Op, idempotency_key: str, sent: Sent) -> Sent:
        """`sent` is about to go again: where requests may land late, from now on."""
        if not self._in_flight:
            return sent
        sent = sent.model_copy(update={"sent_at": self._clock()})
        await self._redis.set(
            self._key(kind, idempotency_key), sent.model_dump_json(), ex=self._ttl
        )
        return sent

    async def replicated(self, kind: Op, idempotency_key: str) -> None:
        """Return once the required replicas hold the entry (at once when none is required);
        raises `NotReplicated` when they do not in time, and the request must not go."""
        if self._replication.replicas:
            await self._replication.run(
                self._redis, self._touch, [self._key(kind, idempotency_key)], []
            )

    def in_flight(self, sent: Sent) -> float:
        """Seconds during which the provider may still apply `sent`'s last sending."""
        if not self._in_flight or sent.sent_at is None:
            return 0.0
        return max(0.0, sent.sent_at + self._in_flight - self._clock())

    async def settle(self, kind: Op, idempotency_key: str, sent: Sent, operation_id: str) -> None:
        """The provider's operation `operation_id` is this session's."""
        settled = sent.model_copy(update={"operation_id": operation_id})
        await self._redis.set(
            self._key(kind, idempotency_key), settled.model_dump_json(), ex=self._ttl
        )

    async def forget(self, kind: Op, idempotency_key: str) -> None:
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
