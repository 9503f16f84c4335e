"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from celery import Celery
from redis.asyncio import Redis

from config import Settings
from sessions.models import Kind
from sessions.store import SessionStore
from webhook import health, psp_callbacks, sessions
from webhook.admin import add_admin_routes
from webhook.errors import json_errors
from webhook.keys import CELERY, METRICS, REDIS, SETTINGS, STORE
from webhook.metrics import WebMetrics
from workers.celery_app import create_celery


def create_app(
    settings: Settings, *, redis: Redis | None = None, celery: Celery | None = None
) -> web.Application:
    """Build the web app. `redis` and `celery` default to the ones `settings` names."""
    app = web.Application(middlewares=[json_errors], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = WebMetrics()
    # Used only to render task messages; the web process never opens a broker connection.
    app[CELERY] = celery if celery is not None else create_celery(settings)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        client = redis if redis is not None else Redis.from_url(settings.redis_url)
        app[REDIS] = client
        app[STORE] = SessionStore(client)
        yield
        if redis is None:
            await client.aclose()

    app.cleanup_ctx.append(resources)
    for kind in Kind:
        app.router.add_post(f"/{kind.value}_sessions", sessions.session_endpoint(kind))
    app.router.add_post("/psp/simulator/payments/{session_id}", psp_callbacks.simulator_payment)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    add_admin_routes(app)
    return app
