"""The operator listener: `/metrics`, the detailed `/readyz` and `/healthz` on an address of
their own (`PAYHOOK_OPERATOR_HOST`:`PAYHOOK_OPERATOR_PORT`, plain HTTP, no authentication).

It serves the same counters, Redis client and gauge reads as the app Shopify reaches, and
nothing else: no session route, no admin API, no dashboard. Keep it on loopback or an
internal network that only Prometheus and the orchestrator reach.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from webhook import health
from webhook.errors import json_errors
from webhook.keys import GAUGES, METRICS, REDIS, SENTINELS, SETTINGS

log = logging.getLogger("payhook.webhook")


def create_operator_app(public: web.Application) -> web.Application:
    """The operator routes over `public`'s state; built once `public` has its Redis client."""
    app = web.Application(middlewares=[json_errors])
    app[SETTINGS] = public[SETTINGS]
    app[REDIS] = public[REDIS]
    app[METRICS] = public[METRICS]
    app[GAUGES] = public[GAUGES]
    app[SENTINELS] = public[SENTINELS]
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    return app


async def operator_listener(public: web.Application) -> AsyncIterator[None]:
    """A `cleanup_ctx` of the public app: the operator listener lives as long as it does."""
    settings = public[SETTINGS]
    runner = web.AppRunner(create_operator_app(public), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.operator_host, settings.operator_port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("operator listener", extra={"address": site.name})
    yield
    await runner.cleanup()
