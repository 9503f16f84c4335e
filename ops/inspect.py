"""`payhook sessions` and `payhook shops`: what operators read and manage in Redis."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from config import Settings
from errors import NoTokenKey
from readouts.held import money_held
from readouts.query import SessionFilter, find_sessions
from redisio.connect import tool_client
from sessions.ledger_store import LedgerStore
from sessions.models import Session, TimelineEvent
from sessions.store import SessionStore
from shops.onboarding import OnboardingStore
from shops.tokens import Rotation, ShopTokens, token_cipher
from shops.webhooks import WebhookEvent


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_events(events: Sequence[TimelineEvent | WebhookEvent]) -> None:
    """A session's timeline or a webhook's events, a line each, oldest first."""
    for event in events:
        attempt = f" #{event.attempt}" if event.attempt else ""
        note = " ".join(filter(None, [event.detail, event.error and f"error: {event.error}"]))
        print(f"  {when(event.at)}  {event.event}{attempt} → {event.state}  {note}")


def _summary(session: Session) -> dict[str, object]:
    return {
        "id": session.id,
        "kind": str(session.kind),
        "shop": session.shop,
        "state": str(session.state),
        "outcome": session.outcome and str(session.outcome),
        "report": session.report and str(session.report),
        "amount": session.amount_text,
        "currency": session.currency,
        "test": session.test,
        "created_at": when(session.created_at),
        "failed_at": session.failed_at and when(session.failed_at),
        "last_error": session.last_error,
    }


async def list_sessions(settings: Settings, wanted: SessionFilter, *, as_json: bool) -> int:
    redis = tool_client(settings)
    try:
        sessions = await find_sessions(SessionStore(redis), wanted)
    finally:
        await redis.aclose()
    rows = [_summary(s) for s in sessions]
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'ID':<28} {'KIND':<8} {'STATE':<10} {'RESULT':<9} {'AMOUNT':>14}  CREATED")
    for row in rows:
        result = row["report"] or row["outcome"] or "-"
        amount = f"{row['amount']} {row['currency']}"
        # Shopify's test mode, marked on the line: such a session moves no real money.
        test = "  test" if row["test"] else ""
        print(
            f"{row['id']!s:<28} {row['kind']!s:<8} {row['state']!s:<10} {result!s:<9} "
            f"{amount:>14}  {row['created_at']}{test}"
        )
        if row["last_error"] and row["state"] == "failed":
            print(f"    last error: {row['last_error']}")
    return 0


async def show_session(settings: Settings, session_id: str, *, as_json: bool) -> int:
    redis = tool_client(settings)
    try:
        store = SessionStore(redis)
        session = await store.get(session_id)
        timeline = await store.timeline(session_id) if session else []
        held = await money_held(LedgerStore(redis), session) if session else None
    finally:
        await redis.aclose()
    if session is None:
        print(f"no session {session_id}", file=sys.stderr)
        return 1
    if as_json:
        document = {
            "session": session.model_dump(mode="json"),
            "money_held": held and held.describe(),
            "timeline": [e.model_dump(mode="json", exclude_none=True) for e in timeline],
        }
        json.dump(document, sys.stdout, indent=2)
        print()
        return 0
    for key, value in session.model_dump(mode="json").items():
        if value is not None:
            print(f"{key:>16}: {value}")
    if held is not None:
        print(f"{'money held':>16}: {held.describe()} (`payhook sessions release` once checked)")
    print("\ntimeline:")
    print_events(timeline)
    return 0


async def shops(settings: Settings, action: str, shop: str | None, token: str | None) -> int:
    redis = tool_client(settings)
    try:
        tokens = ShopTokens(redis, token_cipher(settings.token_key_list))
        if action == "add":
            assert shop is not None
            assert token is not None
            await tokens.add(shop, token)
            print(f"added {shop}")
        elif action == "remove":
            assert shop
            # What payhook would tell Shopify about a shop it no longer holds a token for.
            await OnboardingStore(redis).forget(shop)
            if not await tokens.remove(shop):
                print(f"no token for {shop}", file=sys.stderr)
                return 1
            print(f"removed {shop}")
        elif action == "rotate":
            return _rotated(await tokens.rotate())
    except NoTokenKey as exc:
        print(f"payhook shops {action}: {exc}", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()
    return 0


def _rotated(report: Rotation) -> int:
    print(f"re-encrypted {len(report.rotated)} token(s) under the first key")
    for shop in report.unreadable:
        print(f"no key decrypts the token of {shop}: store it again with `payhook shops add`")
    return 1 if report.unreadable else 0
