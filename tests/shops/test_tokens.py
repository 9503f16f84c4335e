"""Per-shop access tokens at rest: encrypted under the first key, readable under any, rotated
in place; what Redis holds never shows a token."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import fakeredis
import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from config import Settings
from errors import NoTokenKey, ShopUninstalled, TokenUnreadable
from sessions.keys import SHOPS
from shops.tokens import ShopTokens, TokenCipher, Uninstall

SHOP = "a-shop.myshopify.com"
TOKEN = "shpat_0123456789abcdef0123456789abcdef"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


def tokens(redis: fakeredis.FakeAsyncRedis, *keys: str, fallback: str | None = None) -> ShopTokens:
    return ShopTokens(redis, TokenCipher(keys) if keys else None, fallback)


async def at_rest(redis: fakeredis.FakeAsyncRedis) -> bytes:
    stored = await redis.hget(SHOPS, SHOP)
    assert isinstance(stored, bytes)
    return stored


async def test_redis_never_holds_the_token_itself(redis: fakeredis.FakeAsyncRedis) -> None:
    await tokens(redis, OLD).add(SHOP, TOKEN)
    assert TOKEN.encode() not in await at_rest(redis)
    assert TOKEN.encode() not in b"".join(await redis.hvals(SHOPS))
    assert await tokens(redis, OLD).token_for(SHOP) == TOKEN


async def test_without_a_key_no_token_is_stored(redis: fakeredis.FakeAsyncRedis) -> None:
    with pytest.raises(NoTokenKey, match="PAYHOOK_TOKEN_KEYS"):
        await tokens(redis).add(SHOP, TOKEN)
    assert await redis.hlen(SHOPS) == 0


async def test_a_new_first_key_encrypts_while_the_old_one_still_decrypts(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await tokens(redis, OLD).add(SHOP, TOKEN)
    both = tokens(redis, NEW, OLD)
    assert await both.token_for(SHOP) == TOKEN
    assert (await both.rotate()).rotated == [SHOP]
    # After the rotation the old key can go.
    assert await tokens(redis, NEW).token_for(SHOP) == TOKEN
    with pytest.raises(TokenUnreadable, match=SHOP):
        await tokens(redis, OLD).token_for(SHOP)


async def test_a_rotation_never_overwrites_a_token_added_meanwhile(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await tokens(redis, OLD).add(SHOP, TOKEN)
    both = tokens(redis, NEW, OLD)
    stale = await at_rest(redis)
    await both.add(SHOP, "shpat_newer")
    assert not await both.replace_if_unchanged(SHOP, stale.decode(), "fernet:stale")
    assert await both.token_for(SHOP) == "shpat_newer"


async def test_a_token_stored_in_plain_text_before_is_still_read_and_rotate_encrypts_it(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.hset(SHOPS, SHOP, TOKEN)
    store = tokens(redis, NEW)
    assert await store.token_for(SHOP) == TOKEN
    assert await store.plain_text() == [SHOP]
    assert (await store.rotate()).rotated == [SHOP]
    assert TOKEN.encode() not in await at_rest(redis)
    assert await store.plain_text() == []
    assert await store.token_for(SHOP) == TOKEN


async def test_a_token_no_key_can_read_is_an_error_that_says_so(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await tokens(redis, OLD).add(SHOP, TOKEN)
    with pytest.raises(TokenUnreadable, match="PAYHOOK_TOKEN_KEYS"):
        await tokens(redis, NEW).token_for(SHOP)
    with pytest.raises(TokenUnreadable):
        await tokens(redis).token_for(SHOP)
    report = await tokens(redis, NEW).rotate()
    assert (report.rotated, report.unreadable) == ([], [SHOP])


async def test_a_shop_without_its_own_token_gets_the_fallback(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    assert await tokens(redis, OLD, fallback="shpat_fallback").token_for(SHOP) == "shpat_fallback"
    assert await tokens(redis, OLD).token_for(SHOP) is None


@pytest.mark.parametrize(
    "keys", ["not-a-key", f"{OLD},short", ","], ids=["not-a-key", "a-key-and-a-short-one", "empty"]
)
def test_keys_that_are_no_fernet_keys_are_a_configuration_error(keys: str) -> None:
    with pytest.raises(ValidationError, match="token_keys"):
        Settings(token_keys=keys)


def test_settings_keep_the_keys_in_order() -> None:
    assert Settings(token_keys=f"{NEW}, {OLD}").token_key_list == (NEW, OLD)
    assert Settings().token_key_list == ()


async def test_an_uninstall_leaves_a_tombstone_no_token_and_no_fallback_stands_for(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    store = tokens(redis, OLD, fallback="shpat_fallback")
    await store.add(SHOP, TOKEN)
    done = await store.uninstall(SHOP, triggered_at=time.time() + 5, now=time.time())
    assert done is Uninstall.REMOVED
    assert TOKEN.encode() not in await at_rest(redis)
    with pytest.raises(ShopUninstalled, match="uninstalled the app"):
        await store.token_for(SHOP)
    assert await store.shops() == []
    assert list(await store.uninstalled()) == [SHOP]
    assert await store.uninstall(SHOP, triggered_at=time.time(), now=time.time()) is (
        Uninstall.ALREADY
    )
    # A rotation or the plain-text check never takes the tombstone for a token.
    assert (await store.rotate()).rotated == []
    assert await store.plain_text() == []
    # A re-install stores a token over it.
    await store.add(SHOP, "shpat_again")
    assert await store.token_for(SHOP) == "shpat_again"


async def test_a_token_stored_after_the_uninstall_happened_is_a_reinstall_and_stays(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    store = tokens(redis, OLD)
    await store.add(SHOP, TOKEN)
    # The webhook says the uninstall happened a minute before this token was stored.
    done = await store.uninstall(SHOP, triggered_at=time.time() - 60, now=time.time())
    assert done is Uninstall.REINSTALLED
    assert await store.token_for(SHOP) == TOKEN


async def test_a_shop_the_fallback_served_is_refused_after_its_uninstall(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    store = tokens(redis, OLD, fallback="shpat_fallback")
    assert await store.token_for(SHOP) == "shpat_fallback"
    assert await store.uninstall(SHOP, triggered_at=time.time(), now=time.time()) is (
        Uninstall.NO_TOKEN
    )
    with pytest.raises(ShopUninstalled):
        await store.token_for(SHOP)
