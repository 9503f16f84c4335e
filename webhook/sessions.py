"""Session endpoints. Each handler: read → validate → admit (the shop has an access token
payhook can read, and is within its rate limit) → persist + enqueue (one atomic Redis call
that also dedupes) → 201.

No PSP or Shopify call ever happens on the request path. A payment session is not queued at
intake: the buyer acts first, on the PSP's page; it enters the due set at the end of the
buyer's window so that a PSP that never reports back still ends in a decision.

A test-mode payment (`test: true`) while the connector's PSP account is live never reaches
the PSP: the buyer goes back to Shopify's `cancel_url` instead of the PSP's page, and the
session is queued at once for the worker to reject (`workers.lifecycle.settling.test_refused`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from config import Settings
from errors import ApiError
from errors.replication import NotReplicated
from sessions.intake import new_session
from sessions.models import Kind
from sessions.money import format_amount
from sessions.requests import REQUESTS, PaymentSessionRequest
from sessions.store import Created
from webhook.body import json_object, shopify_headers
from webhook.buyer_return import return_url
from webhook.errors import failure_code, invalid, not_replicated
from webhook.keys import METRICS, RATE_LIMIT, SETTINGS, STORE, TOKEN_CHECK, TRACER
from webhook.token_check import TokenProblem

log = logging.getLogger("payhook.webhook")

# Shopify refuses a longer redirect_url.
MAX_REDIRECT_BYTES = 8192


def _conflict(session_id: str, sent: str, stored: str | None) -> ApiError:
    # A fingerprint is kind|payment_id|amount|currency; the payment id may itself hold '|'.
    names = ("payment_id", "amount", "currency")
    sent_parts = sent.split("|", 1)[1].rsplit("|", 2)
    stored_parts = (stored or "").split("|", 1)[-1].rsplit("|", 2)
    differs = [n for n, a, b in zip(names, sent_parts, stored_parts, strict=False) if a != b]
    field = differs[0] if differs else None
    return ApiError(
        409,
        "idempotency_conflict",
        f"session {session_id} was already received with a different "
        f"{' and '.join(differs) or 'body'}; a repeated id must repeat the same request",
        field,
    )


def refuses_test(settings: Settings, parsed: PaymentSessionRequest) -> bool:
    """A test-mode payment, and a PSP account that moves real money."""
    return parsed.test and settings.psp_account == "live"


def redirect_url(settings: Settings, parsed: PaymentSessionRequest) -> str:
    if refuses_test(settings, parsed):
        if parsed.cancel_url is None:
            raise ApiError(
                422,
                "test_mode_refused",
                f"a test payment cannot go to the {settings.connector} connector's live "
                "account, and without a cancel_url the buyer has nowhere else to go",
                "test",
            )
        return parsed.cancel_url
    # Quoted: an id may hold '/', '?' or '#', and the callback must still reach its session.
    path_id = quote(parsed.id, safe="")
    callback = f"{settings.public_base_url}/psp/simulator/payments/{path_id}"
    # Where the PSP sends the buyer once it has told payhook (`webhook.buyer_return`).
    back = return_url(settings.public_base_url, parsed.id)
    return settings.buyer_page_url.format(
        session_id=path_id,
        amount=quote(format_amount(parsed.amount, parsed.currency), safe=""),
        currency=parsed.currency,
        callback=quote(callback, safe=""),
        return_url=quote(back, safe=""),
    )


# What became of a refused request, for the metrics: any other 4xx is "invalid", any other
# 5xx is named by its code (`not_replicated`, `store_unavailable`, `overloaded`, ...).
_REFUSALS = {
    "no_access_token": "no_token",
    "token_unreadable": "token_unreadable",
    "shop_uninstalled": "shop_uninstalled",
    "rate_limited": "rate_limited",
    "idempotency_conflict": "conflict",
}


def _result(exc: Exception) -> str:
    """What became of a request that was not answered 201, as the metrics label it."""
    if isinstance(exc, ApiError):
        return _REFUSALS.get(exc.code, "invalid" if exc.status < 500 else exc.code)
    if isinstance(exc, web.HTTPException):
        return "invalid" if exc.status < 500 else "internal_error"
    return failure_code(exc)


async def _admit(request: web.Request, shop: str) -> None:
    """Refuse a session payhook could never report (its shop has no access token this
    process can read), or one past its shop's rate limit."""
    settings = request.app[SETTINGS]
    limit = request.app[RATE_LIMIT]
    wait = await limit.wait_for(shop) if limit is not None else 0.0
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"{shop} sent more than {settings.shop_rate_limit} session requests in "
            f"{settings.shop_rate_window_seconds:g} s; retry after the Retry-After seconds",
            "Shopify-Shop-Domain",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    problem = await request.app[TOKEN_CHECK].problem(shop)
    if problem is TokenProblem.MISSING:
        raise ApiError(
            403,
            "no_access_token",
            f"payhook has no Shopify access token for {shop} (payhook shops add {shop})",
            "Shopify-Shop-Domain",
        )
    if problem is TokenProblem.UNINSTALLED:
        raise ApiError(
            403,
            "shop_uninstalled",
            f"{shop} uninstalled the app; its sessions are refused until it installs it "
            f"again (OAuth, or payhook shops add {shop})",
            "Shopify-Shop-Domain",
        )
    if problem is TokenProblem.UNREADABLE:
        # A worker could not report it either: accepting it would move money Shopify is
        # never told about.
        raise ApiError(
            403,
            "token_unreadable",
            f"payhook cannot read the Shopify access token it holds for {shop}: no key in "
            f"PAYHOOK_TOKEN_KEYS decrypts it (restore the key it was stored under, or "
            f"payhook shops add {shop})",
            "Shopify-Shop-Domain",
        )


