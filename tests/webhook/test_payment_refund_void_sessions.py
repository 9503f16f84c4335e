"""`POST /payment_sessions`, `/refund_sessions` and `/void_sessions` through the real app on a
real redis-server: the good path, duplicates, conflicts and each kind's own bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from aiohttp.test_utils import TestClient

from config import Settings
from ops.redis_server import LocalRedis
from sessions.keys import session_key
from tests.factories import payment_body, refund_body, shopify_headers, void_body
from transport.messages import QUEUE

DB = 6


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        public_url="https://payhook.example",
        shopify_access_token="shpat_fallback_for_every_shop",
    )


KINDS: dict[str, Callable[..., dict[str, Any]]] = {
    "refund": lambda **o: refund_body("pay-1", **o),
    "void": lambda **o: void_body("pay-1", **o),
}


@pytest.mark.parametrize("kind", ["refund", "void"])
async def test_a_refund_or_void_is_stored_queued_and_answered_201(
    client: TestClient[Any, Any], inspect: redis.Redis, kind: str
) -> None:
    body = KINDS[kind]()
    for _ in range(2):
        answer = await client.post(f"/{kind}_sessions", json=body, headers=shopify_headers())
        assert (answer.status, await answer.json()) == (201, {})
    stored = inspect.hgetall(session_key(body["id"]))
    assert (stored["kind"], stored["payment_id"], stored["state"]) == (kind, "pay-1", "received")
    assert inspect.llen(QUEUE) == 1


async def test_a_refund_with_another_amount_under_the_same_id_is_a_409(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = refund_body("pay-1")
    await client.post("/refund_sessions", json=body, headers=shopify_headers())
    answer = await client.post(
        "/refund_sessions", json={**body, "amount": "11.00"}, headers=shopify_headers()
    )
    assert answer.status == 409
    assert (await answer.json())["error"]["field"] == "amount"


async def test_a_payment_answers_the_buyer_page_and_queues_nothing(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = payment_body(amount="123.00", currency="CAD")
    first = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    again = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    assert first.status == again.status == 201
    url = (await first.json())["redirect_url"]
    assert url == (await again.json())["redirect_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["amount"] == ["123.00"]
    assert query["currency"] == ["CAD"]
    assert query["callback"] == [f"https://payhook.example/psp/simulator/payments/{body['id']}"]
    assert inspect.llen(QUEUE) == 0  # the buyer acts first
    stored = inspect.hgetall(session_key(body["id"]))
    assert (stored["payment_kind"], stored["group"]) == ("authorization", body["group"])


async def test_buyer_data_is_never_stored(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    body = payment_body()
    await client.post("/payment_sessions", json=body, headers=shopify_headers())
    everything = []
    for key in inspect.keys("*"):
        kind = inspect.type(key)
        if kind == "hash":
            everything.append(json.dumps(inspect.hgetall(key)))
        elif kind == "list":
            everything.extend(inspect.lrange(key, 0, -1))
    assert session_key(body["id"]) in inspect.keys("*")
    for secret in ("buyer@example.com", "Alice"):
        assert not any(secret in value for value in everything)


BAD = [
    ("payment", lambda b: b.update(kind="layaway"), "kind"),
    ("payment", lambda b: b.pop("group"), "group"),
    ("payment", lambda b: b.update(payment_method={"data": {}}), "payment_method.type"),
    ("payment", lambda b: b.update(customer="alice"), "customer"),
    ("payment", lambda b: b.update(gid="gid://shopify/CaptureSession/x"), "gid"),
    ("payment", lambda b: b.update(amount="1.001"), "amount"),
    ("payment", lambda b: b.update(amount="1000000000000.00"), "amount"),
    ("refund", lambda b: b.update(amount="1000000000000.00"), "amount"),
    ("refund", lambda b: b.pop("payment_id"), "payment_id"),
    ("refund", lambda b: b.update(amount="0"), "amount"),
    ("refund", lambda b: b.update(gid="gid://shopify/VoidSession/x"), "gid"),
    ("void", lambda b: b.pop("payment_id"), "payment_id"),
    ("void", lambda b: b.update(proposed_at="soon"), "proposed_at"),
    ("void", lambda b: b.update(merchant_locale=""), "merchant_locale"),
    ("refund", lambda b: b.pop("merchant_locale"), "merchant_locale"),
    # Where the buyer goes back to checkout: only a URL a browser may be sent to.
    ("payment", lambda b: b.update(cancel_url="javascript:alert(1)"), "cancel_url"),
    ("payment", lambda b: b.update(cancel_url="/checkouts/1"), "cancel_url"),
    ("payment", lambda b: b.update(cancel_url=7), "cancel_url"),
    (
        "payment",
        lambda b: b["payment_method"]["data"].update(cancel_url="https://a\\@b.example/"),
        "payment_method.data",
    ),
    (
        "payment",
        lambda b: b["payment_method"]["data"].update(cancel_url=["https://shop.example/"]),
        "payment_method.data",
    ),
]


@pytest.mark.parametrize(
    ("kind", "damage", "field"), BAD, ids=[f"{k} {f} {i}" for i, (k, _, f) in enumerate(BAD)]
)
async def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(
    client: TestClient[Any, Any], inspect: redis.Redis, kind: str, damage: Any, field: str
) -> None:
    body = payment_body() if kind == "payment" else KINDS[kind]()
    damage(body)
    answer = await client.post(f"/{kind}_sessions", json=body, headers=shopify_headers())
    assert answer.status == 422
    assert (await answer.json())["error"]["field"] == field
    assert inspect.dbsize() == 0


async def test_a_void_without_merchant_locale_is_taken_as_shopify_sends_it(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    # Shopify's own template reads only id, gid, payment_id and proposed_at of a void.
    body = {k: v for k, v in void_body("pay-1").items() if k != "merchant_locale"}
    answer = await client.post("/void_sessions", json=body, headers=shopify_headers())
    assert (answer.status, await answer.json()) == (201, {})
    stored = inspect.hgetall(session_key(body["id"]))
    assert stored["state"] == "received"
    assert "merchant_locale" not in stored


@pytest.mark.parametrize(
    ("where", "stored"),
    [
        ("top", "https://shop.example/checkouts/top"),
        ("data", "https://shop.example/checkouts/1"),
        ("both", "https://shop.example/checkouts/top"),
    ],
)
async def test_the_cancel_url_is_read_at_the_top_level_or_in_the_payment_method(
    client: TestClient[Any, Any], inspect: redis.Redis, where: str, stored: str
) -> None:
    body = payment_body()
    if where != "data":
        body["cancel_url"] = "https://shop.example/checkouts/top"
    if where == "top":
        body["payment_method"] = {"type": "offsite", "data": {}}
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201
    assert inspect.hget(session_key(body["id"]), "cancel_url") == stored


async def test_the_buyer_page_learns_where_to_send_the_buyer_back(
    client: TestClient[Any, Any],
) -> None:
    body = payment_body(id="pay/with?odd#chars")
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    query = parse_qs(urlsplit((await answer.json())["redirect_url"]).query)
    assert query["return_url"] == [
        "https://payhook.example/payments/pay%2Fwith%3Fodd%23chars/return"
    ]
