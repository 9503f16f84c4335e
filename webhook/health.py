"""Liveness, readiness and metrics endpoints for operators and orchestrators.

On the operator listener (`webhook.operator`) each shows everything. On the listener Shopify
reaches, `/healthz` and a bare readiness verdict stay open for load balancers, while the
metrics and the readiness detail (checks, the Redis topology, durability warnings) need
`Authorization: Bearer <PAYHOOK_ADMIN_TOKEN>`.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from redis.asyncio import Redis

from redisio.durability import durability_warnings
from redisio.topology import read_topology
from webhook.admin_token import bearer_ok, require_admin
from webhook.keys import GAUGES, METRICS, REDIS, SENTINELS, SETTINGS
from webhook.scrape import SCRAPE_TIMEOUT_SECONDS


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _checks(request: web.Request) -> dict[str, str]:
    settings = request.app[SETTINGS]
    checks: dict[str, str] = {}
    checks["redis"] = await _ping(request.app[REDIS])
    # Intake queues every session in the session Redis: no other broker can be ready.
    checks["broker"] = checks["redis"] if settings.broker_is_store else "error: not the store"
    return checks


async def readyz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    checks = await _checks(request)
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, object] = {"ready": ready, "checks": checks}
    if ready:
        # Not a reason to refuse traffic, but an operator must hear of it.
        warnings = await durability_warnings(request.app[REDIS])
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                topology = await read_topology(request.app[REDIS], settings, request.app[SENTINELS])
                body["topology"] = topology.as_json()
                warnings.extend(topology.warnings())
        body["warnings"] = warnings
    return web.json_response(body, status=200 if ready else 503)


async def public_readyz(request: web.Request) -> web.Response:
    """The verdict for anyone; the detail for the admin token only."""
    token = request.app[SETTINGS].admin_token
    if token is not None and await bearer_ok(request, token.get_secret_value().encode()):
        return await readyz(request)
    ready = all(value == "ok" for value in (await _checks(request)).values())
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def _ping(redis: Redis) -> str:
    try:
        await asyncio.wait_for(redis.ping(), timeout=2)
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return f"error: {type(exc).__name__}"
    return "ok"


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    # Metrics must render even while Redis is away; the gauges then keep their last value.
    with contextlib.suppress(Exception):
        registry.show(await request.app[GAUGES].get())
    return web.Response(body=registry.render(), content_type="text/plain", charset="utf-8")


async def public_metrics(request: web.Request) -> web.Response:
    await require_admin(request)
    return await metrics(request)
