"""The onboarding record and the install nonces in Redis: an ask is taken by one sweep at a
time, an old answer never overwrites a newer ask, and a nonce is spent once, by its shop."""

from __future__ import annotations

import time

import fakeredis
import pytest
from cryptography.fernet import Fernet

from sessions.keys import SHOPS
from shops.installs import STATE_PREFIX, InstallStates, Taken
from shops.onboarding import (
    ONBOARDING_DUE,
    Attempt,
    OnboardingState,
    OnboardingStore,
    UserError,
    shop_statuses,
)
from shops.tokens import ShopTokens, token_cipher

SHOP = "onboarding-shop.myshopify.com"
NOW = 1_800_000_000.0


@pytest.fixture
def store(redis: fakeredis.FakeAsyncRedis) -> OnboardingStore:
    return OnboardingStore(redis)


async def test_an_install_stores_the_token_and_the_first_ask_together(
    store: OnboardingStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    request = await store.install(SHOP, "fernet:sealed", handle=SHOP, ready=True, now=NOW)
    assert request == 1
    assert await redis.hget(SHOPS, SHOP) == b"fernet:sealed"
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.ready, record.handle, record.asked_by) == (
        OnboardingState.QUEUED,
        True,
        SHOP,
        "install",
    )
    assert await redis.zscore(ONBOARDING_DUE, SHOP) == NOW
    [status] = await shop_statuses(redis)
    assert (status.shop, status.token, status.onboarding) == (SHOP, "encrypted", record)


async def test_a_due_ask_is_taken_by_one_sweep_and_held(store: OnboardingStore) -> None:
    await store.ask(SHOP, handle=None, ready=False, by="operator", now=NOW)
    [ask] = await store.take_due(NOW, limit=10, hold_for=30)
    assert (ask.shop, ask.request, ask.handle, ask.ready, ask.attempts) == (SHOP, 1, None, False, 0)
    assert await store.take_due(NOW + 29, limit=10, hold_for=30) == []
    assert await store.take(SHOP, NOW + 29, hold_for=30) is None
    # A holder that died: the ask is due again once the hold passed.
    assert [a.shop for a in await store.take_due(NOW + 31, limit=10, hold_for=30)] == [SHOP]


async def test_shopifys_acceptance_is_kept_apart_from_the_asks_that_follow(
    store: OnboardingStore,
) -> None:
    await store.ask(SHOP, handle="acct-7", ready=True, by="install", now=NOW)
    [ask] = await store.take_due(NOW, limit=10, hold_for=30)
    assert await store.finish(ask, Attempt(OnboardingState.CONFIGURED), NOW + 1)
    await store.ask(SHOP, handle="acct-7", ready=False, by="operator", now=NOW + 2)
    [ask] = await store.take_due(NOW + 2, limit=10, hold_for=30)
    refused = Attempt(
        OnboardingState.REFUSED,
        user_errors=(UserError(field=["ready"], message="Onboarding is not complete"),),
    )
    assert await store.finish(ask, refused, NOW + 3)
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.ready, record.attempts) == (OnboardingState.REFUSED, False, 1)
    assert record.user_errors == [UserError(field=["ready"], message="Onboarding is not complete")]
    # What Shopify holds is still the earlier configuration.
    assert (record.accepted_ready, record.accepted_handle, record.accepted_at) == (
        True,
        "acct-7",
        NOW + 1,
    )
    assert await store.take_due(NOW + 100, limit=10, hold_for=30) == []


async def test_an_answer_to_an_older_ask_never_overwrites_a_newer_one(
    store: OnboardingStore,
) -> None:
    await store.ask(SHOP, handle="old", ready=True, by="install", now=NOW)
    [old] = await store.take_due(NOW, limit=10, hold_for=30)
    await store.ask(SHOP, handle="new", ready=False, by="operator", now=NOW + 1)
    assert not await store.finish(old, Attempt(OnboardingState.CONFIGURED), NOW + 2)
    record = await store.get(SHOP)
    assert record is not None
    assert (record.state, record.handle, record.accepted_ready) == (
        OnboardingState.QUEUED,
        "new",
        None,
    )
    # The newer ask is still due, and is sent in its turn.
    [new] = await store.take_due(NOW + 2, limit=10, hold_for=30)
    assert (new.request, new.handle) == (2, "new")


async def test_a_retry_is_due_at_its_time_with_its_error_kept(store: OnboardingStore) -> None:
    await store.ask(SHOP, handle=None, ready=True, by="install", now=NOW)
    [ask] = await store.take_due(NOW, limit=10, hold_for=30)
    retry = Attempt(OnboardingState.QUEUED, error="HTTP 503", retry_at=NOW + 60)
    assert await store.finish(ask, retry, NOW + 1)
    assert await store.take_due(NOW + 59, limit=10, hold_for=30) == []
    [again] = await store.take_due(NOW + 60, limit=10, hold_for=30)
    assert (again.attempts, again.since) == (1, NOW + 1)
    record = await store.get(SHOP)
    assert record is not None
    assert record.last_error == "HTTP 503"


async def test_a_forgotten_shop_has_nothing_left_to_send(
    store: OnboardingStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    await store.ask(SHOP, handle=None, ready=True, by="install", now=NOW)
    [ask] = await store.take_due(NOW, limit=10, hold_for=30)
    await store.forget(SHOP)
    assert not await store.finish(ask, Attempt(OnboardingState.CONFIGURED), NOW + 1)
    assert await store.get(SHOP) is None
    assert await redis.zcard(ONBOARDING_DUE) == 0


async def test_a_nonce_is_spent_once_and_only_by_its_own_shop(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    states = InstallStates(redis, seconds=600)
    nonce = await states.issue(SHOP)
    assert await redis.ttl(STATE_PREFIX + nonce) == 600
    assert await states.take(nonce, "other.myshopify.com") is Taken.OTHER_SHOP
    assert await states.take(nonce, SHOP) is Taken.TAKEN
    assert await states.take(nonce, SHOP) is Taken.UNKNOWN
    assert await states.take("not-a-nonce", SHOP) is Taken.UNKNOWN


async def test_a_due_entry_left_without_its_record_is_dropped_and_sends_nothing(
    store: OnboardingStore, redis: fakeredis.FakeAsyncRedis
) -> None:
    await redis.zadd(ONBOARDING_DUE, {SHOP: NOW})
    assert await store.take_due(NOW, limit=10, hold_for=30) == []
    assert await redis.zcard(ONBOARDING_DUE) == 0


async def test_a_shop_that_uninstalled_the_app_is_listed_as_uninstalled_not_as_a_token(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await redis.hset(SHOPS, mapping={"a.myshopify.com": "shpat_plain"})
    tokens = ShopTokens(redis, token_cipher([Fernet.generate_key().decode()]))
    await tokens.add("b.myshopify.com", "shpat_b")
    # Reported after the token was stored: not a re-install's token, so it goes.
    later = time.time() + 60
    await tokens.uninstall("b.myshopify.com", triggered_at=later, now=later)
    listed = {status.shop: status.token for status in await shop_statuses(redis)}
    assert listed == {"a.myshopify.com": "plain_text", "b.myshopify.com": "uninstalled"}
