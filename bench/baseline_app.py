"""The baselines intake is measured against, each an aiohttp app on uvloop (as payhook serve):

    python -m bench.baseline_app PORT [bare|floor|naive] [REDIS_URL]

- bare: answers 201 {} and does nothing else (what aiohttp itself costs);
- floor: the durable-ack floor, the least a handler that promises a retry-safe 201 must do:
  parse and validate the body with payhook's own request model, then one Redis `SET NX`
  of the body under its id;
- naive: validate, then publish the task with Celery's `send_task` (`apply_async`), as a
  handler written without payhook's one-Lua-call design would.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError
from redis.asyncio import BlockingConnectionPool, Redis

from config.event_loop import new_event_loop
from sessions.requests import CaptureSessionRequest

Handler = Callable[[web.Request], Awaitable[web.Response]]
CREATED = b"{}"


def _created() -> web.Response:
    return web.Response(body=CREATED, status=201, content_type="application/json")


async def bare(request: web.Request) -> web.Response:
    await request.read()
    return _created()


def _validated(raw: bytes) -> CaptureSessionRequest | None:
    try:
        return CaptureSessionRequest.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


def floor(redis_url: str, app: web.Application) -> Handler:
    # payhook's own pool shape: at most 64 connections, a request waits for a free one.
    redis = Redis(connection_pool=BlockingConnectionPool.from_url(redis_url, max_connections=64))

    async def close(app: web.Application) -> AsyncIterator[None]:
        yield
        await redis.aclose()

    app.cleanup_ctx.append(close)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        parsed = _validated(raw)
        if parsed is None:
            return web.json_response({"error": "invalid"}, status=422)
        await redis.set(f"floor:{parsed.id}", raw, nx=True)
        return _created()

    return handle


def naive(redis_url: str) -> Handler:
    from celery import Celery

    celery = Celery("naive", broker=redis_url)

    async def handle(request: web.Request) -> web.Response:
        parsed = _validated(await request.read())
        if parsed is None:
            return web.json_response({"error": "invalid"}, status=422)
        # Blocks the event loop for the publish, as apply_async in a handler does.
        celery.send_task("payhook.capture", args=(parsed.id,), queue="naive")
        return _created()

    return handle


def main() -> None:
    port = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "bare"
    app = web.Application()
    handler: Handler = bare
    if mode == "floor":
        handler = floor(sys.argv[3], app)
    elif mode == "naive":
        handler = naive(sys.argv[3])
    app.router.add_post("/capture_sessions", handler)
    app.router.add_get("/healthz", lambda _: _ok())
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        reuse_port=True,
        loop=new_event_loop(),
    )


async def _ok() -> web.Response:
    return web.Response(text="ok")


if __name__ == "__main__":
    main()
