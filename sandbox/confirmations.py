"""Shopify's confirmation request, sent by the sandbox after a `paymentSessionConfirm`.

Once Shopify has taken the mutation and its checks ran, it POSTs `{"gid",
"confirmation_result"}` to the session's `confirmation_callback_url`, with its usual headers,
and retries an answer that is not 2xx a few times, as it does with every request to the app.
The sandbox does the same through `sandbox.shopify_side.post_session` (the way it plays
Shopify towards the app), in the background once the mutation's answer is on its way, and
logs every delivery (`GET /_sandbox/confirmations`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from sandbox.shopify_side import post_session

# Shopify's retries of a request the app did not take: a short, bounded ladder.
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
TIMEOUT_SECONDS = 5.0


@dataclass
class Delivery:
    """One confirmation request and what became of it (`status` 0: never answered)."""

    gid: str
    url: str
    confirmation_result: bool
    at: float
    status: int | None = None
    attempts: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ConfirmationSender:
    retry_delays: tuple[float, ...] = RETRY_DELAYS
    wall_clock: Callable[[], float] = time.time
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def send(self, *, gid: str, url: str, confirmed: bool, shop: str, api_version: str) -> None:
        """Deliver in the background (on the running loop); the call log has it at once."""
        delivery = Delivery(gid, url, confirmed, self.wall_clock())
        self.deliveries.append(delivery)
        task = asyncio.create_task(self._deliver(delivery, shop, api_version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery, shop: str, api_version: str) -> None:
        body = {"gid": delivery.gid, "confirmation_result": delivery.confirmation_result}
        try:
            async with aiohttp.ClientSession() as http:
                delivery.status, delivery.attempts = await post_session(
                    http,
                    url=delivery.url,
                    body=body,
                    shop=shop,
                    api_version=api_version,
                    retry_delays=self.retry_delays,
                    timeout_seconds=TIMEOUT_SECONDS,
                )
        except (aiohttp.ClientError, TimeoutError):
            # Nobody answered, even the last attempt: Shopify gives up as well.
            delivery.status, delivery.attempts = 0, len(self.retry_delays) + 1

    def select(self, gid: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if gid in (None, d.gid)]

    def clear(self) -> None:
        self.deliveries.clear()

    async def close(self) -> None:
        """Stop what is still being delivered (the sandbox is shutting down)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
