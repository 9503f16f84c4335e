"""Guessing the admin token is stopped: wrong tokens are counted per client and in all, in
Redis, across web processes; past either budget the answer is 429 with Retry-After and no
token is compared, the right one included. The real app (two of them where it matters) on
a real redis-server; clients told apart by a trusted proxy's `X-Forwarded-For`."""

from __future__ import annotations

import logging
from ipaddress import ip_network
from typing import Any

import pytest
import redis
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient

from config import Settings
from ops.redis_server import LocalRedis
from webhook.app import create_app

DB = 4
TOKEN = "attempts-admin-token-0123456789abcdef"


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        admin_token=TOKEN,
        admin_attempts_per_client=3,
        admin_attempts_in_all=5,
        trusted_proxies=(ip_network("127.0.0.1/32"),),
    )


async def web(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings), cookie_jar=DummyCookieJar()
    )
    return client


def forwarded_from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def guess(client: TestClient[Any, Any], token: str, address: str) -> int:
    answer = await client.post(
        "/admin/login",
        data={"token": token, "next": "/admin"},
        headers=forwarded_from(address),
        allow_redirects=False,
    )
    return answer.status


async def test_a_brute_force_on_the_login_form_is_stopped_the_right_token_waiting_too(
    aiohttp_client: Any,
    settings: Settings,
    inspect: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await web(aiohttp_client, settings)
    attacker = "203.0.113.7"
    assert [await guess(client, f"guess-{i}", attacker) for i in range(3)] == [401] * 3

    caplog.set_level(logging.WARNING, logger="payhook.admin")
    answer = await client.post(
        "/admin/login",
        data={"token": "guess-4"},
        headers=forwarded_from(attacker),
        allow_redirects=False,
    )
    assert answer.status == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert "Too many wrong tokens" in await answer.text()
    # Not compared at all while the budget is spent: the right token is refused as well,
    # and the bearer header is no way around it.
    assert await guess(client, TOKEN, attacker) == 429
    api = await client.get(
        "/admin/sessions", headers={**forwarded_from(attacker), "Authorization": f"Bearer {TOKEN}"}
    )
    assert api.status == 429
    assert (await api.json())["error"]["code"] == "too_many_attempts"
    assert any(r.getMessage() == "admin token attempts refused" for r in caplog.records)
    # Another client still logs in.
    assert await guess(client, TOKEN, "198.51.100.20") == 303


async def test_wrong_tokens_from_many_clients_and_web_processes_share_one_budget(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    first, second = await web(aiohttp_client, settings), await web(aiohttp_client, settings)
    wrong = {"Authorization": "Bearer not-the-token"}
    statuses = []
    for index in range(5):
        client = first if index % 2 else second
        answer = await client.get(
            "/admin/sessions", headers={**wrong, **forwarded_from(f"192.0.2.{index + 1}")}
        )
        statuses.append(answer.status)
    assert statuses == [401] * 5

    fresh = await first.get("/admin/sessions", headers={**wrong, **forwarded_from("192.0.2.99")})
    assert fresh.status == 429
    assert await guess(second, TOKEN, "192.0.2.100") == 429


async def test_guesses_at_the_metrics_spend_the_budget_of_the_console_and_back(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    # `/metrics` is the web app's route, the login and the admin API the console's (a
    # sub-app): one budget all the same, so neither is a way around the other.
    client = await web(aiohttp_client, settings)
    attacker = forwarded_from("203.0.113.9")
    wrong = {**attacker, "Authorization": "Bearer not-the-token"}
    assert [(await client.get("/metrics", headers=wrong)).status for _ in range(3)] == [401] * 3
    assert await guess(client, TOKEN, "203.0.113.9") == 429
    refused = await client.get("/metrics", headers={**attacker, "Authorization": f"Bearer {TOKEN}"})
    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "too_many_attempts"

    inspect.flushdb()  # the budgets refilled
    other = "198.51.100.30"
    assert [await guess(client, f"guess-{i}", other) for i in range(3)] == [401] * 3
    blocked = await client.get(
        "/metrics", headers={**forwarded_from(other), "Authorization": f"Bearer {TOKEN}"}
    )
    assert blocked.status == 429
