"""What PSPs tell payhook about payments their buyers made on the PSP's own page.

`POST /psp/simulator/payments/{session_id}` is the simulator's callback: the sandbox's buyer
page sends it when the buyer approves, declines or leaves the payment pending. The body is
signed (`X-Payhook-Signature: sha256=<hex HMAC of the raw body>`) with
`PAYHOOK_SIMULATOR_WEBHOOK_SECRET`; an unsigned or wrongly signed callback changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from sessions.models import Kind, Outcome, TimelineEvent
from sessions.states import State
from sessions.store import Change, StaleState
from webhook.body import header_bytes, parse_object, read_body
from webhook.errors import ApiError
from webhook.keys import SETTINGS, STORE

log = logging.getLogger("payhook.psp")


class PaymentOutcome(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    outcome: Literal["approved", "declined", "pending"]
    reference: str = Field(min_length=1, max_length=255)
    authorization_expires_at: AwareDatetime | None = None
    message: str | None = Field(default=None, max_length=500)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def simulator_payment(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    raw = await read_body(request, settings.max_body_bytes)
    expected = signature(settings.simulator_webhook_secret.get_secret_value(), raw)
    if not hmac.compare_digest(header_bytes(request, "X-Payhook-Signature"), expected.encode()):
        raise ApiError(
            401,
            "bad_signature",
            "the callback is not signed with the shared secret",
            "X-Payhook-Signature",
        )
    try:
        told = PaymentOutcome.model_validate(parse_object(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(422, "invalid_field", f"{field}: {first['msg']}", field) from None

    store = request.app[STORE]
    session_id = request.match_info["session_id"]
    session = await store.get(session_id)
    if session is None or session.kind is not Kind.PAYMENT:
        raise ApiError(404, "not_found", f"no payment session {session_id}")
    outcome = Outcome(told.outcome)
    if session.outcome is outcome:
        return web.json_response({"status": "already recorded"})
    # A pending payment may still turn final; a final one never changes.
    allowed = (State.RECEIVED,) if outcome is Outcome.PENDING else (State.RECEIVED, State.PENDING)
    now = time.time()
    fields: dict[str, object | None] = {
        "outcome": outcome,
        "psp_reference": told.reference,
        "phase_attempts": 0,
        "phase_since": now,
        "not_before": None,
    }
    if outcome is Outcome.PENDING:
        fields["pending_expires_at"] = now + settings.pending_seconds
    if outcome is Outcome.APPROVED:
        fields["authorization_expires_at"] = told.authorization_expires_at
    if outcome is Outcome.DECLINED:
        fields["merchant_message"] = told.message or "The buyer's payment was declined."
    event = TimelineEvent(
        at=now,
        event="psp_settled",
        state=State.SETTLED,
        detail=f"{outcome} {told.reference} (PSP callback)",
    )
    change = Change(
        event=event,
        due_at=now + settings.lease_seconds,
        fields=fields,
        expect=frozenset(allowed),
    )
    try:
        # The verdict and the task that reports it are stored in one step.
        await store.change(session, change, queue=True)
    except StaleState as exc:
        raise ApiError(
            409, "already_final", f"payment session {session_id} is already {exc.current}"
        ) from None
    log.info(
        "payment outcome from the PSP",
        extra={
            "session_id": session_id,
            "shop": session.shop,
            "kind": "payment",
            "outcome": str(outcome),
        },
    )
    return web.json_response({"status": "accepted"})
