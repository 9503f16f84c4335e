"""What PSPs tell payhook about payments their buyers made on the PSP's own page.

`POST /psp/simulator/payments/{session_id}` is the simulator's callback: the sandbox's buyer
page sends it when the buyer approves, declines or leaves the payment pending. It is signed
over the session id, a timestamp and the raw body (`webhook.signing`); a callback that is
unsigned, signed for another session, too old, or that carries another payment's reference
changes nothing. Without a private `PAYHOOK_SIMULATOR_WEBHOOK_SECRET` no callback is taken.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from errors import ApiError
from sessions.change import Change
from sessions.decisions import PspWord, Recorded, Refused, psp_word
from sessions.models import Kind, Outcome, PendingReason, Session
from webhook.body import header_bytes, parse_object, read_body
from webhook.errors import held_by_replicas, invalid, kept_changing
from webhook.keys import SETTINGS, STORE
from webhook.signing import secret_problem, signed_at, simulator_reference

log = logging.getLogger("payhook.psp")

# Any id but a slash: aiohttp's default segment pattern would not route ids with braces.
SIMULATOR_PATH = "/psp/simulator/payments/{session_id:[^/]+}"
_SESSION_ID = re.compile(r"[\x21-\x7e]{1,255}")
# Reads and writes race the PSP's other words and a worker; past this many, give up with a
# 503 the PSP retries.
_ATTEMPTS = 3


class PaymentOutcome(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    outcome: Literal["approved", "declined", "pending"]
    reference: str = Field(min_length=1, max_length=512)
    authorization_expires_at: AwareDatetime | None = None
    message: str | None = Field(default=None, max_length=500)
    # With a pending outcome: why (Shopify is told `BUYER_ACTION_REQUIRED` when not said).
    pending_reason: PendingReason | None = None


def _verified(request: web.Request, session_id: str, raw: bytes) -> PaymentOutcome:
    """The callback's outcome, once its signature, its age and its reference are checked."""
    settings = request.app[SETTINGS]
    secret = settings.simulator_webhook_secret
    problem = secret_problem(secret)
    if secret is None or problem is not None:
        raise ApiError(404, "not_found", f"the simulator callback is off: {problem}")
    header = header_bytes(request, "X-Payhook-Signature")
    timestamp = signed_at(header, secret.get_secret_value(), session_id, raw)
    if timestamp is None:
        raise ApiError(
            401,
            "bad_signature",
            "the callback is not signed for this session with the shared secret",
            "X-Payhook-Signature",
        )
    tolerance = settings.callback_tolerance_seconds
    if abs(time.time() - timestamp) > tolerance:
        raise ApiError(
            401,
            "stale_signature",
            f"the callback was signed more than {tolerance:g} s from now",
            "X-Payhook-Signature",
        )
    try:
        told = PaymentOutcome.model_validate(parse_object(raw))
    except ValidationError as exc:
        raise invalid(exc) from None
    if told.reference != simulator_reference(session_id):
        raise ApiError(422, "invalid_field", "reference: not this payment's reference", "reference")
    return told


async def simulator_payment(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    session_id = request.match_info["session_id"]
    # The path is percent-decoded: refuse what no session id can be (a newline, say) before
    # it reaches the signed text or a Redis key.
    if not _SESSION_ID.fullmatch(session_id):
        raise ApiError(404, "not_found", "no payment session has such an id")
    told = _verified(request, session_id, await read_body(request, settings.max_body_bytes))

    store = request.app[STORE]
    word = PspWord(
        Outcome(told.outcome),
        told.reference,
        authorization_expires_at=told.authorization_expires_at,
        message=told.message,
        pending_reason=told.pending_reason,
    )

    def decide(session: Session | None) -> Change | Recorded | Refused:
        if session is None or session.kind is not Kind.PAYMENT:
            raise ApiError(404, "not_found", f"no payment session {session_id}")
        lease, pending = settings.lease_seconds, settings.pending_seconds
        return psp_word(session, word, time.time(), lease_seconds=lease, pending_seconds=pending)

    # The verdict and the task that reports it are stored in one step; another word of the
    # PSP's, or a worker, moving the payment meanwhile makes it decided again.
    done = await store.decide_and_change(session_id, decide, attempts=_ATTEMPTS)
    if done is None:
        raise kept_changing(f"payment session {session_id}")
    session, decided = done
    if isinstance(decided, Refused):
        raise ApiError(409, decided.code, decided.message)
    # The PSP does not call again after a 2xx: the verdict must outlive a failover first.
    await held_by_replicas(store, session_id, "the outcome")
    if isinstance(decided, Recorded):
        return web.json_response({"status": "already recorded"})
    assert session is not None
    log.info(
        "payment outcome from the PSP",
        extra={
            "session_id": session_id,
            "shop": session.shop,
            "kind": "payment",
            "outcome": str(word.outcome),
        },
    )
    return web.json_response({"status": "accepted"})
