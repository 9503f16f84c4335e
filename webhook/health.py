"""Liveness, readiness and metrics endpoints for operators and orchestrators."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web
from redis.asyncio import Redis

from sessions.durability import durability_warnings
from sessions.stats import due_summary, failed_by_kind
from sessions.topology import read_topology
from transport.messages import QUEUE
from webhook.keys import METRICS, REDIS, SETTINGS

# Prometheus gives up on a scrape after 10 s by default; the Redis part stays well inside.
SCRAPE_TIMEOUT_SECONDS = 3.0


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    checks: dict[str, str] = {}
    checks["redis"] = await _ping(request.app[REDIS])
    # Intake queues every session in the session Redis: no other broker can be ready.
    checks["broker"] = checks["redis"] if settings.broker_is_store else "error: not the store"
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, object] = {"ready": ready, "checks": checks}
    if ready:
        # Not a reason to refuse traffic, but an operator must hear of it.
        warnings = await durability_warnings(request.app[REDIS])
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                topology = await read_topology(request.app[REDIS], settings)
                body["topology"] = topology.as_json()
                warnings.extend(topology.warnings())
        body["warnings"] = warnings
    return web.json_response(body, status=200 if ready else 503)


async def _ping(redis: Redis) -> str:
    try:
        await asyncio.wait_for(redis.ping(), timeout=2)
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return f"error: {type(exc).__name__}"
    return "ok"


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    redis = request.app[REDIS]
    # Metrics must render even while Redis is away; the gauges then keep their last value.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
            registry.queue.set(await redis.llen(QUEUE))
            registry.show(await due_summary(redis, time.time()), await failed_by_kind(redis))
    return web.Response(body=registry.render(), content_type="text/plain", charset="utf-8")
