"""The worker's shop tokens: read from the registry at most once per shop per cache period."""

from __future__ import annotations

from cryptography.fernet import Fernet
from fakeredis import FakeAsyncRedis

from shops.tokens import ShopTokens, TokenCipher
from workers.shopify.tokens import TOKEN_CACHE_SECONDS, CachedTokens

SHOP = "cached.myshopify.com"
CIPHER = TokenCipher([Fernet.generate_key().decode()])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_changed_token_takes_effect_once_the_cache_period_has_passed() -> None:
    redis = FakeAsyncRedis()
    registry = ShopTokens(redis, CIPHER)
    await registry.add(SHOP, "shpat_old")
    clock = Clock()
    tokens = CachedTokens(registry, clock=clock)

    assert await tokens.token_for(SHOP) == "shpat_old"
    await registry.add(SHOP, "shpat_new")
    clock.now += TOKEN_CACHE_SECONDS - 0.1
    assert await tokens.token_for(SHOP) == "shpat_old"
    clock.now += 0.2
    assert await tokens.token_for(SHOP) == "shpat_new"


async def test_a_forgotten_shop_is_read_again_at_once() -> None:
    redis = FakeAsyncRedis()
    registry = ShopTokens(redis, CIPHER, fallback="shpat_fallback")
    tokens = CachedTokens(registry, clock=Clock())

    assert await tokens.token_for(SHOP) == "shpat_fallback"
    await registry.add(SHOP, "shpat_own")
    tokens.forget(SHOP)
    assert await tokens.token_for(SHOP) == "shpat_own"


async def test_shops_are_cached_apart() -> None:
    redis = FakeAsyncRedis()
    registry = ShopTokens(redis, CIPHER)
    await registry.add(SHOP, "shpat_a")
    await registry.add("other.myshopify.com", "shpat_b")
    tokens = CachedTokens(registry, clock=Clock())

    assert await tokens.token_for(SHOP) == "shpat_a"
    assert await tokens.token_for("other.myshopify.com") == "shpat_b"
