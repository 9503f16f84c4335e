"""Processing Shopify's webhooks off the request path, as durably as sessions.

A run claims the webhook (lease + fencing token, renewed while it works), does what its topic
asks, and stores what came of it in one fenced write: done, a retry on the webhook ladder
(`PAYHOOK_WEBHOOK_RETRY_LADDER`; due again at its time, when the sweeper queues it), or, once
the ladder's attempts and deadline have both passed, a dead letter (`payhook webhooks list
--state failed`, replayable). Every topic's work can be done again without harm, so a run
cut short (a killed worker, Redis away) is simply run again once its lease runs out.

`decide_*` are the decisions, pure functions; `process` carries them out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from errors import LeaseLost, LeaseLostError, StaleState, TryLater
from sessions.models import TimelineEvent
from sessions.states import State
from sessions.store import SessionStore
from shops.privacy import Needles, erase_shop, find_customer, redact_customer
from shops.tokens import ShopTokens, Uninstall
from shops.webhook_store import NotClaimed, WebhookStore
from shops.webhooks import HookState, Topic, Webhook, WebhookEvent
from workers.lifecycle.lease import holding
from workers.retry_policy import RetryPolicy
from workers.uninstall import fail_unfinished

log = logging.getLogger("payhook.webhooks")


def _ignore(topic: str, result: str) -> None:
    return None


@dataclass(frozen=True)
class WebhookServices:
    hooks: WebhookStore
    store: SessionStore
    tokens: ShopTokens
    policy: RetryPolicy
    lease_seconds: float
    max_deliveries: int = 200
    run_timeout: float = 120.0
    clock: Callable[[], float] = time.time
    # Told each stored outcome (topic, `done` | `retry` | `failed`), for the metrics.
    observed: Callable[[str, str], None] = field(default=_ignore)


# What a run came to.
@dataclass(frozen=True)
class Processed:
    result: str


@dataclass(frozen=True)
class Retrying:
    delay: float
    error: str


@dataclass(frozen=True)
class DeadLettered:
    error: str


@dataclass(frozen=True)
class NotRun:
    reason: str


Step = Processed | Retrying | DeadLettered | NotRun


@dataclass(frozen=True)
class HookDecision:
    event: WebhookEvent
    fields: dict[str, object | None]
    due_at: float | None
    step: Step

    @property
    def state(self) -> HookState:
        return self.event.state


# -- decisions -----------------------------------------------------------------------------


def decide_done(result: str, now: float) -> HookDecision:
    """Done: the customer's identifiers the body brought are erased with it."""
    return HookDecision(
        WebhookEvent(at=now, event="done", state=HookState.DONE, detail=result),
        {
            "done_at": now,
            "result": result,
            "last_error": None,
            "not_before": None,
            "payload": None,
        },
        None,
        Processed(result),
    )


def decide_failure(webhook: Webhook, error: str, policy: RetryPolicy, now: float) -> HookDecision:
    """An attempt failed: the next rung of the ladder, or a dead letter once both its
    attempt cap and its deadline have passed."""
    attempt = webhook.attempts + 1
    since = webhook.round_since if webhook.round_since is not None else now
    fields: dict[str, object | None] = {"attempts": attempt, "last_error": error}
    if policy.exhausted(attempt, now - since):
        return decide_dead_letter(error, now, fields, attempt=attempt)
    delay = policy.delay(attempt)
    return HookDecision(
        WebhookEvent(
            at=now,
            event="retry",
            state=HookState.RETRYING,
            attempt=attempt,
            error=error,
            detail=f"next attempt in {delay:.2f}s",
        ),
        {**fields, "not_before": now + delay},
        now + delay,
        Retrying(delay, error),
    )


def decide_dead_letter(
    error: str,
    now: float,
    fields: dict[str, object | None] | None = None,
    *,
    attempt: int | None = None,
) -> HookDecision:
    return HookDecision(
        WebhookEvent(at=now, event="failed", state=HookState.FAILED, attempt=attempt, error=error),
        {**(fields or {}), "last_error": error, "failed_at": now, "not_before": None},
        None,
        DeadLettered(error),
    )


# -- the run -------------------------------------------------------------------------------


