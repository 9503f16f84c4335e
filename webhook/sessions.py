"""Session endpoints. Each handler: read → validate → persist + enqueue (one atomic Redis
call that also dedupes) → 201.

No PSP or Shopify call ever happens on the request path.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from pydantic import ValidationError

from sessions.models import CaptureSessionRequest, Kind, Session, TimelineEvent, fingerprint
from sessions.states import State
from sessions.store import Created
from webhook.body import json_object, shopify_headers
from webhook.errors import ApiError
from webhook.keys import CELERY, METRICS, SETTINGS, STORE
from workers.dispatch import QUEUE, task_message

log = logging.getLogger("payhook.webhook")


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "missing":
        return ApiError(422, "missing_field", f"{field} is required", field)
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(422, "invalid_field", f"{field}: {message}", field)


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


async def capture_sessions(request: web.Request) -> web.Response:
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    metrics = request.app[METRICS]
    try:
        shop, request_id, api_version = shopify_headers(request)
        body = await json_object(request, settings.max_body_bytes)
        try:
            parsed = CaptureSessionRequest.model_validate(body)
        except ValidationError as exc:
            raise _validation_error(exc) from None
    except ApiError:
        metrics.sessions.labels("capture", "invalid").inc()
        raise

    now = time.time()
    session = Session(
        id=parsed.id,
        kind=Kind.CAPTURE,
        gid=parsed.gid,
        shop=shop,
        payment_id=parsed.payment_id,
        amount=parsed.amount,
        currency=parsed.currency,
        merchant_locale=parsed.merchant_locale,
        proposed_at=parsed.proposed_at,
        test=parsed.test,
        request_id=request_id,
        api_version=api_version,
        state=State.RECEIVED,
        created_at=now,
        updated_at=now,
    )
    event = TimelineEvent(
        at=now, event="received", state=State.RECEIVED, detail=f"Shopify-Request-Id {request_id}"
    )
    message = task_message(request.app[CELERY], Kind.CAPTURE, session.id)
    result = await request.app[STORE].create(
        session, event, due_at=now + settings.lease_seconds, enqueue=(QUEUE, message)
    )
    context = {"session_id": session.id, "shop": shop, "kind": "capture"}
    if result.status is Created.CONFLICT:
        metrics.sessions.labels("capture", "conflict").inc()
        sent = fingerprint(Kind.CAPTURE, parsed.payment_id, parsed.amount, parsed.currency)
        log.warning("conflicting duplicate", extra=context)
        raise _conflict(session.id, sent, result.stored_fingerprint)
    if result.status is Created.CREATED:
        log.info("session received", extra=context)
    metrics.sessions.labels("capture", result.status.value).inc()
    metrics.latency.labels("capture").observe(time.perf_counter() - started)
    return web.json_response({}, status=201)
