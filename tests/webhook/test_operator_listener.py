"""Metrics and the detailed readiness belong to operators: the Shopify-facing listener shows
them only to the admin bearer token, and `PAYHOOK_OPERATOR_PORT` opens a listener of their
own. The real app, both listeners over real TCP, on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp.test_utils import TestClient

from config import Settings
from config.settings import child_environment
from ops.redis_server import LocalRedis, free_port
from tests.factories import capture_body, shopify_headers
from webhook.app import create_app

DB = 13
TOKEN = "operator-test-admin-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}",
        shopify_access_token="shpat_fallback_for_every_shop",
        admin_token=TOKEN,
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer not-the-token"}, 401), (BEARER, 200)],
    ids=["no token", "wrong token", "admin token"],
)
async def test_the_shopify_listener_shows_metrics_only_to_the_admin_token(
    client: TestClient[Any, Any], headers: dict[str, str], status: int
) -> None:
    answer = await client.get("/metrics", headers=headers)
    assert answer.status == status
    text = await answer.text()
    assert ("payhook_sessions_received_total" in text) is (status == 200)


async def test_without_an_admin_token_the_shopify_listener_has_no_metrics(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"admin_token": None})))
    assert (await client.get("/metrics")).status == 404
    assert (await client.get("/healthz")).status == 200


async def test_the_shopify_listener_tells_anyone_only_whether_it_is_ready(
    client: TestClient[Any, Any],
) -> None:
    # A load balancer needs the verdict, not the Redis topology behind it.
    plain = await client.get("/readyz")
    assert plain.status == 200
    assert await plain.json() == {"ready": True}
    detailed = await (await client.get("/readyz", headers=BEARER)).json()
    assert detailed["ready"] is True
    assert detailed["checks"] == {"redis": "ok", "broker": "ok"}
    assert "topology" in detailed
    assert (await client.get("/healthz")).status == 200


async def test_an_unready_shopify_listener_still_says_so_to_anyone(aiohttp_client: Any) -> None:
    away = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(away))
    answer = await client.get("/readyz")
    assert answer.status == 503
    assert await answer.json() == {"ready": False}


async def test_the_operator_listener_serves_metrics_readiness_and_health_and_no_sessions(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    port = free_port()
    app = create_app(settings.model_copy(update={"admin_token": None, "operator_port": port}))
    client = await aiohttp_client(app)
    base = f"http://127.0.0.1:{port}"
    sent = await client.post("/capture_sessions", json=capture_body(), headers=shopify_headers())
    assert sent.status == 201
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/metrics") as answer:
            assert answer.status == 200
            text = await answer.text()
        # One registry: what the Shopify listener counted is what the operator sees.
        assert 'payhook_sessions_received_total{kind="capture",result="created"} 1.0' in text
        assert "payhook_sessions_unfinished 1.0" in text
        async with http.get(f"{base}/readyz") as answer:
            ready = await answer.json()
        assert ready["ready"] is True
        assert {"checks", "topology", "warnings"} <= set(ready)
        async with http.get(f"{base}/healthz") as answer:
            assert await answer.json() == {"status": "ok"}
        async with http.post(
            f"{base}/capture_sessions", json=capture_body(), headers=shopify_headers()
        ) as answer:
            assert answer.status == 404
        async with http.get(f"{base}/admin") as answer:
            assert answer.status == 404


def _llen_calls(inspect: redis.Redis) -> int:
    stats: dict[str, Any] = inspect.info("commandstats")
    return int(stats.get("cmdstat_llen", {}).get("calls", 0))


async def test_concurrent_scrapes_share_one_read_of_redis(
    client: TestClient[Any, Any], inspect: redis.Redis
) -> None:
    # Each computation of the Redis gauges asks for the queue's length once.
    before = _llen_calls(inspect)
    answers = await asyncio.gather(*(client.get("/metrics", headers=BEARER) for _ in range(8)))
    assert {answer.status for answer in answers} == {200}
    assert _llen_calls(inspect) - before == 1
    # A scrape a moment later reads the same figures; past a second they are read again.
    assert (await client.get("/metrics", headers=BEARER)).status == 200
    assert _llen_calls(inspect) - before == 1
    await asyncio.sleep(1.1)
    assert (await client.get("/metrics", headers=BEARER)).status == 200
    assert _llen_calls(inspect) - before == 2


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


@contextlib.contextmanager
def serving(redis_server: LocalRedis, **settings: str) -> Iterator[subprocess.Popen[str]]:
    """`payhook serve` as a process, once its /healthz answers; stopped on leaving."""
    env = child_environment(
        {"PAYHOOK_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{DB}", **settings}
    )
    env.pop("PAYHOOK_ADMIN_TOKEN", None)
    env.pop("PAYHOOK_OPERATOR_PORT", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "ops", "serve"],
        env={**env, **settings},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if _fetch(f"http://127.0.0.1:{settings['PAYHOOK_PORT']}/healthz")[0] == 200:
                    break
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "payhook serve did not come up"
            time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_payhook_serve_opens_the_operator_listener(redis_server: LocalRedis) -> None:
    port, operator = free_port(), free_port()
    with serving(redis_server, PAYHOOK_PORT=str(port), PAYHOOK_OPERATOR_PORT=str(operator)):
        status, body = _fetch(f"http://127.0.0.1:{operator}/metrics")
        assert status == 200
        assert b"payhook_sessions_unfinished" in body
        assert _fetch(f"http://127.0.0.1:{port}/metrics")[0] == 404
        assert _fetch(f"http://127.0.0.1:{operator}/readyz")[0] == 200


def test_payhook_serve_warns_when_nobody_can_read_its_metrics(redis_server: LocalRedis) -> None:
    with serving(redis_server, PAYHOOK_PORT=str(free_port())) as server:
        server.terminate()
        _, logged = server.communicate(timeout=20)
    assert "PAYHOOK_OPERATOR_PORT" in logged