def _described(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return "the run took longer than its timeout"
    return f"{type(exc).__name__}: {exc}"[:500]


async def process(webhook_id: str, services: WebhookServices) -> Step:
    """One delivery of the webhook's task message: claim, work, store what came of it."""
    hooks = services.hooks
    lease = services.lease_seconds
    claim = await hooks.claim(webhook_id, now=services.clock(), lease_seconds=lease)
    if isinstance(claim, NotClaimed):
        return NotRun(f"{claim.reason.value} ({claim.state or 'no webhook'})")
    webhook = claim.webhook
    context = {"webhook_id": webhook.id, "shop": webhook.shop, "topic": webhook.topic.value}
    if webhook.deliveries > services.max_deliveries:
        error = f"poison: {webhook.deliveries} deliveries without finishing"
        decision = decide_dead_letter(error, services.clock())
    else:
        try:
            async with asyncio.timeout(services.run_timeout):
                result = await holding(
                    hooks,
                    webhook.id,
                    claim.fence,
                    lease_seconds=lease,
                    clock=services.clock,
                    work=handle(webhook, services),
                )
        except (LeaseLost, LeaseLostError) as exc:
            log.warning("webhook run abandoned", extra={**context, "error": str(exc)})
            return NotRun(str(exc))
        except Exception as exc:  # every failure is retried on the ladder, then dead-lettered
            log.warning("webhook attempt failed", extra={**context, "error": _described(exc)})
            decision = decide_failure(webhook, _described(exc), services.policy, services.clock())
        else:
            decision = decide_done(result, services.clock())
    try:
        await hooks.settle(
            webhook.id,
            claim.fence,
            decision.state,
            decision.event,
            fields=decision.fields,
            due_at=decision.due_at,
        )
    except (LeaseLost, StaleState) as exc:
        log.warning("webhook outcome not stored", extra={**context, "error": str(exc)})
        return NotRun(str(exc))
    services.observed(webhook.topic.value, decision.state.value)
    if isinstance(decision.step, DeadLettered):
        log.error("webhook failed", extra={**context, "error": decision.step.error})
    else:
        log.info(f"webhook {decision.event.event}", extra=context)
    return decision.step


# -- what each topic does ------------------------------------------------------------------


async def handle(webhook: Webhook, services: WebhookServices) -> str:
    """Do what the topic asks; returns what was done, for the record."""
    if webhook.topic is Topic.APP_UNINSTALLED:
        return (await _uninstalled(webhook, services))[1]
    if webhook.topic is Topic.SHOP_REDACT:
        return await _redact_shop(webhook, services)
    if webhook.topic is Topic.CUSTOMERS_REDACT:
        return await _redact_customer(webhook, services)
    return await _data_request(webhook, services)


_TOKEN = {
    Uninstall.REMOVED: "token deleted",
    Uninstall.NO_TOKEN: "no token of its own (the fallback served it): shop refused from now on",
    Uninstall.ALREADY: "token already deleted",
    Uninstall.REINSTALLED: "token kept: stored after the uninstall (re-installed)",
}


async def _uninstalled(webhook: Webhook, services: WebhookServices) -> tuple[Uninstall, str]:
    """Delete the shop's token and fail its unfinished sessions: what became of the token,
    and what was done."""
    shop = webhook.shop
    done = await services.tokens.uninstall(
        shop, triggered_at=webhook.triggered_at, now=services.clock()
    )
    reason = (
        f"{shop} uninstalled the app ({webhook.topic} {webhook.id}): Shopify can no longer "
        "be told this session's outcome"
    )
    # A re-installed shop's sessions since the uninstall are its own again.
    created_by = webhook.triggered_at if done is Uninstall.REINSTALLED else None
    failed = await fail_unfinished(
        services.store, shop, reason, clock=services.clock, created_by=created_by
    )
    return done, f"{_TOKEN[done]}; {failed.describe()}"


async def _redact_shop(webhook: Webhook, services: WebhookServices) -> str:
    # Shopify sends it 48 hours after the uninstall; whatever that left unfinished (a lost
    # app/uninstalled, say) is failed first, the same way.
    token, uninstalled = await _uninstalled(webhook, services)
    now = services.clock()
    # Re-installed since: only what was there when Shopify asked is erased.
    reinstalled = token is Uninstall.REINSTALLED
    event = TimelineEvent(
        at=now,
        event="redacted",
        state=State.FAILED,
        detail=f"shop/redact {webhook.id}: checkout references erased; the session stays, "
        "holding money",
    )
    erased = await erase_shop(
        services.store.redis,
        webhook.shop,
        cutoff=webhook.triggered_at if reinstalled else now,
        event=event.model_dump_json(exclude_none=True),
    )
    if erased.unfinished:
        raise TryLater(f"{len(erased.unfinished)} session(s) still unfinished")
    reports = [w.id for w in await services.hooks.of_shop(webhook.shop) if w.id != webhook.id]
    dropped = await services.hooks.drop_reports(reports)
    return f"{uninstalled}; {erased.describe()}; {dropped} data request report(s) erased"


async def _redact_customer(webhook: Webhook, services: WebhookServices) -> str:
    customer = webhook.customer()
    if customer is None:
        return "nothing to search for"
    needles = Needles.of(customer)
    done = await redact_customer(services.store.redis, webhook.shop, needles)
    if done.busy:
        raise TryLater(
            f"{len(done.busy)} session(s) naming the customer are in flight "
            f"({', '.join(done.busy[:5])}); redacted once they finish"
        )
    return f"{len(done.redacted)} session(s) named the customer: their texts redacted"


async def _data_request(webhook: Webhook, services: WebhookServices) -> str:
    customer = webhook.customer()
    if customer is None:
        return "nothing to search for"
    needles = Needles.of(customer)
    found = await find_customer(services.store.redis, webhook.shop, needles)
    now = services.clock()
    report: dict[str, Any] = {
        "webhook_id": webhook.id,
        "topic": webhook.topic.value,
        "shop": webhook.shop,
        "data_request_id": customer.data_request_id,
        "customer_id": customer.customer_id,
        "generated_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "searched": {"sessions": found.sessions, "for": needles.described()},
        "kept_by_design": KEPT_BY_DESIGN,
        "matches": [trace.as_json() for trace in found.traces],
    }
    await services.hooks.save_report(webhook.id, report)
    return (
        f"report ready (payhook webhooks report {webhook.id}): {found.sessions} session(s) "
        f"of the shop searched, {len(found.traces)} name the customer"
    )


KEPT_BY_DESIGN = (
    "payhook keeps no customer name, email, phone, address, customer id or order id: a "
    "payment session's customer object is dropped when the session arrives. Its sessions "
    "keep the payment's amount, currency, Shopify's and the provider's ids, the outcome "
    "and, for payment sessions, the checkout's references (cancel_url, checkout_id, "
    "group), none of which names a customer. `matches` lists every text that does (a "
    "provider's message quoting the customer, say)."
)
