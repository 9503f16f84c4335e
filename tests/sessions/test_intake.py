"""Intake encodes a request straight into the stored hash; it must be exactly what the
`Session` model encodes and decodes, for every kind."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sessions.intake import new_session
from sessions.models import Kind, Session, TimelineEvent, fingerprint
from sessions.requests import REQUESTS, PaymentSessionRequest, SessionRequest
from sessions.states import State
from sessions.store import _encode, decode
from tests.factories import capture_body, payment_body, refund_body, void_body

NOW = 1_790_000_000.123456
WINDOW = 3600.0


def _as_session(kind: Kind, parsed: SessionRequest) -> Session:
    """The session as the store's model would build it from the same request."""
    amount, currency = parsed.money
    extra: dict[str, Any] = {}
    if isinstance(parsed, PaymentSessionRequest):
        extra = {
            "payment_kind": parsed.payment_kind,
            "group": parsed.group,
            "checkout_id": parsed.session_id,
            "cancel_url": parsed.cancel_url,
            "not_before": NOW + WINDOW,
        }
    return Session(
        id=parsed.id,
        kind=kind,
        gid=parsed.gid,
        shop="s.myshopify.com",
        payment_id=parsed.payment_ref,
        amount=amount,
        currency=currency,
        merchant_locale=parsed.merchant_locale,
        proposed_at=parsed.proposed_at,
        test=parsed.test,
        request_id="req-9",
        api_version="2025-10",
        state=State.RECEIVED,
        created_at=NOW,
        updated_at=NOW,
        **extra,
    )


BODIES = [
    (Kind.CAPTURE, capture_body()),
    (Kind.CAPTURE, capture_body(amount=Decimal("1E+2"), currency="JPY", test=False)),
    (Kind.CAPTURE, capture_body(proposed_at="2026-11-23T10:00:00.5+02:00")),
    (Kind.REFUND, refund_body("pay|with|bars", amount="0.5")),
    (Kind.VOID, void_body("pay-1")),
    (Kind.VOID, {k: v for k, v in void_body("pay-1").items() if k != "merchant_locale"}),
    (Kind.PAYMENT, payment_body()),
    (Kind.PAYMENT, payment_body(cancel_url="https://shop.example/checkouts/top")),
    (Kind.PAYMENT, payment_body(payment_method={"type": "offsite", "data": {}}, kind="sale")),
]


@pytest.mark.parametrize(("kind", "body"), BODIES)
def test_the_fields_intake_writes_are_the_ones_the_session_model_encodes(
    kind: Kind, body: dict[str, Any]
) -> None:
    parsed = REQUESTS[kind].model_validate(body)
    new = new_session(
        kind,
        parsed,
        shop="s.myshopify.com",
        request_id="req-9",
        api_version="2025-10",
        now=NOW,
        buyer_window=WINDOW,
    )
    session = _as_session(kind, parsed)
    assert new.fields == _encode(session)
    assert decode(new.fields) == session
    assert new.fingerprint == session.fingerprint()
    amount, currency = parsed.money
    assert new.fingerprint == fingerprint(kind, parsed.payment_ref, amount, currency)
    assert TimelineEvent.model_validate_json(new.event) == TimelineEvent(
        at=NOW, event="received", state=State.RECEIVED, detail="Shopify-Request-Id req-9"
    )
