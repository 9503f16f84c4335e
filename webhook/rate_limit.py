"""Rate limits kept in Redis, so that every web process draws on the same budget: the
optional per-shop limit on session requests, and the limit on failed admin-token attempts
(`webhook.admin_attempts`).

GCRA (the generic cell rate algorithm) as a leaky bucket: a shop may send `limit` requests
per `window`, in a burst or spread out. Each request adds `window / limit` to the shop's
debt, time pays the debt back, and a request that would take the debt past one window is
refused (and adds nothing). The arithmetic is in integers of 1/limit ms, where a request
costs `window_ms` and the bucket holds `window_ms * limit`: rounding `window / limit` to
whole milliseconds would let a burst of 3 at 3/s find 1,002 ms of debt in a 1,000 ms
bucket, and would cap any limit at 1,000 a second. The time is Redis's own (`TIME`), so
web processes with skewed clocks still agree.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from sessions.keys import rate_key

# Lua numbers are doubles: integers stay exact up to 2^53, which the bucket may not reach.
MAX_BUCKET = 2**53

# KEYS[1] holds "<debt>:<ms it was measured>". ARGV: the cost of one request (the window in
# ms), the bucket (the window in ms x limit), the limit (what one ms pays back), and '1' to
# only look (say whether a request would go ahead, taking nothing).
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local cost, bucket, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local debt, since = 0, now
local held = redis.call('GET', KEYS[1])
if held then
  local d, t = string.match(held, '^(%d+):(%d+)$')
  if d then debt, since = tonumber(d), tonumber(t) end
end
-- A whole window pays back any debt; capped, the product stays inside the bucket's range.
local elapsed = math.min(math.max(now - since, 0), cost)
debt = math.max(debt - elapsed * limit, 0)
if debt + cost > bucket then return math.ceil((debt + cost - bucket) / limit) end
if ARGV[4] == '1' then return 0 end
debt = debt + cost
redis.call('SET', KEYS[1], string.format('%d:%d', debt, now), 'PX', math.ceil(debt / limit) + 1)
return 0
"""


class RateLimit:
    """`limit` per `window_seconds` for each name, under the Redis key `key(name)`."""

    def __init__(
        self,
        redis: Redis,
        *,
        limit: int,
        window_seconds: float,
        key: Callable[[str], str] = rate_key,
    ) -> None:
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._limit = limit
        self._key = key
        self._window_ms = max(1, round(window_seconds * 1000))
        if self._window_ms * limit > MAX_BUCKET:
            raise ValueError(f"{limit} per {window_seconds:g} s is past the limiter's range")

    async def wait_for(self, name: str) -> float:
        """Take one request from the budget: 0 when it may go ahead, otherwise the seconds
        until it may (and nothing was taken)."""
        return await self._call(name, take=True)

    async def would_wait(self, name: str) -> float:
        """`wait_for` without taking anything: what the next request would be told."""
        return await self._call(name, take=False)

    async def wait_for_each(self, name: str, count: int) -> list[float]:
        """`count` calls of `wait_for` in a row, in one transaction: Redis runs them back to
        back, so no client's pace stands between them (a burst as fast as the server goes)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(count):
                await self._take(
                    keys=[self._key(name)], args=self._arguments(take=True), client=pipe
                )
            waited = await pipe.execute()
        return [int(w) / 1000 for w in waited]

    async def _call(self, name: str, *, take: bool) -> float:
        waited = await self._take(keys=[self._key(name)], args=self._arguments(take=take))
        return int(waited) / 1000

    def _arguments(self, *, take: bool) -> list[int | str]:
        return [self._window_ms, self._window_ms * self._limit, self._limit, "" if take else "1"]
