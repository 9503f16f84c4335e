"""`POST /payment_confirmations`: Shopify's confirmation request, the answer to our
`paymentSessionConfirm`.

Shopify checks the order (inventory, 3-D Secure), then POSTs to the extension's
`confirmation_callback_url` the session's `gid` and `confirmation_result` (true: confirm). The
route is one of Shopify's, behind its client certificate or the trusted proxy like the session
routes (`webhook.auth`). Like every session request it is durable and idempotent:

- the result is stored (and the session queued to be resolved or rejected) in one step
  before the `201 {}`, and the replicas hold it first;
- a repeat of a recorded result is answered `201 {}` again and changes nothing; the other
  result is a `409 confirmation_conflict`;
- it is taken only for an approved payment Shopify may have been asked to confirm (the
  session is `confirming`, or a run sent, or was sending, `paymentSessionConfirm`); it then
  supersedes that run's lease, so a worker whose answer from Shopify is still to be stored
  changes nothing, and the queued task reports the result;
- another shop's session, or an unknown one, is a 404.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from errors import ApiError
from sessions.change import Change
from sessions.decisions import Recorded, Refused, confirmation
from sessions.models import Kind, Session
from webhook.body import json_object, shopify_headers
from webhook.errors import held_by_replicas, invalid, kept_changing
from webhook.keys import SETTINGS, STORE

log = logging.getLogger("payhook.webhook")

_GID = re.compile(r"gid://shopify/PaymentSession/([\x21-\x7e]{1,255})")
# Reads and writes race a worker storing what Shopify answered; past this many, give up
# with a 503 the caller retries.
_ATTEMPTS = 3


class ConfirmationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    gid: Annotated[StrictStr, Field(max_length=300)]
    confirmation_result: StrictBool


def _parsed(body: dict[str, object]) -> tuple[str, bool]:
    try:
        told = ConfirmationRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid(exc) from None
    found = _GID.fullmatch(told.gid)
    if found is None:
        raise ApiError(
            422, "invalid_field", "gid: must look like gid://shopify/PaymentSession/<id>", "gid"
        )
    return found[1], told.confirmation_result


async def payment_confirmation(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    shop, request_id, _ = shopify_headers(request)
    session_id, confirmed = _parsed(await json_object(request, settings.max_body_bytes))
    store = request.app[STORE]
    context = {"session_id": session_id, "shop": shop, "kind": Kind.PAYMENT.value}

    def decide(session: Session | None) -> Change | Recorded | Refused:
        # Another shop's session is no more this shop's to confirm than an unknown one.
        if session is None or session.kind is not Kind.PAYMENT or session.shop != shop:
            raise ApiError(404, "not_found", f"no payment session {session_id} of {shop}")
        return confirmation(session, confirmed, time.time(), lease_seconds=settings.lease_seconds)

    # A worker storing Shopify's answer meanwhile, or another request this result, makes it
    # decided again on what is there then.
    done = await store.decide_and_change(session_id, decide, attempts=_ATTEMPTS)
    if done is None:
        raise kept_changing(f"payment session {session_id}")
    _, decided = done
    if isinstance(decided, Refused):
        field = "confirmation_result" if decided.code == "confirmation_conflict" else None
        raise ApiError(409, decided.code, decided.message, field)
    # A repeat is answered too once the replicas hold what it rests on.
    await held_by_replicas(store, session_id, "the confirmation")
    if isinstance(decided, Change):
        log.info(
            "payment confirmation from Shopify",
            extra={**context, "confirmed": confirmed, "request_id": request_id},
        )
    return web.json_response({}, status=201)
