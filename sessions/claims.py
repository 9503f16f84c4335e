"""Claims: how a worker takes a session, keeps it, and writes what it learned.

A claim is one Lua call: it refuses a session that is finished, not due yet (a retry's
backoff, a pending payment's open window) or leased by another worker, and otherwise takes a
lease whose value is a fresh fencing token (the session's `fence`, which only grows and is
never given twice, even by a replica promoted before it saw a claim), counts the
delivery, marks the session in flight and returns its fields. Deliveries that find the session
busy or early change nothing at all, so duplicates merge and never count towards the poison
limit.

While the holder works it renews the lease (`renew`); every write it makes carries the token
(`apply`), and one carrying a superseded token changes nothing. A lapsed lease that nobody
took over can still be renewed and written through: nothing else happened in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from errors import LeaseLost, StoreCorrupt
from redisio.replication import NONE, Replication
from sessions.change import Change
from sessions.due_index import INDEX_DUE
from sessions.handoff import Envelope
from sessions.keys import (
    CONFIRMING,
    DUE,
    PENDING,
    RETENTION_SECONDS,
    SHOPS,
    WORKABLE,
    WRONG_TYPE,
    lease_key,
    session_key,
    text,
)
from sessions.leases import (
    EARLY_TOLERANCE_SECONDS,
    TAKE_LEASE,
    LeaseScripts,
    Refusal,
    hash_fields,
)
from sessions.models import Session
from sessions.states import State
from sessions.store import decode
from sessions.writes import apply_change, register_apply

# KEYS: session, lease, due, shop tokens, the due summary's three indexes.
_CLAIM = (
    WRONG_TYPE
    + TAKE_LEASE
    + INDEX_DUE
    + """
local id, now, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'reported' or state == 'failed' then return {'finished', state} end
if state == 'pending' then
  local closes = tonumber(redis.call('HGET', KEYS[1], 'pending_expires_at') or '')
  if not closes or now < closes then return {'early', state} end
end
local refused = lease_refused(KEYS[1], KEYS[2], now, tonumber(ARGV[4]))
if refused then return {refused, state} end
local bad = wrong_type({KEYS[3], 'zset', KEYS[5], 'zset', KEYS[6], 'zset', KEYS[7], 'zset'})
if bad then return {'wrongtype', bad} end
-- A claim a failover lost (the primary died before its replica saw it) still has a live
-- holder: the promoted replica must not hand the same token to another worker.
take_lease(KEYS[1], KEYS[2], lease_ms)
-- A session that was not in the due set (only ever one written around the scripts) is
-- indexed as it enters; one that was keeps its place (no index is scored by the due time).
if redis.call('ZADD', KEYS[3], now + lease_ms / 1000, id) == 1 then
  index_due(KEYS[3], KEYS[5], KEYS[6], KEYS[7], KEYS[1], id)
end
local fields = redis.call('HGETALL', KEYS[1])
redis.call('HSET', KEYS[1], 'inflight', state)
-- The shop's registry value, so the run learns without another call whether its report
-- could be sent.
local stored = redis.call('HGET', KEYS[4], redis.call('HGET', KEYS[1], 'shop') or '')
return {'claimed', fields, stored}
"""
)


@dataclass(frozen=True)
class Claimed:
    """The session as it was when claimed, and the lease's fencing token."""

    session: Session
    # The shop's value in the token registry (`SHOPS`, sealed by `shops.tokens`) at the claim;
    # None when the shop has none of its own.
    shop_token: str | None = None

    @property
    def fence(self) -> int:
        return self.session.fence


@dataclass(frozen=True)
class NotClaimed:
    reason: Refusal
    state: State | None = None


class Claims:
    def __init__(
        self,
        redis: Redis,
        *,
        retention_seconds: int = RETENTION_SECONDS,
        replication: Replication = NONE,
    ) -> None:
        # How long a session this worker reports is kept (PAYHOOK_RETENTION_DAYS).
        self._retention = retention_seconds
        self._redis = redis
        self._replication = replication
        self._claim = redis.register_script(_CLAIM)
        self._leases = LeaseScripts(redis, record_key=session_key, lease_key=lease_key, due=DUE)
        self._apply = register_apply(redis)

    async def claim(
        self, session_id: str, *, now: float, lease_seconds: float
    ) -> Claimed | NotClaimed:
        reply = await self._claim(
            keys=[
                session_key(session_id),
                lease_key(session_id),
                DUE,
                SHOPS,
                WORKABLE,
                PENDING,
                CONFIRMING,
            ],
            args=[session_id, repr(now), int(lease_seconds * 1000), EARLY_TOLERANCE_SECONDS],
        )
        verdict = text(reply[0])
        if verdict == "wrongtype":
            raise StoreCorrupt(text(reply[1]))
        if verdict != "claimed":
            state = State(text(reply[1])) if len(reply) > 1 else None
            return NotClaimed(Refusal(verdict), state)
        fields = hash_fields(reply[1])
        stored = reply[2] if len(reply) > 2 else None
        return Claimed(decode(fields), None if stored is None else text(stored))

    async def renew(self, session_id: str, fence: int, *, lease_seconds: float, now: float) -> bool:
        """Extend the lease (and the in-flight due time); False when it was taken over."""
        return await self._leases.renew(session_id, fence, lease_seconds=lease_seconds, now=now)

    async def confirm(
        self, session_id: str, fence: int, *, lease_seconds: float, now: float
    ) -> None:
        """Return once the required replicas hold everything stored for the session so far.

        The session's outcome may have been stored by this run, an earlier one or a PSP
        callback, each on another connection; a lease renewal is a write on this one that
        replicates after all of them, so its `WAIT` covers them all. Raises `NotReplicated`
        when the replicas do not answer in time, and `LeaseLost` when the lease was taken.
        """
        if not self._replication.replicas:
            return
        keys, args = self._leases.renewal(session_id, fence, lease_seconds=lease_seconds, now=now)
        renewed = await self._replication.run(self._redis, self._leases.renew_script, keys, args)
        if not renewed:
            raise LeaseLost(session_id, fence, 0)

    async def apply(
        self,
        session_id: str,
        fence: int,
        change: Change,
        *,
        release: bool = False,
        envelope: Envelope | None = None,
    ) -> State:
        """A fenced `apply_change`; with `release`, the lease is given up in the same step."""
        return await apply_change(
            self._apply,
            session_id,
            change,
            fence=fence,
            release=release,
            envelope=envelope,
            retention_seconds=self._retention,
        )

    async def release(self, session_id: str, fence: int) -> None:
        await self._leases.release(session_id, fence)
