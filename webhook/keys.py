"""Typed application keys: what the web app holds for its handlers."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from config import Settings
from config.tracing import Tracer
from redisio.topology import SentinelPeers
from sessions.store import SessionStore
from shops.webhook_store import WebhookStore
from webhook.admin_attempts import AdminAttempts
from webhook.metrics import WebMetrics
from webhook.rate_limit import RateLimit
from webhook.scrape import Coalesced, GaugeReading
from webhook.token_check import TokenCheck

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", SessionStore)
METRICS = web.AppKey("metrics", WebMetrics)
TRACER: web.AppKey[Tracer] = web.AppKey("tracer")
# None when PAYHOOK_SHOP_RATE_LIMIT is unset.
RATE_LIMIT: web.AppKey[RateLimit | None] = web.AppKey("rate_limit")
ADMIN_ATTEMPTS = web.AppKey("admin_attempts", AdminAttempts)
# With sentinels configured: the clients `/readyz` asks them through, kept for the app's life.
SENTINELS: web.AppKey[SentinelPeers | None] = web.AppKey("sentinels")
# The Redis-derived gauges, read once for the scrapes that ask together (webhook.scrape).
GAUGES: web.AppKey[Coalesced[GaugeReading]] = web.AppKey("gauges")
# Whether a shop's sessions could be reported (`webhook.token_check`).
TOKEN_CHECK = web.AppKey("token_check", TokenCheck)
# Shopify's own webhooks (`webhook.shopify_webhooks`).
WEBHOOKS = web.AppKey("webhooks", WebhookStore)
