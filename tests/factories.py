"""Test data factories: sensible defaults, override what the test is about."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from sessions.change import Change
from sessions.handoff import Envelope
from sessions.models import Kind, Session, TimelineEvent
from sessions.states import Event, State
from sessions.store import SessionStore

SHOP = "payhook-test.myshopify.com"

# The `redis_db` fixture (tests/conftest.py): a flushed real-redis client on a database.
RedisDb = Callable[[int], Awaitable[Redis]]


def new_id() -> str:
    return uuid.uuid4().hex[:24]


def capture_body(**overrides: Any) -> dict[str, Any]:
    session_id = overrides.pop("id", None) or new_id()
    body: dict[str, Any] = {
        "id": session_id,
        "gid": f"gid://shopify/CaptureSession/{session_id}",
        "payment_id": f"pay_{session_id}",
        "amount": "10.00",
        "currency": "EUR",
        "merchant_locale": "en",
        "proposed_at": "2026-11-23T10:00:00Z",
        "test": True,
    }
    body.update(overrides)
    return body


def shopify_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "Shopify-Shop-Domain": SHOP,
        "Shopify-Request-Id": str(uuid.uuid4()),
        "Shopify-Api-Version": "2025-10",
    }
    headers.update(overrides)
    return headers


def make_session(**overrides: Any) -> Session:
    session_id = overrides.pop("id", None) or new_id()
    now = time.time()
    fields: dict[str, Any] = {
        "id": session_id,
        "kind": Kind.CAPTURE,
        "gid": f"gid://shopify/CaptureSession/{session_id}",
        "shop": SHOP,
        "payment_id": f"pay_{session_id}",
        "amount": Decimal("10.00"),
        "currency": "EUR",
        "merchant_locale": "en",
        "proposed_at": datetime(2026, 11, 23, tzinfo=UTC),
        "test": True,
        "request_id": "req-1",
        "api_version": "2025-10",
        "state": State.RECEIVED,
        "created_at": now,
        "updated_at": now,
    }
    fields.update(overrides)
    return Session(**fields)


def received_event(at: float | None = None) -> TimelineEvent:
    return TimelineEvent(at=at or time.time(), event="received", state=State.RECEIVED)


def payment_body(**overrides: Any) -> dict[str, Any]:
    session_id = overrides.pop("id", None) or new_id()
    body: dict[str, Any] = {
        "id": session_id,
        "gid": f"gid://shopify/PaymentSession/{session_id}",
        "group": f"group-{session_id}",
        "session_id": f"checkout-{session_id}",
        "amount": "100.00",
        "currency": "EUR",
        "test": True,
        "merchant_locale": "en",
        "payment_method": {
            "type": "offsite",
            "data": {"cancel_url": "https://shop.example/checkouts/1"},
        },
        "proposed_at": "2026-11-23T10:00:00Z",
        "customer": {"email": "buyer@example.com", "billing_address": {"given_name": "Alice"}},
        "kind": "authorization",
    }
    body.update(overrides)
    return body


def refund_body(payment_id: str, **overrides: Any) -> dict[str, Any]:
    session_id = overrides.pop("id", None) or new_id()
    body: dict[str, Any] = {
        "id": session_id,
        "gid": f"gid://shopify/RefundSession/{session_id}",
        "payment_id": payment_id,
        "amount": "10.00",
        "currency": "EUR",
        "test": True,
        "merchant_locale": "en",
        "proposed_at": "2026-11-23T10:00:00Z",
    }
    body.update(overrides)
    return body


def void_body(payment_id: str, **overrides: Any) -> dict[str, Any]:
    session_id = overrides.pop("id", None) or new_id()
    body: dict[str, Any] = {
        "id": session_id,
        "gid": f"gid://shopify/VoidSession/{session_id}",
        "payment_id": payment_id,
        "merchant_locale": "en",
        "proposed_at": "2026-11-23T10:00:00Z",
    }
    body.update(overrides)
    return body


class ListHandoff:
    """A `Handoff` whose messages are just the session id, on one list: easy to read back."""

    queue = "test:queue"

    def envelope(self, kind: Kind, session_id: str) -> Envelope:
        return Envelope(self.queue, f"{kind.value}:{session_id}")


def change_to(happened: Event, at: float = 1.0, **fields: Any) -> Change:
    """The change `happened` makes, with `fields`."""
    due = fields.pop("due_at", None)
    return Change.of(happened, at=at, due_at=due, fields=fields)


CALLBACK_SECRET = "test-callback-secret-0123456789abcdef"


def signed_callback(
    session_id: str,
    outcome: str,
    *,
    secret: str = CALLBACK_SECRET,
    at: float | None = None,
    **fields: Any,
) -> tuple[bytes, dict[str, str]]:
    """A simulator PSP callback body for `session_id`, and the header that signs it over
    the session and the moment `at` (default now)."""
    from webhook.signing import sign, simulator_reference

    body = {"outcome": outcome, "reference": simulator_reference(session_id), **fields}
    raw = json.dumps(body).encode()
    signed_at = int(time.time() if at is None else at)
    return raw, {"X-Payhook-Signature": sign(secret, session_id, signed_at, raw)}


async def store_failed(store: SessionStore, error: str, **fields: Any) -> Session:
    """A session stored, then failed with `error` now: a dead letter as operators find it."""
    session = make_session(**fields)
    await store.create(session, received_event(), due_at=0, queue=False)
    now = time.time()
    await store.change(
        session,
        Change.of(
            Event.FAILED,
            at=now,
            error=error,
            due_at=None,
            fields={"last_error": error, "failed_at": now},
        ),
    )
    return session
