"""The worker process's event loop and everything that lives on it.

One asyncio loop per process, on its own thread, owns every Redis, HTTP and GraphQL client
and the session consumer (`workers.consumer`), which keeps up to `PAYHOOK_WORKER_CONCURRENCY`
sessions in flight on it. Celery's threads (the sweep task, remote control) hand their
coroutines to the loop and wait (`call`). The runtime is built on first use (or at
`worker_ready`); a warm shutdown drains the consumer, then closes every client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from redis.asyncio import Redis

from config import Settings
from config.event_loop import new_event_loop
from config.tracing import NO_TRACER, Tracer
from redisio.connect import redis_client
from redisio.replication import Replication
from sessions.claims import Claims
from sessions.handoff import Handoffs
from sessions.ledger_store import LedgerStore
from sessions.store import SessionStore
from shops.onboarding import OnboardingStore
from shops.tokens import ShopTokens
from shops.webhook_store import WebhookStore
from transport.celery_app import max_countdown
from transport.messages import TASK_NAMES
from transport.session_queue import SessionQueue
from workers.connectors.base import Connector
from workers.connectors.build import build_connector
from workers.consumer import IDLE_WAIT_SECONDS, SessionConsumer
from workers.lifecycle.kinds import LIFECYCLES
from workers.lifecycle.moves import Policy
from workers.lifecycle.ports import KindLifecycle, Services
from workers.metrics import WorkerMetrics
from workers.onboarding import Onboarder
from workers.retry_policy import RetryPolicy
from workers.shop_webhooks import Step as WebhookStep
from workers.shop_webhooks import WebhookServices, process
from workers.shopify.gateway import GqlShopifyGateway, ShopifyGateway
from workers.shopify.tokens import CachedTokens
from workers.task_events import TaskEvents

T = TypeVar("T")

# The lifecycle each session task message names.
BY_TASK: dict[str, KindLifecycle] = {TASK_NAMES[kind]: each for kind, each in LIFECYCLES.items()}

log = logging.getLogger("payhook.runtime")


def policy(settings: Settings) -> Policy:
    return Policy(
        psp=RetryPolicy(
            settings.psp_retry_ladder,
            settings.psp_max_attempts,
            settings.psp_retry_deadline_seconds,
        ),
        shopify=RetryPolicy(
            settings.shopify_retry_ladder,
            settings.shopify_max_attempts,
            settings.shopify_retry_deadline_seconds,
        ),
        lease_seconds=settings.lease_seconds,
        max_deliveries=settings.max_deliveries,
        confirmation_window_seconds=settings.confirmation_window_seconds,
    )


class Runtime:
    def __init__(
        self,
        settings: Settings,
        handoff: Handoffs,
        metrics: WorkerMetrics,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tracer = tracer
        self.owner = f"payhook-worker:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="payhook-event-loop", daemon=True)
        self._thread.start()
        self.redis: Redis
        self.store: SessionStore
        self.services: Services
        self.webhooks: WebhookServices
        self._connector: Connector
        self._gateway: ShopifyGateway
        self._consumer: SessionConsumer | None = None
        self.onboarder: Onboarder
        self._onboarding: asyncio.Task[int] | None = None
        self.call(self._open(handoff), timeout=30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _open(self, handoff: Handoffs) -> None:
        # Built on the loop that will use them: aiohttp and redis bind to the running loop.
        settings = self.settings
        # A session in flight holds at most two connections at once (its run's call and its
        # lease renewal); the consumer, its acks and the sweeper a few more. Sized so, the
        # pool can never run out, and need not make a command wait for a connection.
        self.redis = redis_client(
            settings,
            connections=2 * settings.worker_concurrency + 16,
            name=self.owner,
            wait_for_connection=False,
        )
        replication = Replication.from_settings(settings)
        self.store = SessionStore(self.redis, handoff, replication=replication)
        self._connector = build_connector(settings, self.redis)
        registry = ShopTokens.from_settings(self.redis, settings)
        tokens = CachedTokens(registry)
        self._gateway = GqlShopifyGateway.from_settings(
            settings,
            tokens,
            connections=settings.worker_concurrency,
            on_token_rejected=tokens.forget,
        )
        self.onboarder = Onboarder.from_settings(
            settings, OnboardingStore(self.redis), self._gateway, registry
        )
        self.services = Services(
            claims=Claims(
                self.redis,
                retention_seconds=settings.retention_seconds,
                replication=replication,
            ),
            connector=self._connector,
            gateway=self._gateway,
            ledger=LedgerStore(self.redis, retention_seconds=settings.ledger_retention_seconds),
            policy=policy(settings),
            clock=time.time,
            step_timeout=settings.run_timeout_seconds,
            buyer_window_seconds=settings.buyer_window_seconds,
            payment_confirmation=settings.payment_confirmation,
            observer=self.metrics,
            tracer=self.tracer,
        )
        self.webhooks = WebhookServices(
            hooks=WebhookStore(
                self.redis,
                handoff,
                replication=replication,
                retention_seconds=settings.retention_seconds,
            ),
            store=self.store,
            tokens=registry,
            policy=RetryPolicy(
                settings.webhook_retry_ladder,
                settings.webhook_max_attempts,
                settings.webhook_retry_deadline_seconds,
            ),
            lease_seconds=settings.lease_seconds,
            max_deliveries=settings.max_deliveries,
            run_timeout=settings.run_timeout_seconds,
            observed=self.metrics.webhook_processed,
        )

    def consume(self, events: TaskEvents | None = None) -> None:
        """Start taking sessions from the queue (once)."""
        self.call(self._consume(events), timeout=30)

    async def _consume(self, events: TaskEvents | None) -> None:
        if self._consumer is not None:
            return
        self._consumer = SessionConsumer(
            SessionQueue(self.redis),
            self.services,
            BY_TASK,
            in_flight=self.settings.worker_concurrency,
            longest_wait=max_countdown(self.settings),
            idle_wait=min(IDLE_WAIT_SECONDS, self.settings.redis_timeout_seconds / 2),
            events=events,
        )
        self._consumer.start()

    def onboard_due(self) -> None:
        """From any thread: send the onboarding asks that are due, in the background, one
        round at a time (a sweep does not wait on Shopify)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._start_onboarding)

    def _start_onboarding(self) -> None:
        if self._onboarding is None or self._onboarding.done():
            self._onboarding = self.loop.create_task(self.onboarder.run_due())
            self._onboarding.add_done_callback(_onboarding_ended)

    def process_webhook(self, webhook_id: str, timeout: float) -> WebhookStep:
        """From a Celery thread: one delivery of a Shopify webhook's task, on the loop."""
        return self.call(process(webhook_id, self.webhooks), timeout)

    def stop_taking(self) -> None:
        """From any thread: take no further session message."""
        if self._consumer is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._consumer.stop_taking)

    def in_flight(self) -> list[dict[str, Any]]:
        return self.call(self._in_flight(), timeout=10)

    async def _in_flight(self) -> list[dict[str, Any]]:
        if self._consumer is None:
            return []
        return [
            {
                "session_id": held.delivery.session_id,
                "task": held.delivery.task,
                "since": held.since,
                "runs": held.runs,
                "waiting_until": held.waiting_until,
            }
            for held in self._consumer.running()
        ]

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the loop and wait for it (from any thread but the loop's)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def _close(self) -> None:
        if self._consumer is not None:
            # Running sessions end their run (each bounded by the run timeout); the messages
            # of the ones that cannot go back on the queue for another worker.
            await self._consumer.drain(self.settings.run_timeout_seconds)
        if self._onboarding is not None and not self._onboarding.done():
            # Bounded by the Shopify timeout; an ask cut short is due again after its hold.
            await asyncio.wait([self._onboarding], timeout=self.settings.shopify_timeout_seconds)
            self._onboarding.cancel()
        for close in (self._connector.close, self._gateway.close):
            try:
                await close()
            except Exception:  # closing must go on whatever one client says
                log.exception("closing a client failed")
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()

    def close(self) -> None:
        """Close every client, then stop the loop; safe to call more than once."""
        if self.loop.is_closed():
            return
        try:
            self.call(self._close(), timeout=self.settings.run_timeout_seconds + 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


def _onboarding_ended(task: asyncio.Task[int]) -> None:
    # A round that could not even take its shops (Redis away): the next sweep tries again.
    if not task.cancelled() and task.exception() is not None:
        log.error("onboarding round failed", extra={"error": repr(task.exception())})


class RuntimeHolder:
    """Builds the runtime once per process, on first use from whichever thread comes first."""

    def __init__(self, settings: Settings, handoff: Handoffs, tracer: Tracer = NO_TRACER) -> None:
        self._settings = settings
        self._handoff = handoff
        self._tracer = tracer
        # One registry per process, kept across runtimes so counters never go back.
        self.metrics = WorkerMetrics(settings.connector)
        self._runtime: Runtime | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():
                self._runtime = Runtime(self._settings, self._handoff, self.metrics, self._tracer)
                self._pid = os.getpid()
            return self._runtime

    def stop_taking(self) -> None:
        with self._lock:
            if self._runtime is not None and self._pid == os.getpid():
                self._runtime.stop_taking()

    def in_flight(self) -> list[dict[str, Any]]:
        with self._lock:
            runtime = self._runtime if self._pid == os.getpid() else None
        return runtime.in_flight() if runtime is not None else []

    def close(self) -> None:
        with self._lock:
            runtime, self._runtime = self._runtime, None
            if runtime is not None and self._pid == os.getpid():
                runtime.close()
