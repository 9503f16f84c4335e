"""Leases with fencing tokens, for every record a worker claims: a session (`sessions.claims`)
and a Shopify webhook (`shops.webhook_store`).

A record is a hash with a `fence` field (`NEXT_FENCE`) and a `deliveries` count; its lease is
a string key holding the token of the claim that has it, for the lease's time; its due set
scores it by when it must next be looked at. A claim script refuses a record that is early
or busy and otherwise takes the lease (`TAKE_LEASE`); the holder renews the lease, pushing
the record's due time along with it, and releases it, each only while its token is the
record's latest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from sessions.keys import text
from sessions.writes import NEXT_FENCE

# `lease_refused(record, lease, now, tolerance)`: 'early' while the record's backoff
# (`not_before`) has more than `tolerance` seconds to run, 'busy' while a lease is held, else
# nil. `take_lease(record, lease, lease_ms)`: a fresh fencing token, the delivery counted and
# the lease held under the token, which it returns. The caller has checked that the record
# exists and may be claimed.
TAKE_LEASE = (
    NEXT_FENCE
    + """
local function lease_refused(record, lease, now, tolerance)
  local not_before = tonumber(redis.call('HGET', record, 'not_before') or '')
  if not_before and now + tolerance < not_before then return 'early' end
  if redis.call('EXISTS', lease) == 1 then return 'busy' end
  return nil
end
local function take_lease(record, lease, lease_ms)
  local fence = next_fence(record)
  redis.call('HINCRBY', record, 'deliveries', 1)
  redis.call('SET', lease, fence, 'PX', lease_ms)
  return fence
end
"""
)

# KEYS: record, lease, due set. ARGV: fence, lease ms, due at, id.
_RENEW = """
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('ZADD', KEYS[3], 'XX', ARGV[3], ARGV[4])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A countdown (Celery's timer) may fire a little before the backoff ends; that is not a
# duplicate to refuse.
EARLY_TOLERANCE_SECONDS = 0.25


class Refusal(StrEnum):
    MISSING = "missing"
    FINISHED = "finished"
    EARLY = "early"
    BUSY = "busy"


def hash_fields(raw: Sequence[Any]) -> dict[str, str]:
    """A record's fields from the flat list `HGETALL` gives a script."""
    return {text(raw[i]): text(raw[i + 1]) for i in range(0, len(raw), 2)}


class LeaseScripts:
    """Renewing and releasing the leases of one kind of record."""

    def __init__(
        self,
        redis: Redis,
        *,
        record_key: Callable[[str], str],
        lease_key: Callable[[str], str],
        due: str,
    ) -> None:
        self._record_key = record_key
        self._lease_key = lease_key
        self._due = due
        self.renew_script: AsyncScript = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def renewal(
        self, record_id: str, fence: int, *, lease_seconds: float, now: float
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of `renew_script` for one renewal."""
        keys = [self._record_key(record_id), self._lease_key(record_id), self._due]
        args = [fence, int(lease_seconds * 1000), repr(now + lease_seconds), record_id]
        return keys, args

    async def renew(self, record_id: str, fence: int, *, lease_seconds: float, now: float) -> bool:
        """Extend the lease (and the in-flight due time); False when it was taken over."""
        keys, args = self.renewal(record_id, fence, lease_seconds=lease_seconds, now=now)
        return bool(await self.renew_script(keys=keys, args=args))

    async def release(self, record_id: str, fence: int) -> None:
        await self._release(keys=[self._lease_key(record_id)], args=[fence])
