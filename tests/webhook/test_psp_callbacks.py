"""`POST /psp/simulator/payments/{id}` through the real app on a real redis-server: only a
callback signed for this session, recently, with the shared secret changes anything."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import redis
from aiohttp.test_utils import TestClient

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from sessions.keys import session_key, timeline_key
from tests.factories import CALLBACK_SECRET, payment_body, shopify_headers, signed_callback
from transport.messages import QUEUE
from webhook.app import create_app
from webhook.signing import sign, simulator_reference

DB = 8
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        simulator_webhook_secret=CALLBACK_SECRET,
        shopify_access_token="shpat_callback_tests",
    )


async def new_payment(client: TestClient[Any, Any], **overrides: Any) -> str:
    body = payment_body(**overrides)
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    assert answer.status == 201
    return str(body["id"])


def path_of(session_id: str) -> str:
    return f"/psp/simulator/payments/{quote(session_id, safe='')}"


def snapshot(inspect: redis.Redis, session_id: str) -> tuple[Any, ...]:
    return (
        inspect.hgetall(session_key(session_id)),
        inspect.lrange(timeline_key(session_id), 0, -1),
        inspect.lrange(QUEUE, 0, -1),
    )


async def test_a_signed_approval_is_recorded_and_queued_once(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    payment = await new_payment(client)
    raw, headers = signed_callback(payment, "approved")
    answer = await client.post(path_of(payment), data=raw, headers=headers)
    assert (answer.status, await answer.json()) == (200, {"status": "accepted"})
    again = await client.post(path_of(payment), data=raw, headers=headers)
    assert (again.status, await again.json()) == (200, {"status": "already recorded"})
    assert inspect.hget(session_key(payment), "outcome") == "approved"
    assert inspect.llen(QUEUE) == 1


async def test_an_approval_signed_for_one_payment_changes_no_other(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    mine, theirs = await new_payment(client), await new_payment(client)
    raw, headers = signed_callback(mine, "approved", reference=f"simpay_{theirs}")
    before = snapshot(inspect, theirs)
    answer = await client.post(path_of(theirs), data=raw, headers=headers)
    assert answer.status == 401
    assert (await answer.json())["error"]["code"] == "bad_signature"
    assert snapshot(inspect, theirs) == before


async def test_a_signature_over_the_body_alone_is_refused(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    # What a buyer holding a leaked or default secret could make for any payment.
    payment = await new_payment(client)
    raw = json.dumps({"outcome": "approved", "reference": f"simpay_{payment}"}).encode()
    digest = hmac.new(CALLBACK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    before = snapshot(inspect, payment)
    answer = await client.post(
        path_of(payment), data=raw, headers={"X-Payhook-Signature": f"sha256={digest}"}
    )
    assert answer.status == 401
    assert snapshot(inspect, payment) == before


@pytest.mark.parametrize(("age", "status"), [(301, 401), (-301, 401), (290, 200), (-5, 200)])
async def test_a_callback_is_accepted_only_within_the_tolerance_of_its_timestamp(
    client: TestClient[Any, Any], inspect: redis.Redis, age: int, status: int
) -> None:
    payment = await new_payment(client)
    before = snapshot(inspect, payment)
    raw, headers = signed_callback(payment, "approved", at=time.time() - age)
    answer = await client.post(path_of(payment), data=raw, headers=headers)
    assert answer.status == status
    if status == 401:
        assert (await answer.json())["error"]["code"] == "stale_signature"
        assert snapshot(inspect, payment) == before


async def test_a_reference_that_is_not_this_payments_is_refused(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    payment = await new_payment(client)
    before = snapshot(inspect, payment)
    raw, headers = signed_callback(payment, "approved", reference="simpay_someone-else")
    answer = await client.post(path_of(payment), data=raw, headers=headers)
    assert answer.status == 422
    assert (await answer.json())["error"]["field"] == "reference"
    assert snapshot(inspect, payment) == before


async def test_a_payment_id_with_url_characters_gets_a_callback_url_that_reaches_it(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    session_id = "ord/1?x=#2"
    body = payment_body(id=session_id)
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    url = (await answer.json())["redirect_url"]
    [callback] = parse_qs(urlsplit(url).query)["callback"]
    raw, headers = signed_callback(session_id, "approved")
    answer = await client.post(urlsplit(callback).path, data=raw, headers=headers)
    assert answer.status == 200
    assert inspect.hget(session_key(session_id), "outcome") == "approved"


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "PAYHOOK_SIMULATOR_WEBHOOK_SECRET is not set"),
        ("payhook-simulator-dev-secret", "public"),
    ],
)
async def test_without_a_private_secret_no_callback_is_accepted(
    aiohttp_client: Any,
    settings: Settings,
    inspect: redis.Redis,
    secret: str | None,
    reason: str,
) -> None:
    unsafe = Settings(
        redis_url=settings.redis_url,
        shopify_access_token="shpat_callback_tests",
        simulator_webhook_secret=secret,
    )
    client = await aiohttp_client(create_app(unsafe))
    payment = await new_payment(client)
    before = snapshot(inspect, payment)
    raw, headers = signed_callback(payment, "approved", secret=secret or "")
    answer = await client.post(path_of(payment), data=raw, headers=headers)
    assert answer.status == 404
    assert reason in (await answer.json())["error"]["message"]
    assert snapshot(inspect, payment) == before


@pytest.mark.parametrize("secret", ["payhook-simulator-dev-secret", "short"])
def test_serve_refuses_to_start_with_a_public_or_short_secret(secret: str) -> None:
    env = child_environment(
        {"PAYHOOK_SIMULATOR_WEBHOOK_SECRET": secret, "PAYHOOK_PORT": str(free_port())}
    )
    env.pop("PAYHOOK_SHOPIFY_ACCESS_TOKEN", None)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ops", "serve"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("payhook serve started with a public or short callback secret")
    assert done.returncode != 0
    assert "PAYHOOK_SIMULATOR_WEBHOOK_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_path_that_decodes_to_no_possible_session_id_is_404(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    for path_id in ["a%0Ab", "a%20b", "x" * 300]:
        answer = await client.post(f"/psp/simulator/payments/{path_id}", data=b"{}")
        assert answer.status == 404, path_id
    assert inspect.dbsize() == 0


@pytest.mark.parametrize(
    ("reason", "stored"),
    [
        ({}, None),
        ({"pending_reason": "merchant_action_required"}, "merchant_action_required"),
        ({"pending_reason": "network_action_required"}, "network_action_required"),
    ],
)
async def test_a_pending_payment_keeps_the_psps_reason_and_a_window_inside_shopifys_limit(
    client: TestClient[Any, Any],
    inspect: redis.Redis,
    settings: Settings,
    reason: dict[str, str],
    stored: str | None,
) -> None:
    payment = await new_payment(client)
    raw, headers = signed_callback(payment, "pending", **reason)
    answer = await client.post(path_of(payment), data=raw, headers=headers)
    assert answer.status == 200
    fields = inspect.hgetall(session_key(payment))
    assert fields.get("pending_reason") == stored
    # Counted from Shopify's request, not from the PSP's word: never past Shopify's three
    # days from either.
    window = float(fields["pending_expires_at"]) - float(fields["created_at"])
    assert window == settings.pending_seconds == 3 * 86400 - 3600
    timeline = inspect.lrange(timeline_key(payment), 0, -1)
    assert (stored or "(PSP callback)") in timeline[-1]


async def test_a_pending_reason_shopify_has_no_name_for_is_refused(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    payment = await new_payment(client)
    before = snapshot(inspect, payment)
    raw, headers = signed_callback(payment, "pending", pending_reason="shopper_asleep")
    answer = await client.post(path_of(payment), data=raw, headers=headers)
    assert answer.status == 422
    error = (await answer.json())["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "pending_reason")
    assert snapshot(inspect, payment) == before


async def test_a_callback_without_its_outcome_names_the_missing_field(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    payment = await new_payment(client)
    before = snapshot(inspect, payment)
    raw = json.dumps({"reference": simulator_reference(payment)}).encode()
    now = int(time.time())
    headers = {"X-Payhook-Signature": sign(CALLBACK_SECRET, payment, now, raw)}
    answer = await client.post(path_of(payment), data=raw, headers=headers)
    assert answer.status == 422
    error = (await answer.json())["error"]
    assert (error["code"], error["field"]) == ("missing_field", "outcome")
    assert snapshot(inspect, payment) == before
