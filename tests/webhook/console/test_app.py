"""The console mounted at /admin answers as a route of the web app: the web app's body limit,
its JSON refusals and its server span, named by the route's whole pattern. The real app on a
real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from aiohttp import DummyCookieJar
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import Settings
from config.otel import OtelTracer
from ops.redis_server import LocalRedis
from webhook.app import create_app

DB = 5
TOKEN = "console-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(redis_server: LocalRedis) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/{DB}", admin_token=TOKEN)


async def test_a_form_past_the_web_apps_body_limit_is_refused(
    client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    # The web app's limit (64 KiB by default), not aiohttp's own 1 MiB: the app that accepts
    # the request reads it, whichever app's route it is.
    padding = "x" * (settings.max_body_bytes + 1)
    answer = await client.post(
        "/admin/login", data={"token": TOKEN, "padding": padding}, allow_redirects=False
    )
    assert answer.status == 413
    assert answer.content_type == "application/json"
    # The same refusal as a JSON body past the limit.
    assert (await answer.json())["error"]["code"] == "payload_too_large"
    assert "Set-Cookie" not in answer.headers


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/admin/nothing-here", 404, "not_found"),
        ("GET", "/admin/dashboard", 404, "not_found"),
        ("GET", "/admin/replay", 405, "method_not_allowed"),
        ("DELETE", "/admin/sessions", 405, "method_not_allowed"),
    ],
)
async def test_what_the_console_has_no_route_for_is_the_json_refusal(
    client: Any, method: str, path: str, status: int, code: str
) -> None:
    answer = await client.request(method, path, headers=AUTH, allow_redirects=False)
    assert answer.status == status
    assert (await answer.json())["error"]["code"] == code


async def test_a_console_request_is_one_server_span_named_by_its_whole_route(
    aiohttp_client: Any, settings: Settings, inspect: redis.Redis
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, tracer=OtelTracer(provider))
    client = await aiohttp_client(app, cookie_jar=DummyCookieJar())

    assert (await client.get("/admin/sessions/some-id", headers=AUTH)).status == 404
    assert (await client.get("/admin", headers=AUTH)).status == 200
    names = [span.name for span in exporter.get_finished_spans()]
    assert names == ["GET /admin/sessions/{session_id}", "GET /admin"]
