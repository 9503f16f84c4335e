"""The services a worker process uses, built once per process on its own event loop.

Celery's prefork pool forks children; each child builds its own `Runtime` on first use (the
pid check) so no Redis or HTTP connection is ever shared across a fork.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from redis.asyncio import Redis

from config import Settings
from sessions.ledger_store import LedgerStore
from sessions.shops import ShopTokens
from sessions.store import SessionStore
from workers.connectors import build_connector
from workers.lifecycle.runner import Services
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import GqlShopifyGateway

T = TypeVar("T")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(settings.redis_url)
        self.store = SessionStore(self.redis)
        fallback = settings.shopify_access_token
        tokens = ShopTokens(self.redis, fallback.get_secret_value() if fallback else None)
        self.services = Services(
            store=self.store,
            connector=build_connector(settings, self.redis),
            gateway=GqlShopifyGateway(
                url_template=settings.shopify_graphql_url,
                api_version=settings.shopify_api_version,
                tokens=tokens,
                timeout_seconds=settings.shopify_timeout_seconds,
            ),
            psp_policy=RetryPolicy(
                settings.psp_retry_ladder,
                settings.psp_max_attempts,
                settings.psp_retry_deadline_seconds,
            ),
            shopify_policy=RetryPolicy(
                settings.shopify_retry_ladder,
                settings.shopify_max_attempts,
                settings.shopify_retry_deadline_seconds,
            ),
            max_deliveries=settings.max_deliveries,
            ledger=LedgerStore(self.redis),
            buyer_window_seconds=settings.buyer_window_seconds,
            lease_seconds=settings.lease_seconds,
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            clock=time.time,
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.services.connector.close())
        self.run(self.services.gateway.close())
        self.run(self.redis.aclose())
        self.loop.close()


class RuntimeHolder:
    """Builds the runtime lazily, once per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runtime: Runtime | None = None
        self._pid = 0

    def get(self) -> Runtime:
        if self._runtime is None or self._pid != os.getpid():
            self._runtime = Runtime(self._settings)
            self._pid = os.getpid()
        return self._runtime
