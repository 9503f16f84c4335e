"""A new session as intake writes it: the request model encoded straight into the stored
hash, with no `Session` model in between.

`Session` stays the model every reader decodes the hash into; `tests/sessions/test_intake.py`
holds the two together (the fields written here are the ones `Session` would encode, field
for field, for every kind). Building and dumping a `Session` per request was a tenth of the
intake's CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import TypeAdapter

from sessions.models import Kind, Session, fingerprint
from sessions.requests import PaymentSessionRequest, SessionRequest
from sessions.states import State


@dataclass(frozen=True, slots=True)
class NewSession:
    """What `SessionStore.create_new` writes: the hash fields, already encoded as the store
    keeps them, and the timeline's first event as JSON."""

    id: str
    kind: Kind
    fields: dict[str, str]
    fingerprint: str
    created_at: float
    event: str


def encode_value(value: Any) -> str:
    """A field as the session hash keeps it (the JSON dump of the model, then text)."""
    return orjson.dumps(value).decode() if isinstance(value, bool) else str(value)


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)

# Fields every new session stores at their defaults (the counters, the fence, the flags).
_DEFAULTS = {
    name: encode_value(field.default)
    for name, field in Session.model_fields.items()
    if not field.is_required() and field.default is not None
}


def new_session(
    kind: Kind,
    parsed: SessionRequest,
    *,
    shop: str,
    request_id: str,
    api_version: str,
    now: float,
    buyer_window: float | None,
) -> NewSession:
    """`buyer_window`: how long a payment's buyer has on the PSP's page before a worker looks
    at it; None for a payment that is worked on at once (one refused without its buyer)."""
    amount, currency = parsed.money
    fields = {
        **_DEFAULTS,
        "id": parsed.id,
        "kind": kind.value,
        "gid": parsed.gid,
        "shop": shop,
        "payment_id": parsed.payment_ref,
        "proposed_at": _DATETIME.dump_python(parsed.proposed_at, mode="json"),
        "test": "true" if parsed.test else "false",
        "request_id": request_id,
        "api_version": api_version,
        "state": State.RECEIVED.value,
        "created_at": str(now),
        "updated_at": str(now),
    }
    if parsed.merchant_locale is not None:
        fields["merchant_locale"] = parsed.merchant_locale
    if amount is not None and currency is not None:
        fields["amount"] = str(amount)
        fields["currency"] = currency
    if isinstance(parsed, PaymentSessionRequest):
        fields["payment_kind"] = parsed.payment_kind.value
        fields["group"] = parsed.group
        fields["checkout_id"] = parsed.session_id
        if parsed.cancel_url is not None:
            fields["cancel_url"] = parsed.cancel_url
        # The buyer acts first; no worker looks at it before the window closes.
        if buyer_window is not None:
            fields["not_before"] = str(now + buyer_window)
    event = {
        "at": now,
        "event": "received",
        "state": State.RECEIVED.value,
        "detail": f"Shopify-Request-Id {request_id}",
    }
    return NewSession(
        id=parsed.id,
        kind=kind,
        fields=fields,
        fingerprint=fingerprint(kind, parsed.payment_ref, amount, currency),
        created_at=now,
        event=orjson.dumps(event).decode(),
    )
