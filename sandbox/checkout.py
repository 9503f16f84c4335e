"""Where the sandbox Shopify sends a buyer back to: its checkout pages.

A payment's `nextAction.context.redirectUrl` names one of them (`thank_you` after resolve or
pending, `declined` after reject), and a checkout's `cancel_url` may name the `cancel` one.
`sandbox.buyer` serves them.
"""

from __future__ import annotations

from urllib.parse import quote

CHECKOUT_PATH = "/_sandbox/checkout/{session_id}/{page}"
CHECKOUT_PAGES = {
    "thank_you": "Thank you for your order",
    "declined": "Your payment was not completed",
    "cancel": "Back at checkout",
}


def checkout_url(base_url: str, session_id: str, page: str) -> str:
    """A checkout page of the sandbox reached at `base_url`, for the payment `session_id`."""
    return base_url + CHECKOUT_PATH.format(session_id=quote(session_id, safe=""), page=page)
