"""The `state` of an OAuth install: a nonce, single use, bound to the shop it was made for.

`GET /shopify/install` makes one and keeps it in Redis for `STATE_SECONDS`; the callback
takes it back in one script that deletes it only when it names the callback's shop. So a
callback replayed after its install is refused (the nonce is gone), and a nonce presented
for another shop is refused without being spent: a wrong-shop callback changes nothing.
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum

from redis.asyncio import Redis

from sessions.keys import PREFIX

STATE_PREFIX = f"{PREFIX}oauth-state:"
# Long enough for a merchant to log in and approve; short enough that a leaked link dies.
STATE_SECONDS = 600
# `secrets.token_urlsafe(32)`: 43 characters of the URL-safe alphabet.
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")

_TAKE = """
local shop = redis.call('GET', KEYS[1])
if not shop then return 'unknown' end
if shop ~= ARGV[1] then return 'other_shop' end
redis.call('DEL', KEYS[1])
return 'taken'
"""


class Taken(StrEnum):
    TAKEN = "taken"
    UNKNOWN = "unknown"  # never made, expired, already used, or not a nonce at all
    OTHER_SHOP = "other_shop"


def state_key(nonce: str) -> str:
    return STATE_PREFIX + nonce


class InstallStates:
    def __init__(self, redis: Redis, *, seconds: int = STATE_SECONDS) -> None:
        self._redis = redis
        self._seconds = seconds
        self._take = redis.register_script(_TAKE)

    async def issue(self, shop: str) -> str:
        nonce = secrets.token_urlsafe(32)
        await self._redis.set(state_key(nonce), shop, ex=self._seconds, nx=True)
        return nonce

    async def take(self, nonce: str, shop: str) -> Taken:
        """Spend `nonce` if it was made for `shop`; anything that is not a nonce payhook
        makes is `UNKNOWN` without a Redis call."""
        if not _NONCE.fullmatch(nonce):
            return Taken.UNKNOWN
        answer = await self._take(keys=[state_key(nonce)], args=[shop])
        return Taken(answer.decode() if isinstance(answer, bytes) else str(answer))
