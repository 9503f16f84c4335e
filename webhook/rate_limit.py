"""The optional per-shop rate limit on session requests, kept in Redis so that every web
process draws on the same budget.

GCRA (the generic cell rate algorithm): a shop may send `limit` requests per `window`, in
a burst or spread out. One key per shop holds its theoretical arrival time (TAT): each
request moves it on by `window / limit`, and a request is refused while that would put it
more than one window ahead of now. The time is Redis's own (`TIME`), so web processes with
skewed clocks still agree.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from sessions.keys import rate_key

_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') or 0, now)
local allow_at = tat + interval - window
if allow_at > now then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%d', tat + interval), 'PX', tat + interval - now)
return 0
"""


class ShopRateLimit:
    def __init__(self, redis: Redis, *, limit: int, window_seconds: float) -> None:
        self._take = redis.register_script(_TAKE)
        self._window_ms = max(1, round(window_seconds * 1000))
        self._interval_ms = max(1, math.ceil(self._window_ms / limit))

    async def wait_for(self, shop: str) -> float:
        """Take one request from the shop's budget: 0 when it may go ahead, otherwise the
        seconds until it may (and nothing was taken)."""
        waited = await self._take(keys=[rate_key(shop)], args=[self._interval_ms, self._window_ms])
        return int(waited) / 1000
