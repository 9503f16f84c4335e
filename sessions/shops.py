"""Per-shop Shopify access tokens, kept in Redis and managed with `payhook shops`.

Redis holding the tokens must be private to payhook (it already holds every session);
tokens are never logged or echoed back in full.
"""

from __future__ import annotations

from redis.asyncio import Redis

SHOPS = "payhook:shops"


class ShopTokens:
    def __init__(self, redis: Redis, fallback: str | None = None) -> None:
        self._redis = redis
        self._fallback = fallback

    async def token_for(self, shop: str) -> str | None:
        token = await self._redis.hget(SHOPS, shop)
        if token is not None:
            return token.decode() if isinstance(token, bytes) else str(token)
        return self._fallback

    async def has_token(self, shop: str) -> bool:
        """Whether a session of `shop` could be reported: its own token or the fallback."""
        return self._fallback is not None or bool(await self._redis.hexists(SHOPS, shop))

    async def add(self, shop: str, token: str) -> None:
        await self._redis.hset(SHOPS, shop, token)

    async def remove(self, shop: str) -> bool:
        return bool(await self._redis.hdel(SHOPS, shop))

    async def shops(self) -> list[str]:
        names = await self._redis.hkeys(SHOPS)
        return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)
