"""Shop access tokens as the worker reads them: from the shop registry, briefly cached.

Every mutation needs its shop's token; reading it from Redis each time was one more round
trip per report. A token changed with `payhook shops add` takes effect within
`TOKEN_CACHE_SECONDS`; a shop whose token Shopify refuses can be dropped from the cache at once.
Whether the PSP may be asked for a session is never decided from the cache but from the
registry value its claim read (`opened`): a token removed with `payhook shops remove` stops
new PSP calls for its shop at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from workers.shopify.gateway import TokenSource

TOKEN_CACHE_SECONDS = 10.0


class CachedTokens:
    """A `TokenSource` that asks `source` at most once per shop every `seconds`."""

    def __init__(
        self,
        source: TokenSource,
        *,
        seconds: float = TOKEN_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._seconds = seconds
        self._clock = clock
        self._cached: dict[str, tuple[float, str | None]] = {}

    async def token_for(self, shop: str) -> str | None:
        now = self._clock()
        cached = self._cached.get(shop)
        if cached is not None and cached[0] > now:
            return cached[1]
        token = await self._source.token_for(shop)
        self._cached[shop] = (now + self._seconds, token)
        return token

    def opened(self, shop: str, stored: str | None) -> str | None:
        """The token a fresh registry value stands for (and the cache refreshed with it)."""
        token = self._source.opened(shop, stored)
        self._cached[shop] = (self._clock() + self._seconds, token)
        return token

    def forget(self, shop: str) -> None:
        self._cached.pop(shop, None)
