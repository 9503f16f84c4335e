"""Shopify's test mode at the door and wherever a session is shown, through the real app on a
real redis-server: a test payment for a live PSP account is never sent to the PSP's page, and
every session says whether it is a test one (the admin API, the dashboard, `payhook
sessions`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis
from sessions.keys import session_key
from sessions.store import SessionStore
from tests.factories import capture_body, payment_body, shopify_headers
from transport.messages import QUEUE
from webhook.app import create_app

DB = 6
TOKEN = "test-mode-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CANCEL = "https://shop.example/checkouts/1"
ROOT = Path(__file__).resolve().parents[2]


def settings_for(redis_server: LocalRedis, **overrides: Any) -> Settings:
    return Settings(
        **{
            "redis_url": f"redis://127.0.0.1:{redis_server.port}/{DB}",
            "shopify_access_token": "shpat_test_mode",
            "admin_token": TOKEN,
            **overrides,
        }
    )


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    # The default account of a real connector: live.
    return settings_for(redis_server, connector="http", http_connector_url="http://psp.invalid")


@pytest.fixture
async def store(settings: Settings, inspect: redis.Redis) -> AsyncIterator[SessionStore]:
    client = Redis.from_url(settings.redis_url)
    yield SessionStore(client)
    await client.aclose()


async def pay(client: TestClient[Any, Any], **overrides: Any) -> tuple[int, Any, str]:
    body = payment_body(**overrides)
    answer = await client.post("/payment_sessions", json=body, headers=shopify_headers())
    return answer.status, await answer.json(), str(body["id"])


async def test_a_test_payment_for_a_live_account_sends_the_buyer_back_and_is_queued_at_once(
    client: TestClient[Any, Any], store: SessionStore, inspect: redis.Redis
) -> None:
    status, body, session_id = await pay(client, test=True)

    assert (status, body) == (201, {"redirect_url": CANCEL})
    session = await store.get(session_id)
    assert session is not None
    assert (session.test, session.not_before) == (True, None)
    # The worker rejects it now, rather than wait an hour for a buyer who never comes.
    assert inspect.llen(QUEUE) == 1


async def test_a_test_payment_with_nowhere_to_send_the_buyer_is_refused_and_stores_nothing(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    method = {"type": "offsite", "data": {}}
    status, body, session_id = await pay(client, test=True, payment_method=method)

    assert status == 422
    assert (body["error"]["code"], body["error"]["field"]) == ("test_mode_refused", "test")
    assert not inspect.exists(session_key(session_id))
    assert inspect.llen(QUEUE) == 0


@pytest.mark.parametrize(
    ("connector", "test"),
    [("http", False), ("simulator", True), ("test account", True)],
)
async def test_other_payments_go_to_the_psps_page_and_wait_for_the_buyer(
    aiohttp_client: Any,
    redis_server: LocalRedis,
    inspect: redis.Redis,
    connector: str,
    test: bool,
) -> None:
    overrides: dict[str, Any] = {"connector": connector}
    if connector != "simulator":
        overrides = {"connector": "http", "http_connector_url": "http://psp.invalid"}
    if connector == "test account":
        overrides["http_connector_account"] = "test"
    client = await aiohttp_client(create_app(settings_for(redis_server, **overrides)))

    status, body, _ = await pay(client, test=test)

    assert status == 201
    assert body["redirect_url"].startswith("http://127.0.0.1:8090/pay/")
    assert inspect.llen(QUEUE) == 0


@pytest.mark.parametrize("test", [True, False])
async def test_every_session_shows_whether_it_is_a_test_one(
    client: TestClient[Any, Any], settings: Settings, inspect: redis.Redis, test: bool
) -> None:
    body = capture_body(test=test)
    assert (
        await client.post("/capture_sessions", json=body, headers=shopify_headers())
    ).status == 201

    listed = await (await client.get("/admin/sessions", headers=AUTH)).json()
    assert [s["test"] for s in listed["sessions"]] == [test]
    shown = await (await client.get(f"/admin/sessions/{body['id']}", headers=AUTH)).json()
    assert shown["session"]["test"] is test
    page = await client.get("/admin/dashboard/session", params={"id": body["id"]}, headers=AUTH)
    assert f"<td>test</td><td>{test}</td>" in await page.text()
    rows = await client.get("/admin/dashboard/sessions", headers=AUTH)
    assert ("capture (test)" in await rows.text()) is test

    cli = payhook(settings, "sessions", "show", "--json", "--", body["id"])
    assert json.loads(cli)["session"]["test"] is test
    assert f"            test: {test}\n" in payhook(settings, "sessions", "show", "--", body["id"])
    assert json.loads(payhook(settings, "sessions", "list", "--json"))[0]["test"] is test
    [line] = payhook(settings, "sessions", "list").splitlines()[1:]
    assert line.endswith("  test") is test


def payhook(settings: Settings, *args: str) -> str:
    """`payhook ARGS` as an operator runs it; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=child_environment({"PAYHOOK_REDIS_URL": settings.redis_url}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout
