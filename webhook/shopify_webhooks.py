"""`POST /shopify/webhooks`: Shopify's own webhooks, taken in as durably as sessions.

read the body (bounded) → verify `X-Shopify-Hmac-Sha256` over it → read the headers → the
topic's body, bound to the topic and the shop → store, due entry and task message in one
Lua call, deduplicated on `X-Shopify-Webhook-Id` → `200 {}`. A worker does the rest
(`workers.shop_webhooks`). Not a session route: no client certificate is asked for, the
signature is what lets a webhook in.

Everything refused is a 4xx JSON error and changes nothing: 404 while no secret is set,
413 too large, 401 unsigned or badly signed, 400 a missing or malformed header or body,
422 a topic payhook does not handle or a body that does not fit its topic or shop, 409 a
webhook id seen with another topic, shop or body. A signed webhook of an unknown topic is
refused (422 `unknown_topic`) rather than acknowledged: nothing would act on it, and
Shopify's retries and its delivery report show the subscription is wrong.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime

from aiohttp import web

from config.shop_domains import is_shop_domain
from errors import ApiError, BodyProblem
from errors.replication import NotReplicated
from shops.webhook_store import Received, fingerprint
from shops.webhooks import HookState, Topic, Webhook, WebhookEvent, payload_of, read_body
from webhook.body import MAX_HEADER_CHARS, header_bytes, parse_object
from webhook.body import read_body as read_bounded
from webhook.errors import failure_code, not_replicated
from webhook.keys import METRICS, SETTINGS, WEBHOOKS
from webhook.shopify_hmac import signed_with_any

log = logging.getLogger("payhook.webhook")

PATH = "/shopify/webhooks"
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
_API_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")
_TOPICS = {topic.value: topic for topic in Topic}


def _header(request: web.Request, name: str, *, required: bool = True) -> str | None:
    value = request.headers.get(name, "").strip()
    if not value:
        if not required:
            return None
        raise ApiError(400, "missing_header", f"the {name} header is required", name)
    if len(value) > MAX_HEADER_CHARS or not _PRINTABLE.fullmatch(value):
        raise ApiError(400, "invalid_header", f"the {name} header is not a short token", name)
    return value


def _shop(request: web.Request) -> str:
    shop = (_header(request, "X-Shopify-Shop-Domain") or "").lower()
    if not is_shop_domain(shop, request.app[SETTINGS].shop_domain_suffixes):
        raise ApiError(
            400,
            "invalid_header",
            "X-Shopify-Shop-Domain is not a Shopify shop domain",
            "X-Shopify-Shop-Domain",
        )
    return shop


def _triggered_at(request: web.Request, received_at: float) -> float:
    """When Shopify says the event happened; never later than now (the header is not
    signed, and an uninstall keeps only tokens stored after this moment)."""
    value = request.headers.get("X-Shopify-Triggered-At", "")
    try:
        moment = datetime.fromisoformat(value[:64].replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return received_at
    return min(moment, received_at)


def _verify(request: web.Request, raw: bytes) -> None:
    secrets = request.app[SETTINGS].webhook_secrets
    if not secrets:
        raise ApiError(404, "not_found", "Shopify webhooks are off: PAYHOOK_SHOPIFY_API_SECRET")
    header = header_bytes(request, "X-Shopify-Hmac-Sha256")
    if not header.strip():
        raise ApiError(
            401,
            "missing_signature",
            "the X-Shopify-Hmac-Sha256 header is required",
            "X-Shopify-Hmac-Sha256",
        )
    if not signed_with_any(header.strip(), secrets, raw):
        raise ApiError(
            401,
            "bad_signature",
            "X-Shopify-Hmac-Sha256 is not the body's signature with the app's secret",
            "X-Shopify-Hmac-Sha256",
        )


async def shopify_webhook(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    topic_label = "unknown"
    # Set by every answer; a request whose client went away (cancelled) is not counted.
    result: str | None = None
    try:
        response, topic_label, result = await _answer(request)
        return response
    except ApiError as exc:
        result = exc.code
        raise
    except Exception as exc:
        result = failure_code(exc)
        raise
    finally:
        if result is not None:
            metrics.webhooks.labels(topic_label, result).inc()


async def _answer(request: web.Request) -> tuple[web.Response, str, str]:
    settings = request.app[SETTINGS]
    raw = await read_bounded(request, settings.max_body_bytes)
    _verify(request, raw)
    topic_name = _header(request, "X-Shopify-Topic") or ""
    shop = _shop(request)
    webhook_id = _header(request, "X-Shopify-Webhook-Id") or ""
    version = _header(request, "X-Shopify-API-Version", required=False)
    if version is not None and not _API_VERSION.fullmatch(version):
        raise ApiError(
            400,
            "invalid_header",
            "X-Shopify-API-Version is not like '2025-10'",
            "X-Shopify-API-Version",
        )
    topic = _TOPICS.get(topic_name)
    if topic is None:
        raise ApiError(
            422,
            "unknown_topic",
            f"payhook handles no webhook topic {topic_name!r} (it takes {', '.join(_TOPICS)})",
            "X-Shopify-Topic",
        )
    try:
        parsed = read_body(topic, parse_object(raw), shop)
    except BodyProblem as exc:
        raise ApiError(422, exc.code, str(exc), exc.field) from None
    now = time.time()
    payload = payload_of(parsed)
    webhook = Webhook(
        id=webhook_id,
        topic=topic,
        shop=shop,
        api_version=version,
        triggered_at=_triggered_at(request, now),
        received_at=now,
        state=HookState.RECEIVED,
        updated_at=now,
        round_since=now,
        payload=None if payload is None else payload.model_dump_json(exclude_none=True),
    )
    event = WebhookEvent(at=now, event="received", state=HookState.RECEIVED, detail=topic.value)
    context = {"webhook_id": webhook_id, "shop": shop, "topic": topic.value}
    try:
        received = await request.app[WEBHOOKS].receive(
            webhook,
            event,
            fingerprint=fingerprint(topic, shop, raw),
            due_at=now + settings.lease_seconds,
        )
    except NotReplicated as exc:
        log.warning("webhook not replicated in time", extra={**context, "error": str(exc)})
        raise not_replicated("the webhook", exc) from None
    if received is Received.CONFLICT:
        raise ApiError(
            409,
            "idempotency_conflict",
            f"webhook {webhook_id} was already received with another topic, shop or body",
            "X-Shopify-Webhook-Id",
        )
    if received is Received.CREATED:
        log.info("shopify webhook received", extra=context)
    return web.json_response({}), topic.value, received.value
