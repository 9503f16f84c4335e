"""`POST /capture_sessions` through the real app, a real redis-server and the real broker."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from config import Settings
from ops.redis_server import LocalRedis
from sessions.keys import DUE, SHOPS, session_key, timeline_key
from shops.tokens import TokenCipher
from tests.factories import SHOP, capture_body, new_id, shopify_headers
from transport.messages import QUEUE
from webhook.app import create_app

DB = 1  # nothing consumes this database's queue, so every enqueued message stays visible
ADMIN_TOKEN = "capture-test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_access_token="shpat_fallback_for_every_shop",
        admin_token=ADMIN_TOKEN,
    )


def queued(inspect: redis.Redis) -> list[str]:
    """Session ids of the task messages waiting in the broker."""
    ids = []
    for raw in inspect.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


async def test_a_valid_capture_is_stored_enqueued_and_answered_201_empty(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = capture_body(amount="25.50", currency="USD")
    answer = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201
    assert await answer.json() == {}
    stored = inspect.hgetall(session_key(body["id"]))
    assert stored["state"] == "received"
    assert (stored["amount"], stored["currency"], stored["gid"]) == ("25.50", "USD", body["gid"])
    assert stored["shop"] == "payhook-test.myshopify.com"
    assert queued(inspect) == [body["id"]]
    assert inspect.zscore(DUE, body["id"]) is not None


async def test_a_repeated_request_gets_the_same_201_and_is_not_enqueued_twice(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = capture_body()
    for _ in range(3):
        answer = await client.post("/capture_sessions", json=body, headers=shopify_headers())
        assert (answer.status, await answer.json()) == (201, {})
    assert len(queued(inspect)) == 1


async def test_concurrent_duplicates_store_and_enqueue_once(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = capture_body()
    answers = await asyncio.gather(
        *(client.post("/capture_sessions", json=body, headers=shopify_headers()) for _ in range(50))
    )
    assert {a.status for a in answers} == {201}
    assert len(queued(inspect)) == 1
    assert inspect.llen(timeline_key(body["id"])) == 1


@pytest.mark.parametrize("first", ["{id}:timeline", "timeline:{id}", "{id}:s", "s:{id}"])
async def test_ids_shaped_like_other_keys_are_separate_sessions(
    client: TestClient[Any, Any], inspect: redis.Redis, first: str
) -> None:
    plain = new_id()
    ids = [first.format(id=plain), plain]
    for session_id in ids:
        answer = await client.post(
            "/capture_sessions", json=capture_body(id=session_id), headers=shopify_headers()
        )
        assert (answer.status, await answer.json()) == (201, {}), session_id
    for session_id in ids:
        assert inspect.hget(session_key(session_id), "state") == "received"
        assert inspect.hget(session_key(session_id), "id") == session_id
        assert inspect.zscore(DUE, session_id) is not None
    assert sorted(queued(inspect)) == sorted(ids)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "10.01"}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"payment_id": "another"}, "payment_id"),
    ],
)
async def test_the_same_id_with_a_different_request_is_a_409_and_changes_nothing(
    client: TestClient[Any, Any], inspect: redis.Redis, change: dict[str, str], field: str
) -> None:
    body = capture_body()
    await client.post("/capture_sessions", json=body, headers=shopify_headers())
    before = inspect.hgetall(session_key(body["id"]))
    answer = await client.post(
        "/capture_sessions", json={**body, **change}, headers=shopify_headers()
    )
    assert answer.status == 409
    error = (await answer.json())["error"]
    assert (error["code"], error["field"]) == ("idempotency_conflict", field)
    assert body["id"] in error["message"]
    assert inspect.hgetall(session_key(body["id"])) == before
    assert len(queued(inspect)) == 1


async def test_the_same_amount_written_differently_is_not_a_conflict(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = capture_body(amount="10.00")
    await client.post("/capture_sessions", json=body, headers=shopify_headers())
    answer = await client.post(
        "/capture_sessions", json={**body, "amount": "10.0"}, headers=shopify_headers()
    )
    assert answer.status == 201


@pytest.mark.parametrize(
    ("amount", "currency"), [("999999999999.99", "EUR"), ("99999999999999", "JPY")]
)
async def test_the_largest_amount_the_ledger_keeps_exact_is_accepted(
    client: TestClient[Any, Any], inspect: redis.Redis, amount: str, currency: str
) -> None:
    body = capture_body(amount=amount, currency=currency)
    answer = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201
    assert inspect.hget(session_key(body["id"]), "amount") == amount


async def test_an_amount_sent_as_a_json_number_keeps_every_digit(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = capture_body()
    raw = json.dumps(body).replace('"10.00"', "1234567.89")
    answer = await client.post(
        "/capture_sessions",
        data=raw,
        headers={**shopify_headers(), "Content-Type": "application/json"},
    )
    assert answer.status == 201
    assert inspect.hget(session_key(body["id"]), "amount") == "1234567.89"


FIELD_ERRORS = [
    ("missing id", lambda b: b.pop("id"), "missing_field", "id"),
    ("missing gid", lambda b: b.pop("gid"), "missing_field", "gid"),
    ("missing payment_id", lambda b: b.pop("payment_id"), "missing_field", "payment_id"),
    ("missing amount", lambda b: b.pop("amount"), "missing_field", "amount"),
    ("missing currency", lambda b: b.pop("currency"), "missing_field", "currency"),
    (
        "missing merchant_locale",
        lambda b: b.pop("merchant_locale"),
        "missing_field",
        "merchant_locale",
    ),
    ("missing proposed_at", lambda b: b.pop("proposed_at"), "missing_field", "proposed_at"),
    ("id not a string", lambda b: b.update(id=42), "invalid_field", "id"),
    (
        "gid of another kind",
        lambda b: b.update(gid="gid://shopify/RefundSession/x"),
        "invalid_field",
        "gid",
    ),
    ("gid not a gid", lambda b: b.update(gid="CaptureSession/x"), "invalid_field", "gid"),
    ("amount zero", lambda b: b.update(amount="0.00"), "invalid_field", "amount"),
    ("amount negative", lambda b: b.update(amount="-5.00"), "invalid_field", "amount"),
    (
        "amount with too many decimals",
        lambda b: b.update(amount="10.001"),
        "invalid_field",
        "amount",
    ),
    (
        "yen with decimals",
        lambda b: b.update(amount="100.5", currency="JPY"),
        "invalid_field",
        "amount",
    ),
    ("amount not a number", lambda b: b.update(amount="ten"), "invalid_field", "amount"),
    (
        "amount past what the ledger keeps exact",
        lambda b: b.update(amount="1000000000000.00"),
        "invalid_field",
        "amount",
    ),
    (
        "yen past what the ledger keeps exact",
        lambda b: b.update(amount="100000000000000", currency="JPY"),
        "invalid_field",
        "amount",
    ),
    ("amount a boolean", lambda b: b.update(amount=True), "invalid_field", "amount"),
    ("amount null", lambda b: b.update(amount=None), "invalid_field", "amount"),
    ("unknown currency", lambda b: b.update(currency="XYZ"), "invalid_field", "currency"),
    ("lowercase currency", lambda b: b.update(currency="eur"), "invalid_field", "currency"),
    (
        "proposed_at not a date",
        lambda b: b.update(proposed_at="yesterday"),
        "invalid_field",
        "proposed_at",
    ),
    (
        "proposed_at without zone",
        lambda b: b.update(proposed_at="2026-11-23T10:00:00"),
        "invalid_field",
        "proposed_at",
    ),
    ("test not a boolean", lambda b: b.update(test="yes"), "invalid_field", "test"),
]


@pytest.mark.parametrize(
    ("case", "damage", "code", "field"), FIELD_ERRORS, ids=[c[0] for c in FIELD_ERRORS]
)
async def test_bad_fields_are_422_naming_the_field_and_store_nothing(
    client: TestClient[Any, Any],
    inspect: redis.Redis,
    case: str,
    damage: Any,
    code: str,
    field: str,
) -> None:
    body = capture_body()
    damage(body)
    answer = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert answer.status == 422, case
    error = (await answer.json())["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"]
    assert inspect.dbsize() == 0


@pytest.mark.parametrize(
    ("header", "value", "code"),
    [
        ("Shopify-Shop-Domain", None, "missing_header"),
        ("Shopify-Request-Id", None, "missing_header"),
        ("Shopify-Api-Version", None, "missing_header"),
        ("Shopify-Shop-Domain", "not a domain", "invalid_header"),
        ("Shopify-Api-Version", "v2", "invalid_header"),
    ],
)
async def test_shopify_headers_are_required(
    client: TestClient[Any, Any], inspect: redis.Redis, header: str, value: str | None, code: str
) -> None:
    headers = shopify_headers()
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    answer = await client.post("/capture_sessions", json=capture_body(), headers=headers)
    assert answer.status == 400
    assert (await answer.json())["error"] == {
        **(await answer.json())["error"],
        "code": code,
        "field": header,
    }
    assert inspect.dbsize() == 0


NOT_SHOPS = [
    "169.254.169.254",
    "evil.example",
    "localhost",
    "myshopify.com",
    "shop.myshopify.com.evil.example",
    "evil.example#.myshopify.com",
    "a.b.myshopify.com",
    "-shop.myshopify.com",
    "shop-.myshopify.com",
    "sh_op.myshopify.com",
    "shop.myshopify.com:8443",
    "shop.myshopify.com.",
    f"{'a' * 64}.myshopify.com",
]


@pytest.mark.parametrize("shop", NOT_SHOPS)
async def test_a_shop_domain_that_is_not_a_shopify_shop_is_refused(
    client: TestClient[Any, Any], inspect: redis.Redis, shop: str
) -> None:
    # The shop decides where the worker sends the shop's access token.
    headers = shopify_headers(**{"Shopify-Shop-Domain": shop})
    answer = await client.post("/capture_sessions", json=capture_body(), headers=headers)
    assert answer.status == 400
    error = (await answer.json())["error"]
    assert (error["code"], error["field"]) == ("invalid_header", "Shopify-Shop-Domain")
    assert inspect.dbsize() == 0


@pytest.mark.parametrize(
    "shop", ["a.myshopify.com", "My-Shop-2.MyShopify.com", f"{'a' * 63}.myshopify.com"]
)
async def test_shopify_shop_domains_are_accepted_and_stored_lowercase(
    client: TestClient[Any, Any], inspect: redis.Redis, shop: str
) -> None:
    body = capture_body()
    headers = shopify_headers(**{"Shopify-Shop-Domain": shop})
    answer = await client.post("/capture_sessions", json=body, headers=headers)
    assert answer.status == 201
    assert inspect.hget(session_key(body["id"]), "shop") == shop.lower()


async def test_a_sandbox_may_widen_the_shop_domains(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    wider = settings.model_validate(
        {**settings.model_dump(), "shop_domain_suffixes": ".myshopify.com, .shops.sandbox.test"}
    )
    client = await aiohttp_client(create_app(wider))
    for shop, status in [("a.shops.sandbox.test", 201), ("evil.example", 400)]:
        headers = shopify_headers(**{"Shopify-Shop-Domain": shop})
        answer = await client.post("/capture_sessions", json=capture_body(), headers=headers)
        assert answer.status == status, shop


@pytest.mark.parametrize("suffixes", ["", "myshopify.com", ".evil.example/x", ".Shop.example"])
def test_a_shop_domain_suffix_setting_must_be_domain_suffixes(suffixes: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        Settings(shop_domain_suffixes=suffixes)


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 422, "invalid_body"),
        (b"", "application/json", 400, "invalid_json"),
        (b'{"id": "a"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"id": "a"}', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"pad": "' + b"x" * (64 * 1024) + b'"}', "application/json", 413, "payload_too_large"),
    ],
    ids=["broken", "not utf-8", "array", "empty", "text", "form", "over 64 KiB"],
)
async def test_unreadable_bodies_are_4xx_json_and_store_nothing(
    client: TestClient[Any, Any],
    inspect: redis.Redis,
    data: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    answer = await client.post(
        "/capture_sessions", data=data, headers={**shopify_headers(), "Content-Type": content_type}
    )
    assert answer.status == status
    assert (await answer.json())["error"]["code"] == code
    assert inspect.dbsize() == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/capture_sessions", 405), ("POST", "/nowhere", 404)],
)
async def test_unknown_routes_answer_json_errors(
    client: TestClient[Any, Any], method: str, path: str, status: int
) -> None:
    answer = await client.request(method, path)
    assert answer.status == status
    assert "code" in (await answer.json())["error"]


async def test_health_readiness_and_metrics(client: TestClient[Any, Any]) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz", headers=ADMIN)
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"redis": "ok", "broker": "ok"}
    await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    await client.post("/capture_sessions", json={"id": 1}, headers=shopify_headers())
    metrics = await (await client.get("/metrics", headers=ADMIN)).text()
    assert 'payhook_sessions_received_total{kind="capture",result="created"} 1.0' in metrics
    assert 'payhook_sessions_received_total{kind="capture",result="invalid"} 1.0' in metrics
    assert "payhook_sessions_unfinished 1.0" in metrics


async def test_a_broker_that_is_not_the_session_redis_is_not_ready(
    aiohttp_client: Any, settings: Settings
) -> None:
    # It answers, but no worker reading it would ever see a session intake queued.
    elsewhere = settings.redis_url.rsplit("/", 1)[0] + "/15"
    split = settings.model_copy(update={"broker_url": elsewhere})
    client = await aiohttp_client(create_app(split))
    ready = await client.get("/readyz", headers=ADMIN)
    assert ready.status == 503
    assert (await ready.json())["checks"] == {"redis": "ok", "broker": "error: not the store"}


async def test_a_shop_without_any_token_is_refused_counted_and_stores_nothing(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    # No fallback token: only shops added with `payhook shops add` can be reported to.
    client = await aiohttp_client(
        create_app(Settings(redis_url=settings.redis_url, admin_token=ADMIN_TOKEN))
    )
    answer = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    assert answer.status == 403
    error = (await answer.json())["error"]
    assert (error["code"], error["field"]) == ("no_access_token", "Shopify-Shop-Domain")
    assert SHOP in error["message"]
    assert inspect.dbsize() == 0
    metrics = await (await client.get("/metrics", headers=ADMIN)).text()
    assert 'payhook_sessions_received_total{kind="capture",result="no_token"} 1.0' in metrics

    inspect.hset(SHOPS, SHOP, "shpat_of_this_shop")
    answer = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    assert answer.status == 201


SEALED_UNDER = Fernet.generate_key().decode()
OTHER_KEY = Fernet.generate_key().decode()


@pytest.mark.parametrize(
    ("keys", "fallback"),
    [
        pytest.param(OTHER_KEY, None, id="the-key-it-was-sealed-under-was-dropped"),
        pytest.param(None, None, id="no-keys-at-all"),
        # The shop's own token wins over the fallback, so the fallback cannot report it.
        pytest.param(OTHER_KEY, "shpat_fallback", id="with-a-fallback-token"),
    ],
)
async def test_a_shop_whose_stored_token_no_key_decrypts_is_refused_and_stores_nothing(
    aiohttp_client: Any,
    settings: Settings,
    inspect: redis.Redis,
    keys: str | None,
    fallback: str | None,
) -> None:
    inspect.hset(SHOPS, SHOP, TokenCipher([SEALED_UNDER]).seal("shpat_of_this_shop"))
    configured = Settings(
        redis_url=settings.redis_url,
        token_keys=keys,
        shopify_access_token=fallback,
        admin_token=ADMIN_TOKEN,
    )
    client = await aiohttp_client(create_app(configured))
    for _ in range(2):  # the second answer comes from the remembered verdict
        answer = await client.post(
            "/capture_sessions", json=capture_body(), headers=shopify_headers()
        )
        assert answer.status == 403
        error = (await answer.json())["error"]
        assert (error["code"], error["field"]) == ("token_unreadable", "Shopify-Shop-Domain")
        assert SHOP in error["message"]
        assert "PAYHOOK_TOKEN_KEYS" in error["message"]
    assert inspect.keys() == [SHOPS]
    metrics = await (await client.get("/metrics", headers=ADMIN)).text()
    assert 'payhook_sessions_received_total{kind="capture",result="token_unreadable"} 2.0' in (
        metrics
    )

    # The key is back (or the token was stored again under a key payhook has): admitted.
    inspect.hset(SHOPS, SHOP, TokenCipher([OTHER_KEY]).seal("shpat_of_this_shop"))
    if keys is not None:
        answer = await client.post(
            "/capture_sessions", json=capture_body(), headers=shopify_headers()
        )
        assert answer.status == 201


async def test_a_shop_removed_with_payhook_shops_remove_is_refused_from_the_next_request(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    configured = Settings(redis_url=settings.redis_url, token_keys=OTHER_KEY)
    inspect.hset(SHOPS, SHOP, TokenCipher([OTHER_KEY]).seal("shpat_of_this_shop"))
    client = await aiohttp_client(create_app(configured))
    answer = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    assert answer.status == 201
    inspect.hdel(SHOPS, SHOP)
    answer = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    assert answer.status == 403
    assert (await answer.json())["error"]["code"] == "no_access_token"


async def test_readiness_fails_when_redis_is_unreachable(aiohttp_client: Any) -> None:
    from ops.redis_server import free_port

    unreachable = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(unreachable))
    answer = await client.get("/readyz")
    assert answer.status == 503
    assert (await answer.json())["ready"] is False


async def test_a_redis_outage_is_a_503_json_so_shopify_retries_soon(aiohttp_client: Any) -> None:
    from ops.redis_server import free_port

    unreachable = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(unreachable))
    answer = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    # A 503 with a short Retry-After, as during a failover: the store is away, not broken.
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "1"
    assert "Traceback" not in await answer.text()
    assert (await answer.json())["error"]["code"] == "store_unavailable"


async def test_a_web_process_out_of_redis_connections_says_it_is_overloaded_not_that_redis_is_away(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(settings.redis_url, max_connections=1, timeout=0.2)
    client = await aiohttp_client(create_app(settings, redis=Redis(connection_pool=pool)))
    held = await pool.get_connection()  # every connection busy, Redis itself fine
    try:
        body = capture_body()
        answer = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    finally:
        await pool.release(held)
    # Still a 503 Shopify retries soon, but an operator reading it looks at load, not Redis.
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "1"
    assert (await answer.json())["error"]["code"] == "overloaded"
    assert not inspect.exists(session_key(body["id"]))
    again = await client.post("/capture_sessions", json=body, headers=shopify_headers())
    assert again.status == 201
    await pool.disconnect()
