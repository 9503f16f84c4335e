"""Shopify's side of the session protocol: the requests Shopify sends to the app.

Used by `payhook demo` and the end-to-end tests to play Shopify: build a documented
session body (notes §1.5), register its gid with the sandbox Shopify so the app's later
mutation finds it, POST it to the app, and retry the way Shopify does when the app does
not answer 2xx.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from sandbox.client import SandboxShopifyClient

# Shopify only says it retries "several times" (notes §4.1); a short ladder keeps demos
# and tests quick while still exercising the app's idempotency on repeats.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0)
DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SentSession:
    """A session Shopify sent: its ids, the app's last HTTP status, and the body sent."""

    id: str
    gid: str
    status: int
    body: dict[str, Any]
    attempts: int = 1


def new_session_id() -> str:
    """24 url-safe characters, the shape of Shopify's session ids."""
    return secrets.token_urlsafe(18)


def iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_capture_body(
    *,
    payment_id: str,
    amount: str,
    currency: str,
    session_id: str | None = None,
    test: bool = True,
    merchant_locale: str = "en",
    proposed_at: str | None = None,
) -> dict[str, Any]:
    """The JSON body Shopify POSTs to `capture_session_url`."""
    session_id = session_id or new_session_id()
    return {
        "id": session_id,
        "gid": f"gid://shopify/CaptureSession/{session_id}",
        "payment_id": payment_id,
        "amount": amount,
        "currency": currency,
        "merchant_locale": merchant_locale,
        "proposed_at": proposed_at or iso_now(),
        "test": test,
    }


async def send_capture_session(
    http: aiohttp.ClientSession,
    *,
    app_url: str,
    sandbox: SandboxShopifyClient,
    shop: str,
    payment_id: str,
    amount: str,
    currency: str,
    session_id: str | None = None,
    api_version: str = "2025-10",
    test: bool = True,
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> SentSession:
    """Create a capture session as Shopify would and deliver it to the app.

    Returns once the app answered 2xx, or with the last status when retries ran out.
    A connection error on the last attempt propagates.
    """
    body = build_capture_body(
        payment_id=payment_id, amount=amount, currency=currency, session_id=session_id, test=test
    )
    # Registered before delivery: on Shopify the session exists before the app hears of it.
    await sandbox.register([body["gid"]])
    status, attempts = await post_session(
        http,
        url=f"{app_url.rstrip('/')}/capture_sessions",
        body=body,
        shop=shop,
        api_version=api_version,
        retry_delays=retry_delays,
        timeout_seconds=timeout_seconds,
    )
    return SentSession(id=body["id"], gid=body["gid"], status=status, body=body, attempts=attempts)


async def post_session(
    http: aiohttp.ClientSession,
    *,
    url: str,
    body: dict[str, Any],
    shop: str,
    api_version: str,
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[int, int]:
    """POST one session body until the app answers 2xx; returns (status, attempts)."""
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    schedule = (0.0, *retry_delays)
    for attempt, delay in enumerate(schedule, start=1):
        last = attempt == len(schedule)
        if delay:
            await asyncio.sleep(delay)
        headers = {
            "Shopify-Shop-Domain": shop,
            # A request id, not the idempotency key (that is body["id"]): new per attempt.
            "Shopify-Request-Id": str(uuid.uuid4()),
            "Shopify-Api-Version": api_version,
        }
        try:
            async with http.post(url, json=body, headers=headers, timeout=timeout) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            if last:
                raise
            continue
        if 200 <= status < 300 or last:
            return status, attempt
    raise AssertionError("unreachable: the last attempt returns or raises")
