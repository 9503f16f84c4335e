"""One operation at a time on a provider order, for providers whose reads cannot say whose
an operation is.

Aplazame's captures, Ledyer's captures and cancels and Purchase's captures and returns
carry no mark of the session that asked for them in what the provider shows back. A
read-back can then only attribute "the operation that appeared since this session's plan"
if nothing else can appear on that order in between. The lock is that guarantee, for every
payhook worker sharing the Redis:

    payhook:psp:<connector>:order-lock:<provider order id>  →  the owning session's id

The owner takes it before reading the order to plan, and keeps it through the send and the
read-back that establishes the outcome; while that outcome is unknown (an answer lost, a
read-back that failed, a worker that died mid-call) it stays held, and only the owner's own
retries re-enter it. Another session finding it held is told "order busy" and retries later
without calling the provider.

The TTL (`Settings.psp_order_lock_seconds`) is renewed on every re-entry and outlasts the
owner's whole PSP retry round, so it cannot lapse while the owner can still come back; it
only frees an order whose owner gave up (dead-lettered) with its outcome unknown. Operations
made outside payhook (the provider's merchant panel) are not serialized by it.
"""

from __future__ import annotations

from enum import Enum

from redis.asyncio import Redis

_KEY = "payhook:psp:{connector}:order-lock:{order}"

# 1: taken now; 2: already ours (re-entered, TTL renewed); 0: another owner's.
_ACQUIRE = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 2
end
if owner then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Held(Enum):
    TAKEN = "taken"  # free until now
    REENTERED = "reentered"  # this owner held it already


def order_lock_key(connector: str, order_id: str) -> str:
    return _KEY.format(connector=connector, order=order_id)


class OrderLock:
    def __init__(self, redis: Redis, connector: str, *, ttl_seconds: float) -> None:
        self._connector = connector
        self._ttl_ms = int(ttl_seconds * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, order_id: str, owner: str) -> Held | None:
        """Take or re-enter the order's lock for `owner`; None while another owner holds it."""
        got = await self._acquire(
            keys=[order_lock_key(self._connector, order_id)], args=[owner, self._ttl_ms]
        )
        return {1: Held.TAKEN, 2: Held.REENTERED}.get(int(got))

    async def release(self, order_id: str, owner: str) -> None:
        """Give the lock up if `owner` still holds it."""
        await self._release(keys=[order_lock_key(self._connector, order_id)], args=[owner])
