"""Admission by access token: a session is accepted only if payhook could report it, that is
if its shop has a token this process can read (its own, or else the fallback).

Intake is hot (docs/performance.md), so the check costs what the existence check it replaced
cost: one `HGET` of the shop's stored value per request, which keeps `payhook shops remove`
effective from the next request. Whether a stored value decrypts is remembered per (shop,
stored value): it depends only on the value and on this process's `PAYHOOK_TOKEN_KEYS`,
which do not change while it runs, so a remembered verdict never goes stale; a new token
(`payhook shops add`, `rotate`) is a new value and is decrypted once.
"""

from __future__ import annotations

from enum import StrEnum

from redis.asyncio import Redis

from errors import TokenUnreadable
from shops.tokens import UNINSTALLED, ShopTokens, TokenCipher, open_stored

# Verdicts kept; past it the oldest goes first. A few bytes over the stored value each.
REMEMBERED = 4096


class TokenProblem(StrEnum):
    MISSING = "missing"  # no token of the shop's own and no fallback
    UNREADABLE = "unreadable"  # stored, but no configured key decrypts it
    UNINSTALLED = "uninstalled"  # the shop uninstalled the app (`app/uninstalled`)


class TokenCheck:
    def __init__(
        self,
        redis: Redis,
        cipher: TokenCipher | None,
        *,
        fallback: bool,
        remembered: int = REMEMBERED,
    ) -> None:
        self._tokens = ShopTokens(redis)
        self._cipher = cipher
        self._fallback = fallback
        self._remembered = remembered
        self._verdicts: dict[tuple[str, str], bool] = {}

    async def problem(self, shop: str) -> TokenProblem | None:
        """What keeps a session of `shop` from being reported; None when nothing does."""
        stored = await self._tokens.stored(shop)
        if stored is None:
            return None if self._fallback else TokenProblem.MISSING
        if stored.startswith(UNINSTALLED):
            # No fallback stands in for it: Shopify revoked the app's access to the shop.
            return TokenProblem.UNINSTALLED
        return None if self._readable(shop, stored) else TokenProblem.UNREADABLE

    def _readable(self, shop: str, stored: str) -> bool:
        key = (shop, stored)
        verdict = self._verdicts.get(key)
        if verdict is None:
            try:
                open_stored(self._cipher, shop, stored)
                verdict = True
            except TokenUnreadable:
                verdict = False
            if len(self._verdicts) >= self._remembered:
                del self._verdicts[next(iter(self._verdicts))]
            self._verdicts[key] = verdict
        return verdict