def session_endpoint(kind: Kind) -> Callable[[web.Request], Awaitable[web.Response]]:
    model = REQUESTS[kind]
    label = kind.value

    async def handle(request: web.Request) -> web.Response:
        # Every answer is counted and timed, refusals and failures too: a slow 503 is what
        # Shopify waits on as much as a slow 201. A request whose client went away before
        # its answer (cancelled) was never answered and is neither.
        started = time.perf_counter()
        metrics = request.app[METRICS]
        result: str | None = None
        try:
            response, result = await answer(request)
            return response
        except Exception as exc:
            result = _result(exc)
            raise
        finally:
            if result is not None:
                metrics.sessions.labels(label, result).inc()
                metrics.latency.labels(label, result).observe(time.perf_counter() - started)

    async def answer(request: web.Request) -> tuple[web.Response, str]:
        settings = request.app[SETTINGS]
        shop, request_id, api_version = shopify_headers(request)
        body = await json_object(request, settings.max_body_bytes)
        try:
            parsed = model.model_validate(body)
        except ValidationError as exc:
            raise invalid(exc) from None
        await _admit(request, shop)
        # Where the buyer goes is known before anything is stored: a refusal stores nothing.
        url = redirect_url(settings, parsed) if isinstance(parsed, PaymentSessionRequest) else None
        if url is not None and len(url.encode()) > MAX_REDIRECT_BYTES:
            raise ApiError(500, "redirect_too_long", "the buyer page URL is too long")
        # A payment waits for its buyer, unless it is refused without one.
        waits = isinstance(parsed, PaymentSessionRequest) and not refuses_test(settings, parsed)

        now = time.time()
        new = new_session(
            kind,
            parsed,
            shop=shop,
            request_id=request_id,
            api_version=api_version,
            now=now,
            buyer_window=settings.buyer_window_seconds if waits else None,
        )
        context = {"session_id": new.id, "shop": shop, "kind": label}
        request.app[TRACER].annotate(context)
        due_at = now + (settings.buyer_window_seconds if waits else settings.lease_seconds)
        try:
            result = await request.app[STORE].create_new(new, due_at=due_at, queue=not waits)
        except NotReplicated as exc:
            # Stored, but a failover now could lose it: no 201 that could be taken back.
            # Shopify retries; the repeat is answered once the replicas have the session.
            log.warning("session not replicated in time", extra={**context, "error": str(exc)})
            raise not_replicated("the session", exc) from None
        if result.status is Created.CONFLICT:
            log.warning("conflicting duplicate", extra=context)
            raise _conflict(new.id, new.fingerprint, result.stored_fingerprint)
        if result.status is Created.CREATED:
            log.info("session received", extra=context)
        if url is not None:
            return web.json_response({"redirect_url": url}, status=201), result.status.value
        return web.json_response({}, status=201), result.status.value

    handle.__name__ = f"{label}_sessions"
    return handle
