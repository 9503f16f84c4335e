"""`POST /payment_confirmations`, Shopify's confirmation request, through the real app on a
real redis-server: stored and queued before its `201`, a repeat changes nothing, it takes the
session from a worker still waiting for Shopify's answer, and anything else changes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from config import Settings
from errors import LeaseLost
from ops.redis_server import LocalRedis
from sessions.claims import Claimed, Claims
from sessions.keys import FAILED, session_key, timeline_key
from sessions.models import Outcome, Session
from sessions.states import Event, State
from sessions.store import SessionStore
from tests.factories import (
    CALLBACK_SECRET,
    change_to,
    payment_body,
    shopify_headers,
    signed_callback,
)
from transport.messages import QUEUE
from webhook.app import create_app
from workers.lifecycle import reporting
from workers.lifecycle.moves import Accepted, Policy
from workers.retry_policy import RetryPolicy

DB = 6
POLICY = Policy(
    psp=RetryPolicy((1.0,), max_attempts=3),
    shopify=RetryPolicy((1.0,), max_attempts=3),
    lease_seconds=30.0,
)


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        simulator_webhook_secret=CALLBACK_SECRET,
        shopify_access_token="shpat_confirmation_tests",
        payment_confirmation=True,
    )


@pytest.fixture
async def store(settings: Settings, inspect: redis.Redis) -> AsyncIterator[SessionStore]:
    client = Redis.from_url(settings.redis_url)
    yield SessionStore(client)
    await client.aclose()


async def approved_payment(client: TestClient[Any, Any], store: SessionStore) -> Session:
    """A payment the PSP approved (queued for its report), as the worker will claim it."""
    body = payment_body()
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201
    raw, headers = signed_callback(body["id"], "approved")
    answer = await client.post(f"/psp/simulator/payments/{body['id']}", data=raw, headers=headers)
    assert answer.status == 200
    session = await store.get(body["id"])
    assert session is not None
    await store.redis.delete(QUEUE)
    return session


async def confirming_payment(client: TestClient[Any, Any], store: SessionStore) -> Session:
    """A payment Shopify took `paymentSessionConfirm` for, waiting for its request."""
    session = await approved_payment(client, store)
    decision = reporting.after_report(
        session, "paymentSessionConfirm", Accepted(), POLICY, time.time()
    )
    await store.change(session, decision.change)
    stored = await store.get(session.id)
    assert stored is not None
    assert stored.state is State.CONFIRMING
    return stored


async def confirm(
    client: TestClient[Any, Any], gid: str, result: Any, **headers: str
) -> tuple[int, Any]:
    answer = await client.post(
        "/payment_confirmations",
        json={"gid": gid, "confirmation_result": result},
        headers={**shopify_headers(), **headers},
    )
    return answer.status, await answer.json()


def snapshot(inspect: redis.Redis, session_id: str) -> tuple[Any, ...]:
    return (
        inspect.hgetall(session_key(session_id)),
        inspect.lrange(timeline_key(session_id), 0, -1),
        inspect.lrange(QUEUE, 0, -1),
    )


@pytest.mark.parametrize(
    ("result", "reject_code"), [(True, None), (False, "CONFIRMATION_REJECTED")]
)
async def test_shopifys_answer_is_stored_and_queued_before_its_201(
    client: TestClient[Any, Any],
    store: SessionStore,
    inspect: redis.Redis,
    result: bool,
    reject_code: str | None,
) -> None:
    session = await confirming_payment(client, store)

    assert await confirm(client, session.gid, result) == (201, {})

    stored = await store.get(session.id)
    assert stored is not None
    assert (stored.state, stored.confirmation_result, stored.not_before) == (
        State.SETTLED,
        result,
        None,
    )
    assert stored.reject_code == reject_code
    assert stored.outcome is Outcome.APPROVED
    assert inspect.llen(QUEUE) == 1
    assert (await store.timeline(session.id))[-1].event == "confirmation"


async def test_a_repeat_changes_nothing_and_the_other_answer_is_a_conflict(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    session = await confirming_payment(client, store)
    assert (await confirm(client, session.gid, True))[0] == 201
    before = snapshot(inspect, session.id)

    assert await confirm(client, session.gid, True) == (201, {})
    assert snapshot(inspect, session.id) == before
    status, body = await confirm(client, session.gid, False)
    assert (status, body["error"]["code"]) == (409, "confirmation_conflict")
    assert snapshot(inspect, session.id) == before


async def test_an_answer_that_overtakes_the_worker_takes_the_session_from_it(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    # A worker claimed the payment and sent paymentSessionConfirm; Shopify's request comes
    # before the worker has stored Shopify's answer to the mutation.
    session = await approved_payment(client, store)
    claims = Claims(store.redis)
    claim = await claims.claim(session.id, now=time.time(), lease_seconds=30)
    assert isinstance(claim, Claimed)

    assert await confirm(client, session.gid, True) == (201, {})

    late = reporting.after_report(
        claim.session, "paymentSessionConfirm", Accepted(), POLICY, time.time()
    )
    with pytest.raises(LeaseLost):
        await claims.apply(session.id, claim.fence, late.change, release=True)
    stored = await store.get(session.id)
    assert stored is not None
    assert (stored.state, stored.confirmation_result) == (State.SETTLED, True)
    # The lease is gone, so the queued task is taken at once rather than after it lapses.
    assert isinstance(await claims.claim(session.id, now=time.time(), lease_seconds=30), Claimed)
    assert inspect.llen(QUEUE) == 1


async def test_an_answer_for_a_payment_whose_confirm_ran_out_of_retries_resumes_it(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    session = await approved_payment(client, store)
    failed = change_to(
        Event.FAILED,
        at=time.time(),
        sent_mutation="paymentSessionConfirm",
        failed_at=time.time(),
        last_error="paymentSessionConfirm: HTTP 503",
    )
    await store.change(session, failed)
    assert inspect.zscore(FAILED, session.id) is not None

    assert await confirm(client, session.gid, True) == (201, {})

    stored = await store.get(session.id)
    assert stored is not None
    assert (stored.state, stored.failed_at, stored.last_error) == (State.SETTLED, None, None)
    assert inspect.zscore(FAILED, session.id) is None
    assert inspect.llen(QUEUE) == 1


async def test_a_payment_shopify_was_never_asked_to_confirm_changes_nothing(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    session = await approved_payment(client, store)
    before = snapshot(inspect, session.id)

    status, body = await confirm(client, session.gid, True)

    assert (status, body["error"]["code"]) == (409, "not_confirming")
    assert snapshot(inspect, session.id) == before


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("unknown session", 404, "not_found"),
        ("another shop's session", 404, "not_found"),
        ("a capture gid", 422, "invalid_field"),
        ("no result", 422, "missing_field"),
        ("a result that is not a boolean", 422, "invalid_field"),
        ("no Shopify headers", 400, "missing_header"),
    ],
)
async def test_what_is_not_this_shops_confirmation_changes_nothing(
    client: TestClient[Any, Any],
    store: SessionStore,
    inspect: redis.Redis,
    case: str,
    status: int,
    code: str,
) -> None:
    session = await confirming_payment(client, store)
    before = snapshot(inspect, session.id)
    body: dict[str, Any] = {"gid": session.gid, "confirmation_result": True}
    headers = shopify_headers()
    if case == "unknown session":
        body["gid"] = "gid://shopify/PaymentSession/never-sent"
    elif case == "another shop's session":
        headers = shopify_headers(**{"Shopify-Shop-Domain": "other-shop.myshopify.com"})
    elif case == "a capture gid":
        body["gid"] = f"gid://shopify/CaptureSession/{session.id}"
    elif case == "no result":
        del body["confirmation_result"]
    elif case == "a result that is not a boolean":
        body["confirmation_result"] = "true"
    else:
        headers = {}

    answer = await client.post("/payment_confirmations", json=body, headers=headers)

    assert answer.status == status
    assert (await answer.json())["error"]["code"] == code
    assert snapshot(inspect, session.id) == before


async def test_only_shopify_through_the_trusted_proxy_may_send_it(
    aiohttp_client: Any, settings: Settings, store: SessionStore, inspect: redis.Redis
) -> None:
    # The test client connects from 127.0.0.1; the only trusted proxy is elsewhere.
    guarded = Settings(**{**settings.model_dump(), "trusted_proxies": "10.9.9.9"})
    client = await aiohttp_client(create_app(guarded))
    body = {"gid": "gid://shopify/PaymentSession/x", "confirmation_result": True}

    answer = await client.post("/payment_confirmations", json=body, headers=shopify_headers())

    assert answer.status == 403
    assert (await answer.json())["error"]["code"] == "untrusted_proxy"
