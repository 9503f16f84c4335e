"""The send journal: what payhook asked of a PSP, per operation, written before it is sent.

Two problems share this record:

- A provider with an idempotency key wants the *same* request again under the same key.
  A connector that builds its request from the order's current state (Ledyer's remaining
  order lines, Purchase's items) would build a different one after its first attempt
  landed, so the first request is kept and every later attempt replays it.
- A provider without an idempotency key (Aplazame) or whose reads do not show the key
  cannot say "this capture is yours". The journal keeps the provider's operation ids that
  existed before sending (`before`): an operation that appeared since, for the same amount,
  is ours. No entry means the request was never sent.

Entries live in Redis (shared by every worker process) for `ttl_seconds`, well beyond the
PSP retry deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from workers.connectors.base import NotFound, Operation, OperationKind, Result, StatusResult

_KEY = "payhook:psp:{connector}:{kind}:{key}"
DEFAULT_TTL_SECONDS = 90 * 86400


class Sent(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Provider specific: a path and body, or a GraphQL mutation and its variables.
    request: dict[str, Any]
    # The provider's ids of the operations of this kind that existed before sending.
    before: tuple[str, ...] = ()
    # Minor units asked for (None for a void).
    amount: int | None = None


class Journal:
    def __init__(
        self, redis: Redis, connector: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ) -> None:
        self._redis = redis
        self._connector = connector
        self._ttl = ttl_seconds

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
        if await self._redis.set(key, sent.model_dump_json(), nx=True, ex=self._ttl):
            return sent
        stored = await self.recall(kind, idempotency_key)
        return stored if stored is not None else sent


async def send_once(
    journal: Journal,
    kind: OperationKind,
    operation: Operation,
    *,
    plan: Callable[[], Awaitable[Sent | Result]],
    find: Callable[[Sent], Awaitable[StatusResult]],
    send: Callable[[Sent], Awaitable[Result]],
) -> Result:
    """Send `kind` for `operation` at most once per idempotency key.

    First time: `plan` reads the provider and builds the request (or answers without one:
    a refusal, a provider that cannot be reached); it is journaled, then sent. Any later
    time (a retry, a redelivered task, a second worker): `find` looks for the operation at
    the provider first, and only if it is not there is the journaled request sent again.
    """
    sent = await journal.recall(kind, operation.idempotency_key)
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
    find: Callable[[Sent], Awaitable[StatusResult]],
) -> StatusResult:
    """`find` for a journaled operation; `NotFound` if it was never sent."""
    sent = await journal.recall(kind, operation.idempotency_key)
    return NotFound() if sent is None else await find(sent)
