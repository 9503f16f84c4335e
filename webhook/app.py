"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from celery import Celery
from redis.asyncio import Redis

from config import Settings
from config.tracing import NO_TRACER, Tracer
from redisio.connect import redis_client
from redisio.replication import Replication
from redisio.topology import SentinelPeers
from sessions.models import Kind
from sessions.store import SessionStore
from shops.tokens import token_cipher
from shops.webhook_store import WebhookStore
from transport.celery_app import create_celery
from transport.messages import CeleryHandoff
from webhook import (
    buyer_return,
    confirmations,
    health,
    psp_callbacks,
    sessions,
    shopify_webhooks,
)
from webhook.admin_attempts import AdminAttempts
from webhook.auth import ShopifyAuth, shopify_only
from webhook.console.app import create_console
from webhook.errors import json_errors
from webhook.install import add_install_routes, install_resources
from webhook.keys import (
    ADMIN_ATTEMPTS,
    GAUGES,
    METRICS,
    RATE_LIMIT,
    REDIS,
    SENTINELS,
    SETTINGS,
    STORE,
    TOKEN_CHECK,
    TRACER,
    WEBHOOKS,
)
from webhook.metrics import WebMetrics
from webhook.operator import operator_listener
from webhook.rate_limit import RateLimit
from webhook.scrape import GAUGES_FRESH_SECONDS, Coalesced, read_gauges
from webhook.token_check import TokenCheck
from webhook.tracing import traced

# Redis connections per web process: requests wait briefly for one rather than open more.
WEB_REDIS_CONNECTIONS = 64
# The extension's `confirmation_callback_url` points here.
CONFIRMATION_ROUTE = "/payment_confirmations"


def create_app(
    settings: Settings,
    *,
    redis: Redis | None = None,
    celery: Celery | None = None,
    tracer: Tracer = NO_TRACER,
) -> web.Application:
    """Build the web app. `redis` and `celery` default to the ones `settings` names; the
    entry point passes a `tracer` when traces are on (`config.tracing.build_tracer`)."""
    # Shopify's requests: the sessions and its answer to a payment confirmation.
    shopify_routes = frozenset({*(f"/{kind.value}_sessions" for kind in Kind), CONFIRMATION_ROUTE})
    # Outermost, so the server span sees the status every other middleware settled on.
    # Off, the middleware is not there at all.
    tracing = [traced(tracer)] if tracer.enabled else []
    app = web.Application(
        middlewares=[
            *tracing,
            json_errors,
            shopify_only(ShopifyAuth.from_settings(settings), shopify_routes),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = WebMetrics()
    app[TRACER] = tracer
    app[buyer_return.WAITING] = buyer_return.Waiting()
    # Celery only renders task messages here; the web process never opens a broker connection.
    handoff = CeleryHandoff(celery if celery is not None else create_celery(settings), tracer)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        client = redis
        if client is None:
            client = redis_client(settings, connections=WEB_REDIS_CONNECTIONS, name="payhook-web")
        app[REDIS] = client
        gauges = Coalesced(lambda: read_gauges(client), fresh_for=GAUGES_FRESH_SECONDS)
        app[GAUGES] = gauges
        replication = Replication.from_settings(settings)
        app[STORE] = SessionStore(client, handoff, replication=replication)
        app[WEBHOOKS] = WebhookStore(
            client,
            handoff,
            replication=replication,
            retention_seconds=settings.retention_seconds,
        )
        app[TOKEN_CHECK] = TokenCheck(
            client,
            token_cipher(settings.token_key_list),
            fallback=settings.shopify_access_token is not None,
        )
        app[ADMIN_ATTEMPTS] = AdminAttempts(client, settings)
        sentinels = app[SENTINELS] = SentinelPeers(settings) if settings.redis_sentinels else None
        app[RATE_LIMIT] = None
        if settings.shop_rate_limit is not None:
            app[RATE_LIMIT] = RateLimit(
                client,
                limit=settings.shop_rate_limit,
                window_seconds=settings.shop_rate_window_seconds,
            )
        yield
        await gauges.close()
        if sentinels is not None:
            await sentinels.close()
        if redis is None:
            await client.aclose()
            await client.connection_pool.disconnect()

    app.cleanup_ctx.append(resources)
    # After `resources`: the install's stores use its Redis client.
    app.cleanup_ctx.append(install_resources)
    if settings.operator_port is not None:
        # After `resources`: it serves their Redis client, and stops before it closes.
        app.cleanup_ctx.append(operator_listener)
    for kind in Kind:
        app.router.add_post(f"/{kind.value}_sessions", sessions.session_endpoint(kind))
    app.router.add_post(CONFIRMATION_ROUTE, confirmations.payment_confirmation)
    app.router.add_post(psp_callbacks.SIMULATOR_PATH, psp_callbacks.simulator_payment)
    # The buyer's browser, back from the PSP's page: no client certificate, no token.
    app.router.add_get(buyer_return.PATH, buyer_return.buyer_return)
    # Signed by Shopify over the body; no client certificate (not a session route).
    app.router.add_post(shopify_webhooks.PATH, shopify_webhooks.shopify_webhook)
    # Open to load balancers: liveness and the readiness verdict. The readiness detail and
    # the metrics need the admin token here; the operator listener serves them openly.
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.public_readyz)
    app.router.add_get("/metrics", health.public_metrics)
    add_install_routes(app)
    # The operator's console: the admin API and the dashboard, over this app's resources.
    app.add_subapp("/admin", create_console())
    return app
