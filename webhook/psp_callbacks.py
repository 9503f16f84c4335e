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

from errors import ApiError, StaleState
from errors.replication import NotReplicated
from sessions.models import Kind, Outcome, PendingReason, TimelineEvent
from sessions.states import State
from sessions.store import Change, SessionStore
from webhook.body import header_bytes, parse_object, read_body
from webhook.errors import not_replicated
from webhook.keys import SETTINGS, STORE
from webhook.signing import secret_problem, signed_at, simulator_reference

log = logging.getLogger("payhook.psp")

_SESSION_ID = re.compile(r"[\x21-\x7e]{1,255}")
_BEFORE_ANY_OUTCOME = frozenset({State.RECEIVED, State.SETTLING})
_NO_OUTCOME = frozenset({""})
_NOT_FINAL = frozenset({"", Outcome.PENDING.value})


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
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(422, "invalid_field", f"{field}: {first['msg']}", field) from None
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
    session = await store.get(session_id)
    if session is None or session.kind is not Kind.PAYMENT:
        raise ApiError(404, "not_found", f"no payment session {session_id}")
    outcome = Outcome(told.outcome)
    if session.outcome is outcome:
        await _replicated(store, session_id)
        return web.json_response({"status": "already recorded"})
    now = time.time()
    fields: dict[str, object | None] = {
        "outcome": outcome,
        "psp_reference": told.reference,
        "phase_attempts": 0,
        "phase_since": now,
        "not_before": None,
        # A report in flight was of the outcome this one replaces.
        "inflight": None,
        "failed_at": None,
    }
    if outcome is Outcome.PENDING:
        # Counted from Shopify's payment request, which is before both the PSP's word and
        # the mutation: inside Shopify's limit from whichever it counts.
        fields["pending_expires_at"] = session.created_at + settings.pending_seconds
        fields["pending_reason"] = told.pending_reason
    if outcome is Outcome.APPROVED:
        fields["authorization_expires_at"] = told.authorization_expires_at
    if outcome is Outcome.DECLINED:
        fields["merchant_message"] = told.message or "The buyer's payment was declined."
    event = TimelineEvent(
        at=now,
        event="psp_settled",
        state=State.SETTLED,
        detail=f"{outcome} {told.reference} (PSP callback{_why(outcome, told)})",
    )
    change = Change(
        event=event,
        due_at=now + settings.lease_seconds,
        fields=fields,
        # A final verdict stands wherever the payment is while its stored outcome is still
        # pending: Shopify may not have taken "pending" yet (its report failing, or in
        # flight), and the buyer has paid all the same. Pending itself only comes first.
        expect=_BEFORE_ANY_OUTCOME if outcome is Outcome.PENDING else None,
        when={"outcome": _NO_OUTCOME if outcome is Outcome.PENDING else _NOT_FINAL},
        # A worker reporting "pending" meanwhile must not write over the verdict: its
        # token is superseded, and the task queued here reports the verdict instead.
        supersede=True,
    )
    try:
        # The verdict and the task that reports it are stored in one step.
        await store.change(session, change, queue=True)
    except StaleState as exc:
        raise ApiError(
            409, "already_final", f"payment session {session_id} is already {exc.current}"
        ) from None
    # The PSP does not call again after a 2xx: the verdict must outlive a failover first.
    await _replicated(store, session_id)
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


def _why(outcome: Outcome, told: PaymentOutcome) -> str:
    if outcome is not Outcome.PENDING or told.pending_reason is None:
        return ""
    return f": {told.pending_reason}"


async def _replicated(store: SessionStore, session_id: str) -> None:
    try:
        await store.replicated(session_id)
    except NotReplicated as exc:
        # The PSP retries, and the repeat is answered "already recorded" once they hold it.
        raise not_replicated("the outcome", exc) from None
