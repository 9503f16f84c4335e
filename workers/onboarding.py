"""Onboarding: tell Shopify each installed shop's payments app is ready
(`paymentsAppConfigure`), durably.

An install (or `payhook shops configure`) stores an ask and makes the shop due
(`shops.onboarding`). Each sweep a worker runs (`workers.tasks`) starts `Onboarder.run_due`
on the worker's event loop without waiting for it: it takes the due shops, each held for
`hold_for` so no other sweep takes it meanwhile, and sends each ask through the Shopify
gateway the reports use, with the shop's token read from the registry afresh. What comes
back is decided by `decide`, a plain function, on the Shopify retry ladder:

- accepted → `configured`;
- `userErrors` → `refused`, with every userError kept for the operator;
- no token, a token Shopify refuses, another 4xx → `failed`, with the reason;
- a 5xx, 429, throttle or transport error → due again after the ladder's wait, until its
  attempt cap and deadline have both passed, then `failed`.

A worker that dies mid-call leaves its shops held; they are due again once the hold passes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from pydantic import ValidationError

from config import Settings
from errors import PayhookError, RetryableError, ShopifyUserError
from shops.onboarding import Ask, Attempt, OnboardingState, OnboardingStore, UserError
from shops.tokens import ShopTokens
from workers.retry_policy import RetryPolicy
from workers.shopify.gateway import ShopifyGateway
from workers.shopify.mutations import configure_app

log = logging.getLogger("payhook.onboarding")

# Shops one sweep sends at once; more wait for the next sweep.
BATCH = 50


def _user_errors(error: ShopifyUserError) -> tuple[UserError, ...]:
    found = []
    for raw in error.user_errors:
        try:
            found.append(UserError.model_validate(raw))
        except ValidationError:
            found.append(UserError(message=str(raw)[:300]))
    return tuple(found)


def decide(
    ask: Ask,
    error: PayhookError | None,
    policy: RetryPolicy,
    *,
    now: float,
    rand: Callable[[], float] = random.random,
) -> Attempt:
    """What one sending of `ask` came to, `error` being what the gateway raised (None: taken)."""
    if error is None:
        return Attempt(OnboardingState.CONFIGURED)
    if isinstance(error, ShopifyUserError) and error.user_errors:
        return Attempt(OnboardingState.REFUSED, user_errors=_user_errors(error), error=str(error))
    if not isinstance(error, RetryableError):
        return Attempt(OnboardingState.FAILED, error=str(error))
    attempts = ask.attempts + 1
    if policy.exhausted(attempts, now - (ask.since if ask.since is not None else now)):
        return Attempt(OnboardingState.FAILED, error=f"gave up after {attempts} attempts: {error}")
    wait = policy.delay(attempts, retry_after=error.retry_after, rand=rand)
    return Attempt(OnboardingState.QUEUED, error=str(error), retry_at=now + wait)


class Onboarder:
    def __init__(
        self,
        store: OnboardingStore,
        gateway: ShopifyGateway,
        tokens: ShopTokens,
        policy: RetryPolicy,
        *,
        hold_for: float,
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._tokens = tokens
        self._policy = policy
        self._hold_for = hold_for
        self._clock = clock
        self._batch = batch

    @classmethod
    def from_settings(
        cls, settings: Settings, store: OnboardingStore, gateway: ShopifyGateway, tokens: ShopTokens
    ) -> Onboarder:
        """The Shopify retry ladder of the reports, and a hold that outlasts one call."""
        policy = RetryPolicy(
            settings.shopify_retry_ladder,
            settings.shopify_max_attempts,
            settings.shopify_retry_deadline_seconds,
        )
        hold_for = settings.shopify_timeout_seconds + settings.lease_seconds
        return cls(store, gateway, tokens, policy, hold_for=hold_for)

    async def run_due(self) -> int:
        """Send every due ask (up to a batch); returns how many were sent."""
        asks = await self._store.take_due(self._clock(), limit=self._batch, hold_for=self._hold_for)
        results = await asyncio.gather(*(self.send(ask) for ask in asks), return_exceptions=True)
        for ask, result in zip(asks, results, strict=True):
            if isinstance(result, Exception):
                # Left held: due again once the hold passes.
                log.error(
                    "onboarding not recorded", extra={"shop": ask.shop, "error": repr(result)}
                )
        return len(asks)

    async def run_one(self, shop: str) -> Attempt | None:
        """Send the shop's ask now if it is due and no one else holds it."""
        ask = await self._store.take(shop, self._clock(), hold_for=self._hold_for)
        return None if ask is None else await self.send(ask)

    async def send(self, ask: Ask) -> Attempt:
        # The registry's value as it is now: a token stored a moment ago by the install,
        # never a cached copy from before it.
        stored = await self._tokens.stored(ask.shop)
        error: PayhookError | None = None
        try:
            token = self._gateway.reporting_token(ask.shop, stored)
            await self._gateway.send(ask.shop, configure_app(ask.handle, ask.ready), token=token)
        except PayhookError as exc:
            error = exc
        now = self._clock()
        attempt = decide(ask, error, self._policy, now=now)
        written = await self._store.finish(ask, attempt, now)
        log.info(
            "paymentsAppConfigure",
            extra={
                "shop": ask.shop,
                "ready": ask.ready,
                "result": attempt.state.value,
                "error": attempt.error,
                "superseded": not written,
            },
        )
        return attempt
